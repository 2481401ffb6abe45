#!/bin/sh
# Scale benchmark: setting up the fanotify backend on a tree of many
# directories, against inotify. Makes FANOTIFY_SCALE_DIRS directories
# (default 1,000,000) under BENCH_DIR (default /tmp), then measures, each in
# its own process: the walk alone, inotify, fanotify (setup time, RSS and
# unreclaimable-slab growth per directory, and that an event arrives).
# Needs root (fanotify needs CAP_SYS_ADMIN). Not part of CI. Changes no
# sysctl: when fs.inotify.max_user_watches is below the count, the inotify
# run reports the limit instead of a figure.
#
#   FANOTIFY_SCALE_DIRS=100000 bench/fanotify_scale.sh
#   PROFILE=release (default) or dev; KEEP=1 keeps the tree.
set -eu

N=${FANOTIFY_SCALE_DIRS:-1000000}
BASE=${BENCH_DIR:-/tmp}
PROFILE=${PROFILE:-release}
cd "$(dirname "$0")/.."

if [ "$PROFILE" = release ]; then
    cargo build --quiet --release --example fanotify_scale
    BIN=target/release/examples/fanotify_scale
else
    cargo build --quiet --example fanotify_scale
    BIN=target/debug/examples/fanotify_scale
fi

TREE=$(mktemp -d "$BASE/livesync-fanotify-scale.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" != 1 ]; then rm -rf "$TREE"; fi
}
trap cleanup EXIT INT TERM

echo "making $N directories in $TREE"
start=$(date +%s)
"$BIN" mktree "$TREE" "$N"
echo "made in $(( $(date +%s) - start )) s"

limit=$(cat /proc/sys/fs/inotify/max_user_watches)
for backend in walk inotify fanotify; do
    if [ "$backend" = inotify ] && [ "$limit" -lt "$N" ]; then
        echo "backend=inotify skipped: fs.inotify.max_user_watches=$limit < $N"
        continue
    fi
    "$BIN" measure "$backend" "$TREE" || echo "backend=$backend failed"
done

# An inotify watch also pins its directory's inode and dentry in memory (the
# kernel cannot reclaim them while the watch exists); fanotify pins none.
# Their sizes on this kernel, for the per-directory estimate:
grep -E '^(ext4_inode_cache|xfs_inode|btrfs_inode|shmem_inode_cache|dentry) ' /proc/slabinfo 2>/dev/null |
    awk '{ print "slab " $1 " objsize=" $4 " bytes" }' || true
