#!/bin/sh
# Keeps the authorized_keys files of a master home tree copied to the live
# homes: livesync in clsync's direct mode runs `cp` in the master tree with
# the changed files' relative paths, and `cp --parents` recreates them under
# the destination. Usage: run.sh MASTER_HOMES DEST_HOMES [livesync options]
# (LIVESYNC names the binary; default: livesync from PATH).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
[ "$#" -ge 2 ] || { echo "usage: $0 MASTER_HOMES DEST_HOMES [livesync options]" >&2; exit 2; }
src=$1 dst=$2
shift 2
# -x 1: cp exits 1 when a named key file is gone (a delete); the others
# are still copied, and deletes are not propagated (cp cannot delete).
exec "${LIVESYNC:-livesync}" -M direct -S cp -W "$src" -D "$dst" -R "$here/rules" -x 1 "$@" \
    -- -Pfp --parents %INCLUDE-LIST% %destination-dir%
