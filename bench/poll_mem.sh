#!/usr/bin/env bash
# Memory per tracked entry of `--monitor poll` (not part of CI).
#
# Builds a tree of DIRS directories with FILES files each, starts livesync
# on it once with --monitor inotify and once with --monitor poll (no initial
# sync, no scans during the measurement), reads each daemon's VmRSS once it
# says it is watching, and prints the difference per entry: what the poll
# backend's snapshots cost beyond the inotify backend's bookkeeping.
#
#   bench/poll_mem.sh                 # 2,000 dirs x 100 files
#   DIRS=200 FILES=50 bench/poll_mem.sh
#
# LIVESYNC_BIN picks the binary (default: target/release/livesync, built
# when missing). Needs python3 (to make the tree quickly) and /proc.
set -euo pipefail
cd "$(dirname "$0")/.."

dirs=${DIRS:-2000}
files=${FILES:-100}
bin=${LIVESYNC_BIN:-target/release/livesync}
if [ ! -x "$bin" ]; then
    cargo build --release --quiet
fi

work=$(mktemp -d /tmp/livesync-pollmem-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/dst"
python3 - "$work/src" "$dirs" "$files" <<'PY'
import os, sys
root, dirs, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for d in range(dirs):
    p = os.path.join(root, "d%03d" % (d % 100), "e%05d" % d)
    os.makedirs(p, exist_ok=True)
    for f in range(files):
        with open(os.path.join(p, "f%04d" % f), "wb") as fh:
            fh.write(b"x")
PY
entries=$(find "$work/src" -mindepth 1 | wc -l)

# Starts livesync with --monitor $1, prints its VmRSS in KiB once it watches.
rss_of() {
    local log="$work/$1.log"
    "$bin" -H /NULL/ -W "$work/src" -D "$work/dst" --monitor "$1" \
        --poll-interval 86400 --skip-initialsync -t86400 -w86400 2>"$log" &
    local pid=$!
    for _ in $(seq 1 600); do
        grep -q "watching" "$log" 2>/dev/null && break
        sleep 0.1
    done
    local rss
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    grep -q "watching" "$log" || { echo "livesync --monitor $1 did not start:" >&2; cat "$log" >&2; exit 1; }
    echo "$rss"
}

inotify_kib=$(rss_of inotify)
poll_kib=$(rss_of poll)
echo "tree: $dirs dirs x $files files = $entries entries"
echo "VmRSS inotify: $inotify_kib KiB, poll: $poll_kib KiB"
awk -v a="$poll_kib" -v b="$inotify_kib" -v n="$entries" \
    'BEGIN { printf "poll snapshots: %.0f bytes per tracked entry\n", (a - b) * 1024 / n }'
