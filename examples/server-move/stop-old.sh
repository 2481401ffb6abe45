#!/bin/sh
# --pre-exit-hook: stop the old web server. A real one would run e.g.
#   systemctl stop nginx
# Here the "server" writes its last state into the old root on the way
# down, which the final sync must carry to NEW.
set -eu
echo "stop-old $1 $CLSYNC_STATUS" >> "$SERVER_MOVE_STATE/hooks.log"
printf 'sessions flushed at shutdown\n' > "$SERVER_MOVE_OLD/sessions.dump"
