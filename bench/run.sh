#!/bin/sh
# Benchmark entry point: make sure clsync, lsyncd and rsync are installed,
# build livesync in release mode, then run bench/bench.py with the given
# options (--quick for a smoke run; see bench/README.md). Table on stdout,
# JSON in bench/out/results.json.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

missing=""
for tool in clsync lsyncd rsync python3; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
    echo "run.sh: installing missing packages:$missing" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # the package list is meant to split
    $sudo apt-get install -y -q $missing >&2 ||
        { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q $missing >&2; } ||
        { echo "run.sh: could not install$missing; install them and retry" >&2; exit 1; }
fi

if [ -z "${LIVESYNC_BIN:-}" ]; then
    echo "run.sh: cargo build --release" >&2
    (cd "$repo" && cargo build --release --quiet) >&2
    LIVESYNC_BIN="$repo/target/release/livesync"
fi

exec python3 "$here/bench.py" --livesync "$LIVESYNC_BIN" "$@"
