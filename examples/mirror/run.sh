#!/bin/sh
# Mirror a directory live with the built-in engine: everything under SRC
# appears under DST about a second after it changes. Stop with Ctrl-C
# (livesync syncs what is pending first, then exits 0).
#
#   examples/mirror/run.sh SRC DST [more livesync options]
#
# LIVESYNC names the binary (default: livesync from PATH); DELAY the
# seconds to collect changes and to leave between syncs (default 1).
set -eu
usage="usage: $0 SRC DST [livesync options]"
src=${1:?$usage}
dst=${2:?$usage}
shift 2
delay=${DELAY:-1}
# -H /NULL/: take nothing from a config file; -t/-w: collect changes for
# DELAY seconds and leave at least DELAY seconds between syncs (clsync's
# defaults are 30 s, made for big trees on busy servers).
exec "${LIVESYNC:-livesync}" -H /NULL/ -W "$src" -D "$dst" -t "$delay" -w "$delay" "$@"
