#!/bin/sh
# Runs `make` in DIR whenever a *.c file in it changes: clsync's direct mode
# with `make` as the handler and no %INCLUDE-LIST%, so a batch of changes
# (one -t window) is one `make -C DIR` run. Usage: run.sh DIR [livesync
# options] (LIVESYNC names the binary, default livesync from PATH; DELAY
# the seconds to collect changes, default 1).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ "$#" -ge 1 ] || { echo "usage: $0 DIR [livesync options]" >&2; exit 2; }
dir=$1
shift
exec "${LIVESYNC:-livesync}" -M direct -S make -W "$dir" -R "$here/rules" -t "${DELAY:-1}" -w "${DELAY:-1}" "$@" \
    -- -C %watch-dir%
