#!/bin/sh
# Move a web server's document root to a new place (another disk, a
# mounted new server) with a short, clean cut-over:
#
#   1. livesync copies OLD to NEW and keeps copying changes while the old
#      server still serves;
#   2. the cut-over starts (see below); livesync finishes the running sync
#      and syncs what is pending;
#   3. --pre-exit-hook (stop-old.sh) stops the old server so nothing writes
#      to OLD any more (here it also writes a last file, as a server's
#      shutdown would: a session dump);
#   4. livesync syncs once more, so what the shutdown wrote reaches NEW;
#   5. --exit-hook (start-new.sh) starts the server on NEW;
#   6. livesync exits 0.
#
# If stop-old.sh fails, livesync does not run start-new.sh and exits 1; if
# start-new.sh fails, it exits 1. Check the exit code.
#
#   examples/server-move/run.sh OLD NEW
#
# What starts the cut-over (SERVER_MOVE_CUTOVER):
#   signal (default)  livesync keeps NEW up to date for as long as you
#                     like; you start the cut-over when you are ready with
#                       livesync ctl "$SERVER_MOVE_STATE/livesync.sock" quit
#                     (or kill -QUIT the livesync process). --sync-on-quit
#                     gives step 4.
#   quiet             --exit-on-no-events: the cut-over starts the first
#                     moment nothing is pending, which on a busy server is
#                     right after the first copy. It does not keep up with
#                     changes for long: use it for a tree that is quiet.
#
# LIVESYNC names the binary (default: livesync from PATH). The hooks get the
# label as their argument and CLSYNC_STATUS in their environment; they find
# OLD, NEW and the state directory through the variables exported below.
set -eu
usage="usage: $0 OLD NEW"
old=${1:?$usage}
new=${2:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
SERVER_MOVE_OLD=$old
SERVER_MOVE_NEW=$new
SERVER_MOVE_STATE=${SERVER_MOVE_STATE:-$new.move-state}
export SERVER_MOVE_OLD SERVER_MOVE_NEW SERVER_MOVE_STATE
mkdir -p "$SERVER_MOVE_STATE"
case ${SERVER_MOVE_CUTOVER:-signal} in
signal)
    # -t1 -w1: changes reach NEW within about two seconds.
    echo "$0: mirroring $old to $new; start the cut-over with:" >&2
    echo "  livesync ctl $SERVER_MOVE_STATE/livesync.sock quit" >&2
    exec "${LIVESYNC:-livesync}" -H /NULL/ -W "$old" -D "$new" -t1 -w1 \
        -l server-move \
        --socket "$SERVER_MOVE_STATE/livesync.sock" \
        --sync-on-quit \
        --pre-exit-hook "$here/stop-old.sh" \
        --exit-hook "$here/start-new.sh"
    ;;
quiet)
    # -t0 -w0: no waiting in this one-shot move; --exit-on-no-events: end
    # once the copy has caught up, running the hooks around the last sync.
    exec "${LIVESYNC:-livesync}" -H /NULL/ -W "$old" -D "$new" -t0 -w0 \
        -l server-move \
        --exit-on-no-events \
        --pre-exit-hook "$here/stop-old.sh" \
        --exit-hook "$here/start-new.sh"
    ;;
*)
    echo "$0: SERVER_MOVE_CUTOVER is signal or quiet, not ${SERVER_MOVE_CUTOVER}" >&2
    exit 2
    ;;
esac
