#!/bin/sh
# Move a web server's document root to a new place (another disk, a
# mounted new server) with a short, clean cut-over:
#
#   1. livesync copies OLD to NEW and keeps copying changes while the old
#      server still serves (here: until nothing is pending);
#   2. --pre-exit-hook (stop-old.sh) stops the old server so nothing writes
#      to OLD any more (here it also writes a last file, as a server's
#      shutdown would: a session dump);
#   3. livesync syncs once more, so what the shutdown wrote reaches NEW;
#   4. --exit-hook (start-new.sh) starts the server on NEW;
#   5. livesync exits 0.
#
#   examples/server-move/run.sh OLD NEW
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
# -t0 -w0: no waiting in this one-shot move; --exit-on-no-events: end
# once the copy has caught up, running the hooks around the last sync.
exec "${LIVESYNC:-livesync}" -H /NULL/ -W "$old" -D "$new" -t0 -w0 \
    -l server-move \
    --exit-on-no-events \
    --pre-exit-hook "$here/stop-old.sh" \
    --exit-hook "$here/start-new.sh"
