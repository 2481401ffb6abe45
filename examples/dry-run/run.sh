#!/bin/sh
# A dry run: what livesync would run, printed instead of run. `-S echo`
# makes the handler program echo(1), so each sync prints its argv on
# stdout; nothing is copied. Usage: run.sh MODE SRC [DEST] [livesync options]
# with MODE rsyncdirect (prints the rsync command line) or direct (prints
# the paths). --only-initialsync prints the initial sync and exits.
set -eu
[ "$#" -ge 2 ] || { echo "usage: $0 MODE SRC [DEST] [livesync options]" >&2; exit 2; }
mode=$1 src=$2
shift 2
case "$mode" in
rsyncdirect)
    [ "$#" -ge 1 ] || { echo "rsyncdirect needs DEST" >&2; exit 2; }
    dst=$1
    shift
    # -U keeps the list files, so the printed --include-from can be read.
    exec "${LIVESYNC:-livesync}" -M rsyncdirect -S echo -W "$src" -D "$dst" -U "$@" ;;
direct)
    exec "${LIVESYNC:-livesync}" -M direct -S echo -W "$src" "$@" -- %INCLUDE-LIST% ;;
*)
    echo "MODE is rsyncdirect or direct" >&2; exit 2 ;;
esac
