#!/bin/sh
# Keep two directories in step both ways (e.g. the shared data of two
# containers), with two livesync instances: A -> B and B -> A.
#
#   examples/two-way/run.sh A B
#
# A is the reference at start: the A -> B instance makes B equal to A
# (deleting what only B has!); the B -> A instance skips its initial sync.
# From then on a change on either side reaches the other.
#
# What keeps them from syncing the same file back and forth forever:
# --modification-signature. The built-in mirror rewrites a file whenever
# an event names it (through a temp file and a rename), and that write is
# itself an event on the other side. With a signature, each instance
# remembers the size, mtime, mode and owner of what it last synced and
# drops a sync when they did not change: the copy that comes back has the
# same ones, so it stops after one bounce and both daemons go quiet.
#
# Caveat: both sides changing the same file within a second is a conflict
# that nothing here resolves: the last write to reach a side wins there.
#
# The control sockets are STATE/ab.sock and STATE/ba.sock (STATE defaults
# to ./two-way-state): `livesync status --socket STATE/ab.sock`.
# LIVESYNC names the binary (default: livesync from PATH). Ctrl-C or
# SIGTERM stops both instances.
set -eu
usage="usage: $0 A B"
a=${1:?$usage}
b=${2:?$usage}
state=${TWO_WAY_STATE:-./two-way-state}
mkdir -p "$state"
bin=${LIVESYNC:-livesync}
sig="--modification-signature size,mtime,mode,uid,gid"
# shellcheck disable=SC2086 # $sig is two words on purpose
"$bin" -H /NULL/ -W "$a" -D "$b" -t0.5 -w0.5 -l a-to-b $sig \
    --socket "$state/ab.sock" &
ab=$!
"$bin" -H /NULL/ -W "$b" -D "$a" -t0.5 -w0.5 -l b-to-a $sig \
    --skip-initialsync --socket "$state/ba.sock" &
ba=$!
stop() {
    kill -TERM "$ab" "$ba" 2>/dev/null || true
    wait "$ab" "$ba" 2>/dev/null || true
}
trap 'stop; exit 0' INT TERM
# If either instance ends, stop the other one too.
while kill -0 "$ab" 2>/dev/null && kill -0 "$ba" 2>/dev/null; do
    sleep 1
done
stop
exit 1
