#!/bin/sh
# --exit-hook: start the web server on the new root. A real one would
# switch the document root (or a symlink, or DNS) and run e.g.
#   systemctl start nginx
# Here it refuses to "start" unless the shutdown's last file arrived.
set -eu
if [ -f "$SERVER_MOVE_NEW/sessions.dump" ]; then
    echo "start-new $1 $CLSYNC_STATUS with sessions.dump" >> "$SERVER_MOVE_STATE/hooks.log"
else
    echo "start-new $1: sessions.dump missing" >> "$SERVER_MOVE_STATE/hooks.log"
    exit 1
fi
