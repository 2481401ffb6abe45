#!/usr/bin/env python3
"""Memory and start-up time per watched directory: livesync (inotify and
fanotify) against clsync, in the same run (stdlib only; not part of CI).

For each size it makes a tree of that many directories (the layout of
fanotify_scale.rs: sqrt(N) top directories of sqrt(N) each) on a tmpfs it
mounts for the run, starts each tool on it with the built-in mirror (clsync:
rsyncdirect) and --skip-initialsync, and records:

- ready: seconds from start until the tool watches the whole tree. livesync
  says so with sd_notify READY=1 (the script is its NOTIFY_SOCKET); clsync
  has no such signal, so it is ready when its inotify descriptor holds a
  watch for every directory (/proc/PID/fdinfo).
- anon: the Anonymous line of /proc/PID/smaps_rollup, SETTLE seconds after
  ready (private heap and stacks, what grows per directory).
- per dir: (anon - anon of the same tool on an empty tree) / directories.
- synced: a file written into the deepest last-made directory after the
  measurement reached the destination (within 30 s).

Needs root (tmpfs mount, fanotify, and fs.inotify.max_user_watches is
raised for the run when it is below a size, and put back at the end).

  bench/mem_scale.py                      # 20k, 200k; fanotify also at 1M
  bench/mem_scale.py --sizes 20000 --fanotify-sizes ''
  LIVESYNC_BIN=target/release/livesync bench/mem_scale.py
"""

import argparse
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def mktree(root: Path, n: int) -> Path:
    """n directories below root; returns the last one made."""
    fan = max(1, math.ceil(math.sqrt(n)))
    made = 0
    last = root
    for i in range(fan):
        if made >= n:
            break
        top = root / f"t{i:04}"
        os.mkdir(top)
        made += 1
        last = top
        for j in range(fan - 1):
            if made >= n:
                break
            last = top / f"d{j:04}"
            os.mkdir(last)
            made += 1
    return last


def anon_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1])
    raise RuntimeError("no Anonymous line in smaps_rollup")


def inotify_watches(pid: int) -> int:
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return n


class Run:
    def __init__(self, tool, argv, env, notify):
        self.tool = tool
        self.argv = argv
        self.env = env
        self.notify = notify


def livesync_argv(binary, monitor, src, dst):
    return [binary, "-H", "/NULL/", "--monitor", monitor, "-W", str(src), "-D", str(dst),
            "-t0", "-w0", "--skip-initialsync"]


def clsync_argv(src, dst, work):
    lists = work / "clsync-lists"
    lists.mkdir(mode=0o700, exist_ok=True)
    os.chmod(lists, 0o700)
    return ["clsync", "-H", "/NULL/", "-u", str(os.getuid()), "-g", str(os.getgid()),
            "-l", "bench", "-M", "rsyncdirect", "-S", shutil.which("rsync") or "/usr/bin/rsync",
            "-W", str(src), "-D", str(dst), "-L", str(lists), "-t0", "-w0",
            "-x", "23", "-x", "24", "--retries", "0", "--skip-initialsync"]


def measure(tool, argv, src, dst, dirs, probe, settle, work, timeout):
    """Starts one tool; returns a dict of figures (or an error)."""
    sock_path = work / "notify.sock"
    if sock_path.exists():
        sock_path.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.05)
    env = dict(os.environ)
    uses_notify = tool.startswith("livesync")
    if uses_notify:
        env["NOTIFY_SOCKET"] = str(sock_path)
    logf = open(work / f"{tool}-{dirs}.log", "wb")
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, stdout=logf, stderr=subprocess.STDOUT,
                         start_new_session=True)
    res = {"tool": tool, "dirs": dirs}
    try:
        ready = None
        while time.monotonic() - t0 < timeout:
            if p.poll() is not None:
                raise RuntimeError(f"exited with {p.returncode}")
            if uses_notify:
                try:
                    if b"READY=1" in sock.recv(4096):
                        ready = time.monotonic() - t0
                except socket.timeout:
                    pass
            else:
                if inotify_watches(p.pid) >= dirs + 1:
                    ready = time.monotonic() - t0
                else:
                    time.sleep(0.02)
            if ready is not None:
                break
        if ready is None:
            raise RuntimeError(f"not ready within {timeout} s")
        res["ready_s"] = ready
        time.sleep(settle)
        res["anon_kib"] = anon_kib(p.pid)
        if probe is not None:
            f = probe / "probe-file"
            f.write_bytes(b"probe")
            target = dst / f.relative_to(src)
            t1 = time.monotonic()
            while time.monotonic() - t1 < 30 and not target.exists():
                time.sleep(0.02)
            res["synced"] = target.exists()
            f.unlink()
    except Exception as e:  # noqa: BLE001 - reported in the table
        res["error"] = str(e)
        log(f"{tool} at {dirs}: {e}; log: {work / f'{tool}-{dirs}.log'}")
    finally:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        logf.close()
        sock.close()
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="20000,200000",
                    help="directory counts for every tool")
    ap.add_argument("--fanotify-sizes", default="1000000",
                    help="further sizes for livesync fanotify only")
    ap.add_argument("--tools", default="livesync-inotify,livesync-fanotify,clsync")
    ap.add_argument("--settle", type=float, default=4.0,
                    help="seconds between ready and reading the memory")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("mem_scale.py needs root (tmpfs, fanotify, inotify limit)")
    binary = os.environ.get("LIVESYNC_BIN")
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "livesync"],
                       cwd=REPO, check=True)
        binary = str(REPO / "target/release/livesync")
    tools = [t for t in args.tools.split(",") if t]
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fan_sizes = [int(s) for s in args.fanotify_sizes.split(",") if s]
    plan = [(0, t) for t in tools]
    plan += [(n, t) for n in sizes for t in tools]
    if "livesync-fanotify" in tools:
        plan += [(n, "livesync-fanotify") for n in fan_sizes]

    limit_file = Path("/proc/sys/fs/inotify/max_user_watches")
    old_limit = int(limit_file.read_text())
    want = max([n for n, t in plan if t != "livesync-fanotify"] + [0]) + 10000
    work = Path(tempfile.mkdtemp(prefix="livesync-memscale-"))
    mnt = work / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "livesync-memscale", str(mnt)],
                   check=True)
    results = []
    try:
        if want > old_limit:
            limit_file.write_text(str(want))
        for n in sorted({n for n, _ in plan}):
            src, dst = mnt / "src", mnt / "dst"
            shutil.rmtree(src, ignore_errors=True)
            src.mkdir()
            t = time.monotonic()
            last = mktree(src, n) if n else None
            log(f"made {n} directories in {time.monotonic() - t:.1f} s")
            for size, tool in plan:
                if size != n:
                    continue
                shutil.rmtree(dst, ignore_errors=True)
                dst.mkdir()
                if tool == "clsync":
                    argv = clsync_argv(src, dst, work)
                else:
                    argv = livesync_argv(binary, tool.split("-")[1], src, dst)
                r = measure(tool, argv, src, dst, n, last, args.settle, work, args.timeout)
                log(r)
                results.append(r)
    finally:
        if want > old_limit:
            limit_file.write_text(str(old_limit))
        subprocess.run(["umount", str(mnt)], check=False)
        shutil.rmtree(work, ignore_errors=True)

    base = {r["tool"]: r.get("anon_kib") for r in results if r["dirs"] == 0}
    print("| tool | directories | ready | anonymous memory | per directory beyond the base | change synced |")
    print("|---|---:|---:|---:|---:|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['tool']} | {r['dirs']:,} | failed: {r['error']} | | | |")
            continue
        per = ""
        if r["dirs"] and base.get(r["tool"]) is not None:
            per = f"{(r['anon_kib'] - base[r['tool']]) * 1024 / r['dirs']:.0f} B"
        synced = "" if "synced" not in r else ("yes" if r["synced"] else "NO")
        print(f"| {r['tool']} | {r['dirs']:,} | {r['ready_s']:.2f} s | "
              f"{r['anon_kib'] / 1024:.2f} MiB | {per} | {synced} |")


if __name__ == "__main__":
    main()
