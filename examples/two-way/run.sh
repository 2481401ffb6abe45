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
# What keeps them from syncing the same file back and forth forever: the
# built-in mirror writes a file only when its bytes differ. The copy one
# instance puts in place is an event for the other, which finds the same
# bytes (and size, mtime, mode) on its destination and writes nothing, so
# both daemons go quiet after one bounce.
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
"$bin" -H /NULL/ -W "$a" -D "$b" -t0.5 -w0.5 -l a-to-b \
    --socket "$state/ab.sock" &
ab=$!
"$bin" -H /NULL/ -W "$b" -D "$a" -t0.5 -w0.5 -l b-to-a \
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
