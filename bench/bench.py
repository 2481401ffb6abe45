#!/usr/bin/env python3
"""Side-by-side benchmark of livesync, clsync and lsyncd (stdlib only).

Runs the same workloads through every tool in one go, each tool as a fresh
daemon mirroring a local source tree into a local destination with zero
delays, and prints a Markdown table (stdout) plus JSON (bench/out/results.json).

Workloads:
  latency  write one small file, poll DST every 1 ms until it arrives
  storm    create many files in many dirs, rename some dirs/files, delete some;
           time until DST equals SRC, CPU spent, paths never synced (lost)
  startup  big tree: time from exec to "DST equals SRC" and to "a probe file
           written in the deepest dir arrived"; idle RSS afterwards
  rename   rename a directory holding many files: time until DST reflects it,
           CPU, bytes written, and whether DST renamed or copied the files

Every process the bench starts runs in its own session (= process group); all
of them, and any descendants they left behind, are killed on exit, on error
and on Ctrl-C. See bench/README.md for what each figure means exactly.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
HERE = Path(__file__).resolve().parent
NOW = time.monotonic
COMMANDS: dict = {}  # tool -> argv actually run (first run), for the JSON

# --------------------------------------------------------------------------
# sizes

FULL = dict(
    latency_runs=15,
    storm_files=20000,
    storm_dirs=200,
    startup_dirs=5000,
    startup_files=50000,
    rename_files=5000,
    timeout=120.0,
    stall=15.0,
    repeat=3,
)
QUICK = dict(
    latency_runs=5,
    storm_files=2000,
    storm_dirs=20,
    startup_dirs=500,
    startup_files=5000,
    rename_files=500,
    timeout=15.0,
    stall=5.0,
    repeat=1,
)
WORKLOADS = ["latency", "storm", "startup", "rename"]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid: int) -> dict | None:
    """Fields of /proc/PID/stat we use, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(b")") + 2 :].split()
    return dict(
        state=rest[0].decode(),
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
        starttime=int(rest[19]),
    )


def descendants(pid: int) -> list[tuple[int, int]]:
    """Live descendants of pid as (pid, starttime), found by ppid links."""
    children: dict[int, list[int]] = {}
    start: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        st = proc_stat(int(name))
        if st is None:
            continue
        children.setdefault(st["ppid"], []).append(int(name))
        start[int(name)] = st["starttime"]
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append((c, start[c]))
            todo.append(c)
    return out


def cpu_tree(pid: int) -> tuple[float, float] | None:
    """(daemon s, children s): the daemon's own utime+stime (all its threads),
    and its children's: cutime+cstime of the daemon (children it reaped, which
    already include their own reaped children) plus utime+stime+cutime+cstime
    of descendants still alive. Nothing is counted twice: a live process's time
    enters its parent's cutime only when it is reaped."""
    st = proc_stat(pid)
    if st is None:
        return None
    own = st["utime"] + st["stime"]
    kids = st["cutime"] + st["cstime"]
    for d, _ in descendants(pid):
        ds = proc_stat(d)
        if ds is not None:
            kids += ds["utime"] + ds["stime"] + ds["cutime"] + ds["cstime"]
    return own / CLK_TCK, kids / CLK_TCK


def io_write_bytes(pid: int) -> int | None:
    """write_bytes from /proc/PID/io of the daemon (includes reaped children)
    plus live descendants: bytes the processes caused to be sent to storage."""
    total = 0
    for p in [pid] + [d for d, _ in descendants(pid)]:
        try:
            with open(f"/proc/{p}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total += int(line.split()[1])
        except OSError:
            if p == pid:
                return None
    return total


def rss_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


# --------------------------------------------------------------------------
# processes


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL if the bench itself dies hard."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Daemon:
    """One tool process in its own session; stop() kills it and everything it
    spawned (also descendants that moved to process groups of their own)."""

    running: list["Daemon"] = []

    def __init__(self, argv: list[str], logpath: Path):
        self.argv = argv
        self.logpath = logpath
        self.logf = open(logpath, "wb")
        self.logf.write(("$ " + " ".join(argv) + "\n").encode())
        self.logf.flush()
        self.t_exec = NOW()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self.logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.proc.pid
        Daemon.running.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def children_alive(self) -> bool:
        return bool(descendants(self.pid))

    def wait_children_gone(self, timeout: float) -> bool:
        deadline = NOW() + timeout
        while NOW() < deadline:
            if not self.children_alive():
                return True
            time.sleep(0.01)
        return False

    def log_tail(self, n: int = 15) -> str:
        try:
            lines = self.logpath.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def _signal_all(self, kids: list[tuple[int, int]], sig: int) -> None:
        try:
            os.killpg(self.pid, sig)  # start_new_session: pgid == pid
        except ProcessLookupError:
            pass
        for pid, start in kids:  # descendants that left the group
            st = proc_stat(pid)
            if st is not None and st["starttime"] == start:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def stop(self) -> None:
        if self not in Daemon.running:
            return
        kids = descendants(self.pid) if self.alive() else []
        self._signal_all(kids, signal.SIGTERM)
        try:
            self.proc.wait(timeout=3.0)
        except subprocess.TimeoutExpired:
            kids = list(set(kids) | set(descendants(self.pid)))
        # whatever is left of the group or of the descendants seen: no mercy
        self._signal_all(kids, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            log(f"pid {self.pid} did not die")
        Daemon.running.remove(self)
        self.logf.close()

    @classmethod
    def stop_all(cls) -> None:
        for d in list(cls.running):
            try:
                d.stop()
            except Exception as e:  # keep killing the others
                log(f"cleanup of pid {d.pid} failed: {e}")


# --------------------------------------------------------------------------
# tools


def lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Tool:
    name = ""
    ratio_base = False

    def argv(self, src: Path, dst: Path, work: Path) -> list[str]:
        raise NotImplementedError

    def version(self) -> str:
        return ""


class Livesync(Tool):
    def __init__(self, binary: str, rsync: bool):
        self.binary = binary
        self.rsync = rsync
        self.name = "livesync-rsync" if rsync else "livesync"

    def argv(self, src, dst, work):
        a = [self.binary, "-H", "/NULL/"]  # read no config file, as for clsync
        if self.rsync:
            a += ["-M", "rsyncdirect", "-S", shutil.which("rsync") or "/usr/bin/rsync"]
        return a + ["-W", str(src), "-D", str(dst), "-t0", "-w0"]

    def version(self):
        return first_line([self.binary, "--version"])


class Clsync(Tool):
    name = "clsync"

    def argv(self, src, dst, work):
        lists = work / "clsync-lists"
        lists.mkdir(mode=0o700, exist_ok=True)  # clsync refuses a lists dir others can read
        os.chmod(lists, 0o700)
        return [
            "clsync",
            "-H", "/NULL/",          # read no config file
            # keep our uid/gid like the other tools (as root it would drop to nobody)
            "-u", str(os.getuid()), "-g", str(os.getgid()),
            "-l", "bench",
            "-M", "rsyncdirect",
            "-S", shutil.which("rsync") or "/usr/bin/rsync",
            "-W", str(src),
            "-D", str(dst),
            "-L", str(lists),        # include/exclude lists go to our workdir
            "-t0", "-w0",
            "-x", "23", "-x", "24",  # vanished files: what the man page recommends
            "--retries", "0",        # retry forever instead of dying on a failed rsync
        ]

    def version(self):
        return first_line(["clsync", "-V"]).replace("Info: ", "")


class Lsyncd(Tool):
    name = "lsyncd"

    def argv(self, src, dst, work):
        conf = work / "lsyncd.conf.lua"
        conf.write_text(
            "settings {\n"
            "  nodaemon = true,\n"
            "  insist = true,\n"
            f"  statusFile = {lua_str(str(work / 'lsyncd.status'))},\n"
            f"  logfile = {lua_str(str(work / 'lsyncd.log'))},\n"
            "}\n"
            "sync {\n"
            "  default.rsync,\n"
            f"  source = {lua_str(str(src))},\n"
            f"  target = {lua_str(str(dst))},\n"
            "  delay = 0,\n"
            "}\n"
        )
        return ["lsyncd", "-nodaemon", str(conf)]

    def version(self):
        return first_line(["lsyncd", "-version"])


def first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable ({e})"
    out = (r.stdout + r.stderr).decode(errors="replace").strip().splitlines()
    return out[0].strip() if out else f"exit {r.returncode}"


# --------------------------------------------------------------------------
# trees


def snapshot(root: Path) -> dict[bytes, tuple[str, int]]:
    """path -> (type, size) for everything under root, via find(1) (fast, C).
    Directory sizes are filesystem details and are ignored."""
    r = subprocess.run(
        ["find", str(root), "-mindepth", "1", "-printf", r"%y %s %P\0"],
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    out: dict[bytes, tuple[str, int]] = {}
    for rec in r.stdout.split(b"\0"):
        if not rec:
            continue
        typ, size, path = rec.split(b" ", 2)
        t = typ.decode()
        out[path] = (t, 0 if t == "d" else int(size))
    return out


def diff_paths(a: dict, b: dict) -> list[bytes]:
    keys = a.keys() | b.keys()
    return sorted(k for k in keys if a.get(k) != b.get(k))


def diff_kinds(src: dict, dst: dict) -> dict:
    """How DST differs: paths missing from it, extra in it, or there with
    another type or size."""
    return dict(
        missing=sum(1 for k in src if k not in dst),
        extra=sum(1 for k in dst if k not in src),
        wrong=sum(1 for k in src if k in dst and src[k] != dst[k]),
    )


def wait_equal(src_snap: dict, dst: Path, daemon: Daemon, timeout: float,
               stall: float = 0.0) -> dict:
    """Poll DST until it equals src_snap. Returns t_equal (monotonic, end of the
    walk that saw equality), walks, max walk duration; or converged=False with
    the differing paths of the last walk. Polls at most half the time (the
    pause between walks is at least one walk long) to leave CPU to the tool.

    With stall > 0, gives up early when for `stall` seconds DST did not change
    and neither the daemon nor any child of it used CPU: with zero delays a
    tool in that state has nothing left that would ever fix DST."""
    deadline = NOW() + timeout
    walks, max_walk = 0, 0.0
    last_snap, last_cpu, quiet_since = None, None, NOW()
    while True:
        t0 = NOW()
        snap = snapshot(dst)
        t1 = NOW()
        walks += 1
        max_walk = max(max_walk, t1 - t0)
        if snap == src_snap:
            return dict(converged=True, t_equal=t1, walks=walks, max_walk_s=max_walk)
        if not daemon.alive():
            snap = snapshot(dst)
            return dict(converged=False, died=daemon.proc.returncode, diff=diff_paths(src_snap, snap),
                        kinds=diff_kinds(src_snap, snap), walks=walks, max_walk_s=max_walk)
        if stall > 0:
            cpu = cpu_tree(daemon.pid)
            if snap != last_snap or cpu != last_cpu or daemon.children_alive():
                last_snap, last_cpu, quiet_since = snap, cpu, t1
            elif t1 - quiet_since >= stall:
                return dict(converged=False, died=None, stalled=True, diff=diff_paths(src_snap, snap),
                            kinds=diff_kinds(src_snap, snap), walks=walks, max_walk_s=max_walk)
        if t1 > deadline:
            return dict(converged=False, died=None, stalled=False, diff=diff_paths(src_snap, snap),
                        kinds=diff_kinds(src_snap, snap), walks=walks, max_walk_s=max_walk)
        time.sleep(max(0.005, t1 - t0))


def wait_file(path: Path, size: int, timeout: float, poll: float = 0.001) -> float | None:
    """Tight poll (default 1 ms) for path to exist with the given size; returns
    the monotonic time it was seen, or None on timeout."""
    deadline = NOW() + timeout
    while True:
        try:
            if os.lstat(path).st_size == size:
                return NOW()
        except FileNotFoundError:
            pass
        t = NOW()
        if t > deadline:
            return None
        time.sleep(poll)


def write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def payload(rng: random.Random, lo: int, hi: int) -> bytes:
    return b"x" * rng.randint(lo, hi)


def fresh_dir(p: Path) -> Path:
    if p.exists():
        shutil.rmtree(p)
    p.mkdir(parents=True)
    return p


# --------------------------------------------------------------------------
# bring-up shared by the workloads


class RunFailed(Exception):
    def __init__(self, msg: str, daemon: Daemon | None = None):
        tail = daemon.log_tail() if daemon else ""
        super().__init__(msg + (("\n--- log tail ---\n" + tail) if tail else ""))
        self.short = msg


def bring_up(tool: Tool, src: Path, dst: Path, work: Path, logname: str, timeout: float,
             probe_dir: Path | None = None) -> tuple[Daemon, dict]:
    """Start the tool on src -> dst and wait until it is really working: DST
    equals SRC (initial sync done) and a probe file written afterwards arrives
    (the watches are in place). Returns the daemon and the timings."""
    src_snap = snapshot(src)
    argv = tool.argv(src, dst, work)
    COMMANDS.setdefault(tool.name, argv)
    if isinstance(tool, Lsyncd):
        COMMANDS.setdefault("lsyncd.conf.lua", (work / "lsyncd.conf.lua").read_text())
    d = Daemon(argv, work / logname)
    w = wait_equal(src_snap, dst, d, timeout)
    if not w["converged"]:
        why = f"exited with {w['died']}" if w.get("died") is not None else f"timeout {timeout:.0f}s"
        raise RunFailed(f"initial sync incomplete ({why}; {len(w['diff'])} paths differ)", d)
    t_synced = w["t_equal"]
    probe = (probe_dir or src) / "bench-probe"
    data = b"probe\n"
    write_file(probe, data)
    t_write = NOW()
    t_arrived = wait_file(dst / probe.relative_to(src), len(data), timeout)
    if t_arrived is None:
        raise RunFailed(f"probe {probe.relative_to(src)} never arrived within {timeout:.0f}s", d)
    return d, dict(
        start_to_synced_s=t_synced - d.t_exec,
        start_to_probe_s=t_arrived - d.t_exec,
        probe_latency_s=t_arrived - t_write,
        sync_walk_s=w["max_walk_s"],
    )


def settle(d: Daemon, quiet: float = 0.5, timeout: float = 10.0) -> None:
    """Wait until the daemon has no children and burned no CPU for `quiet` s."""
    deadline = NOW() + timeout
    last = cpu_tree(d.pid)
    since = NOW()
    while NOW() < deadline:
        time.sleep(0.1)
        cur = cpu_tree(d.pid)
        if cur is None:
            return
        if cur != last or d.children_alive():
            last, since = cur, NOW()
        elif NOW() - since >= quiet:
            return


# --------------------------------------------------------------------------
# workloads


def wl_latency(tool: Tool, work: Path, sz: dict) -> dict:
    src, dst = fresh_dir(work / "src"), fresh_dir(work / "dst")
    rng = random.Random(1)
    for i in range(10):
        write_file(src / f"seed{i}", payload(rng, 10, 1000))
    d, _ = bring_up(tool, src, dst, work, "latency.log", sz["timeout"])
    try:
        settle(d)
        samples, lost = [], 0
        data = b"y" * 100
        for i in range(sz["latency_runs"]):
            name = f"lat{i:03d}"
            t0 = NOW()  # from the start of the write: a tool may copy before close()
            write_file(src / name, data)
            t1 = wait_file(dst / name, len(data), 10.0)
            if t1 is None:
                lost += 1
            else:
                samples.append(t1 - t0)
            settle(d, quiet=0.1, timeout=2.0)
        if not samples:
            raise RunFailed("no write ever arrived", d)
        s = sorted(samples)
        return dict(
            median_ms=statistics.median(s) * 1e3,
            p90_ms=s[max(0, math.ceil(0.9 * len(s)) - 1)] * 1e3,
            min_ms=s[0] * 1e3,
            max_ms=s[-1] * 1e3,
            samples_ms=[x * 1e3 for x in samples],
            not_arrived=lost,
        )
    finally:
        d.stop()


def storm(src: Path, nfiles: int, ndirs: int, seed: int = 7) -> dict:
    """The storm, deterministic for a seed: ndirs dirs (a tenth of them nested
    in another), nfiles files spread over them, then ~10% of the dirs renamed,
    ~5% of the files renamed (some across dirs), ~5% rewritten with another
    size, ~5% deleted and ~5% of the dirs deleted with their contents."""
    rng = random.Random(seed)
    dirs: list[Path] = []
    nested = max(1, ndirs // 10)
    for i in range(ndirs - nested):
        dirs.append(src / f"d{i:03d}")
    for j in range(nested):
        dirs.append(dirs[j * ((ndirs - nested) // nested)] / f"n{j:03d}")
    per = nfiles // len(dirs)
    extra = nfiles - per * len(dirs)
    files: list[Path] = []
    ops = 0
    for k, dpath in enumerate(dirs):
        dpath.mkdir()
        ops += 1
        for f in range(per + (1 if k < extra else 0)):
            p = dpath / f"f{f:04d}.dat"
            write_file(p, payload(rng, 0, 2000))
            files.append(p)
            ops += 1
    # rename ~10% of the top-level dirs (carrying their files and nested dirs)
    top = [p for p in dirs if p.parent == src]
    renamed = rng.sample(top, max(1, len(top) // 10))
    remap: dict[Path, Path] = {}
    for p in renamed:
        q = p.with_name("r" + p.name[1:])
        os.rename(p, q)
        remap[p] = q
        ops += 1

    def moved(p: Path) -> Path:
        for a, b in remap.items():
            if p == a or a in p.parents:
                return b / p.relative_to(a)
        return p

    files = [moved(p) for p in files]
    dirs = [moved(p) for p in dirs]
    # rename ~5% of the files: 4 in 5 within their dir, 1 in 5 into another dir
    idx = rng.sample(range(len(files)), max(1, len(files) // 20))
    for n, i in enumerate(idx):
        p = files[i]
        if n % 5 == 4:
            q = rng.choice(dirs) / f"m{n:05d}.dat"
        else:
            q = p.with_name(p.stem + ".renamed")
        os.rename(p, q)
        files[i] = q
        ops += 1
    # rewrite ~5% with a new size
    for i in rng.sample(range(len(files)), max(1, len(files) // 20)):
        write_file(files[i], payload(rng, 2001, 4000))
        ops += 1
    # delete ~5% of the files, then ~5% of the dirs (non-nested ones)
    for i in sorted(rng.sample(range(len(files)), max(1, len(files) // 20)), reverse=True):
        os.unlink(files[i])
        del files[i]
        ops += 1
    gone = rng.sample([p for p in dirs if p.parent == src], max(1, len(dirs) // 20))
    for p in gone:
        shutil.rmtree(p)
        ops += 1
    return dict(ops=ops)


def wl_storm(tool: Tool, work: Path, sz: dict) -> dict:
    src, dst = fresh_dir(work / "src"), fresh_dir(work / "dst")
    d, _ = bring_up(tool, src, dst, work, "storm.log", sz["timeout"])
    try:
        settle(d)
        cpu0 = cpu_tree(d.pid)
        t0 = NOW()
        info = storm(src, sz["storm_files"], sz["storm_dirs"])
        t_end = NOW()
        src_snap = snapshot(src)
        w = wait_equal(src_snap, dst, d, sz["timeout"], sz["stall"])
        res = dict(storm_s=t_end - t0, storm_ops=info["ops"], src_paths=len(src_snap),
                   walk_s=w["max_walk_s"])
        if w["converged"]:
            d.wait_children_gone(5.0)
            settle(d, quiet=0.3, timeout=5.0)
            res.update(converged=True, converge_s=w["t_equal"] - t_end, lost=0)
        else:
            res.update(converged=False, converge_s=None, lost=len(w["diff"]),
                       stalled=w.get("stalled"), lost_kinds=w["kinds"],
                       lost_sample=[p.decode(errors="backslashreplace") for p in w["diff"][:10]])
            if w.get("died") is not None:
                res["died"] = w["died"]
                res["log_tail"] = d.log_tail()
        cpu1 = cpu_tree(d.pid)
        if cpu0 and cpu1:
            res.update(cpu_daemon_s=cpu1[0] - cpu0[0], cpu_children_s=cpu1[1] - cpu0[1],
                       cpu_total_s=cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1])
        return res
    finally:
        d.stop()


def build_tree(root: Path, ndirs: int, nfiles: int, fanout: int = 10) -> Path:
    """ndirs dirs breadth-first with the given fanout, nfiles small files spread
    evenly; returns the deepest directory (the last one created)."""
    rng = random.Random(3)
    dirs: list[Path] = []
    frontier = [root]
    while len(dirs) < ndirs:
        nxt = []
        for parent in frontier:
            for i in range(fanout):
                if len(dirs) >= ndirs:
                    break
                p = parent / f"d{i}"
                p.mkdir()
                dirs.append(p)
                nxt.append(p)
        frontier = nxt
    per, extra = divmod(nfiles, len(dirs))
    for k, dpath in enumerate(dirs):
        for f in range(per + (1 if k < extra else 0)):
            write_file(dpath / f"f{f:03d}", payload(rng, 50, 250))
    return dirs[-1]


def wl_startup(tool: Tool, work: Path, sz: dict, shared: dict) -> dict:
    src = shared["startup_src"]
    deepest = shared["startup_deepest"]
    dst = fresh_dir(work / "dst")
    probe = deepest / "bench-probe"
    if probe.exists():
        probe.unlink()
    d, up = bring_up(tool, src, dst, work, "startup.log", sz["timeout"], probe_dir=deepest)
    try:
        settle(d, quiet=1.0)
        rss = rss_kib(d.pid)
        cpu = cpu_tree(d.pid)
        return dict(
            start_to_synced_s=up["start_to_synced_s"],
            start_to_probe_s=up["start_to_probe_s"],
            probe_latency_s=up["probe_latency_s"],
            walk_s=up["sync_walk_s"],
            idle_rss_mib=rss / 1024 if rss is not None else None,
            cpu_daemon_s=cpu[0] if cpu else None,
            cpu_children_s=cpu[1] if cpu else None,
            cpu_total_s=cpu[0] + cpu[1] if cpu else None,
        )
    finally:
        d.stop()
        if probe.exists():
            probe.unlink()


def file_ids(d: Path) -> dict[str, tuple[int, int]]:
    out = {}
    with os.scandir(d) as it:
        for e in it:
            st = e.stat(follow_symlinks=False)
            out[e.name] = (st.st_ino, st.st_ctime_ns)
    return out


def wl_rename(tool: Tool, work: Path, sz: dict) -> dict:
    src, dst = fresh_dir(work / "src"), fresh_dir(work / "dst")
    rng = random.Random(5)
    big = src / "big"
    big.mkdir()
    for i in range(sz["rename_files"]):
        write_file(big / f"f{i:05d}", payload(rng, 100, 4000))
    write_file(src / "other", b"o")
    d, _ = bring_up(tool, src, dst, work, "rename.log", sz["timeout"])
    try:
        settle(d)
        before = file_ids(dst / "big")
        cpu0, io0 = cpu_tree(d.pid), io_write_bytes(d.pid)
        os.rename(big, src / "big-renamed")
        t0 = NOW()
        src_snap = snapshot(src)
        w = wait_equal(src_snap, dst, d, sz["timeout"], sz["stall"])
        res = dict(files=len(before), walk_s=w["max_walk_s"])
        if not w["converged"]:
            res.update(converged=False, converge_s=None, lost=len(w["diff"]),
                       stalled=w.get("stalled"), lost_kinds=w["kinds"],
                       lost_sample=[p.decode(errors="backslashreplace") for p in w["diff"][:10]])
            if w.get("died") is not None:
                res["died"] = w["died"]
                res["log_tail"] = d.log_tail()
        else:
            res.update(converged=True, converge_s=w["t_equal"] - t0, lost=0)
            d.wait_children_gone(5.0)
            settle(d, quiet=0.3, timeout=5.0)
        # judged on whatever DST/big-renamed holds, converged or not
        try:
            after = file_ids(dst / "big-renamed")
        except FileNotFoundError:
            after = {}
        if after:
            kept = sum(1 for k, v in after.items() if before.get(k) == v)
            share = kept / len(after)
            res.update(inodes_kept=kept, dst_effect="renamed" if share >= 0.99 else
                       "copied" if share <= 0.01 else f"mixed ({share:.0%} kept)")
        cpu1, io1 = cpu_tree(d.pid), io_write_bytes(d.pid)
        if cpu0 and cpu1:
            res.update(cpu_daemon_s=cpu1[0] - cpu0[0], cpu_children_s=cpu1[1] - cpu0[1],
                       cpu_total_s=cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1])
        if io0 is not None and io1 is not None:
            res["write_mib"] = (io1 - io0) / 2**20
        return res
    finally:
        d.stop()


# --------------------------------------------------------------------------
# report

ROWS = [
    # (workload, key, label, format, lower-is-better numeric)
    ("latency", "median_ms", "write→mirrored latency, median (ms)", "{:.1f}", True),
    ("latency", "p90_ms", "write→mirrored latency, p90 (ms)", "{:.1f}", True),
    ("storm", "storm_s", "storm: time the writer took for the storm (s)", "{:.2f}", False),
    ("storm", "converge_s", "storm: end of storm → DST == SRC (s)", "{:.2f}", True),
    ("storm", "lost", "storm: paths differing at the end (lost changes)", "{:d}", False),
    ("storm", "cpu_total_s", "storm: CPU, daemon + children (s)", "{:.2f}", True),
    ("storm", "cpu_daemon_s", "storm: … of which the daemon (s)", "{:.2f}", False),
    ("storm", "cpu_children_s", "storm: … of which its children (s)", "{:.2f}", False),
    ("startup", "start_to_synced_s", "startup: exec → DST == SRC (s)", "{:.2f}", True),
    ("startup", "start_to_probe_s", "startup: exec → probe in deepest dir arrived (s)", "{:.2f}", True),
    ("startup", "cpu_total_s", "startup: CPU from exec to idle, daemon + children (s)", "{:.2f}", True),
    ("startup", "idle_rss_mib", "startup: idle RSS of the daemon (MiB)", "{:.1f}", True),
    ("rename", "converge_s", "dir rename: time until DST reflects it (s)", "{:.3f}", True),
    ("rename", "lost", "dir rename: paths differing at the end (lost changes)", "{:d}", False),
    ("rename", "cpu_total_s", "dir rename: CPU, daemon + children (s)", "{:.2f}", True),
    ("rename", "cpu_daemon_s", "dir rename: … of which the daemon (s)", "{:.2f}", False),
    ("rename", "cpu_children_s", "dir rename: … of which its children (s)", "{:.2f}", False),
    ("rename", "write_mib", "dir rename: bytes written to storage (MiB)", "{:.2f}", True),
    ("rename", "dst_effect", "dir rename: what DST did", "{}", False),
]


def cell(res: dict | None, key: str, fmt: str) -> str:
    if res is None:
        return "—"
    if "error" in res:
        return "failed"
    if key == "converge_s" and res.get("converged") is False:
        if res.get("died") is not None:
            return "daemon died"
        total = len(res.get("runs", [])) - res.get("failed_runs", 0)
        if total > 1:
            return f"did not converge in {total - res.get('converged_runs', 0)}/{total} runs"
        return "did not converge"
    v = res.get(key)
    if v is None:
        return "—"
    if key == "lost" and v and res.get("lost_kinds"):
        k = res["lost_kinds"]
        parts = [f"{k[n]} {label}" for n, label in
                 (("missing", "missing"), ("extra", "stale"), ("wrong", "wrong size/type")) if k.get(n)]
        return f"{v} ({', '.join(parts)})"
    return fmt.format(v)


def value(res: dict | None, key: str):
    if not res or "error" in res:
        return None
    if key == "converge_s" and res.get("converged") is False:
        return None
    v = res.get(key)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def ratio(ra: dict | None, rb: dict | None, key: str) -> str:
    a, b = value(ra, key), value(rb, key)
    if key == "converge_s" and a is not None and rb and rb.get("converged") is False:
        return "n/a (DNC)"
    if a is None or b is None:
        return "—"
    # CPU times come in clock ticks: below two ticks a ratio is noise
    floor = 2.0 / CLK_TCK if key.startswith("cpu_") else 0.0
    if b <= floor:
        return "—"
    r = a / b
    if r == 0:
        return "0"
    if r < 0.001:
        return "<0.001"
    return f"{r:.2g}" if r < 0.1 else f"{r:.2f}"


RATIOS = [("livesync", "clsync"), ("livesync", "lsyncd"), ("livesync-rsync", "clsync")]


def table(results: dict, tools: list[str]) -> str:
    ratios = [(a, b) for a, b in RATIOS if a in tools and b in tools]
    head = ["metric"] + tools + [f"{a} / {b}" for a, b in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for wl, key, label, fmt, numeric in ROWS:
        if wl not in results:
            continue
        row = [label]
        for t in tools:
            row.append(cell(results[wl].get(t), key, fmt))
        for a, b in ratios:
            row.append(ratio(results[wl].get(a), results[wl].get(b), key) if numeric else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# environment


class InotifyLimit:
    """Raise fs.inotify.max_user_watches for the run when root and needed."""

    PATH = "/proc/sys/fs/inotify/max_user_watches"

    def __init__(self, need: int):
        self.old = None
        try:
            cur = int(Path(self.PATH).read_text())
        except OSError:
            return
        if cur >= need:
            return
        if os.geteuid() != 0:
            log(f"warning: {self.PATH} is {cur}, the bench needs ~{need}; run as root or raise it")
            return
        Path(self.PATH).write_text(str(need))
        self.old = cur
        log(f"raised {self.PATH} {cur} -> {need} for the run")

    def restore(self) -> None:
        if self.old is not None:
            Path(self.PATH).write_text(str(self.old))
            log(f"restored {self.PATH} to {self.old}")
            self.old = None


def read_int(path: str):
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def environment(tools: list[Tool]) -> dict:
    return dict(
        kernel=platform.release(),
        cpus=os.cpu_count(),
        python=platform.python_version(),
        loadavg_start=os.getloadavg(),
        rsync=first_line(["rsync", "--version"]),
        inotify=dict(
            max_user_watches=read_int("/proc/sys/fs/inotify/max_user_watches"),
            max_user_instances=read_int("/proc/sys/fs/inotify/max_user_instances"),
            max_queued_events=read_int("/proc/sys/fs/inotify/max_queued_events"),
        ),
        versions={t.name: t.version() for t in tools},
        livesync_commit=first_line(["git", "-C", str(HERE.parent), "describe", "--always", "--dirty"]),
    )


# --------------------------------------------------------------------------
# main


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which some runnable task waited for a CPU
    (/proc/pressure/cpu "some avg10"): how busy the shared machine was."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    return float(line.split()[1].split("=")[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_one(wl: str, t: Tool, work: Path, sz: dict, shared: dict, logs_out: Path,
            tag: str) -> dict:
    """One run of one workload by one tool in its own fresh `work` dir. Nothing
    is deleted between runs: on ext4, the first burst of file creations after a
    big deletion costs several times the kernel time of the next one, and that
    would land on whichever tool runs next."""
    work = fresh_dir(work)
    os.sync()  # no writeback left over from the previous run
    log(f"{wl}: {t.name}{tag} ...")
    try:
        if wl == "latency":
            r = wl_latency(t, work, sz)
        elif wl == "storm":
            r = wl_storm(t, work, sz)
        elif wl == "startup":
            r = wl_startup(t, work, sz, shared)
        else:
            r = wl_rename(t, work, sz)
    except RunFailed as e:
        r = dict(error=e.short, detail=str(e))
        log(f"{wl}: {t.name} FAILED: {e}")
    finally:
        Daemon.stop_all()
    r["cpu_pressure_pct"] = cpu_pressure()
    r["loadavg"] = os.getloadavg()[0]
    summary = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()
               if k not in ("samples_ms", "lost_sample", "log_tail", "detail")}
    log(f"{wl}: {t.name}{tag}: {summary}")
    # keep the tool's log when something went wrong
    if "error" in r or r.get("converged") is False:
        logs_out.mkdir(parents=True, exist_ok=True)
        for f in work.glob("*.log"):
            shutil.copy(f, logs_out / f"{wl}-{t.name}-{f.name}")
    return r


def aggregate(rs: list[dict]) -> dict:
    """One figure per metric from repeated runs: the median of each number over
    the runs that did not fail; converged only if every run converged (then
    converge_s is the median), lost = the worst run; every run is kept in
    `runs`."""
    if len(rs) == 1:
        return rs[0]
    ok = [r for r in rs if "error" not in r]
    if not ok:
        return dict(rs[0], runs=rs)
    out: dict = dict(runs=rs, failed_runs=len(rs) - len(ok))
    keys = {k for r in ok for k in r}
    for k in keys:
        vals = [r[k] for r in ok if k in r and r[k] is not None]
        nums = [v for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(vals):
            out[k] = statistics.median(nums)
        elif vals and all(isinstance(v, str) for v in vals):
            out[k] = vals[0] if len(set(vals)) == 1 else " / ".join(sorted(set(vals)))
    if any("converged" in r for r in ok):
        conv = all(r.get("converged") for r in ok)
        out["converged"] = conv
        out["converged_runs"] = sum(1 for r in ok if r.get("converged"))
        worst = max(ok, key=lambda r: r.get("lost", 0))
        out["lost"] = worst.get("lost", 0)
        if "lost_kinds" in worst:
            out["lost_kinds"] = worst["lost_kinds"]
        if not conv:
            out["converge_s"] = None
            out["stalled"] = any(r.get("stalled") for r in ok)
            if any(r.get("died") is not None for r in ok):
                out["died"] = next(r["died"] for r in ok if r.get("died") is not None)
    return out


def disk_need(sz: dict, ntools: int, workloads: list[str]) -> tuple[int, int]:
    """Files and bytes the run leaves on disk before its final cleanup (every
    small file takes one 4 KiB block)."""
    runs = ntools * sz["repeat"]
    files = max(sz["startup_files"], sz["storm_files"]) + sz["startup_dirs"]  # the priming tree
    if "latency" in workloads:
        files += ntools * 2 * (10 + sz["latency_runs"] + 1)
    if "storm" in workloads:
        files += runs * 2 * (sz["storm_files"] + sz["storm_dirs"])
    if "startup" in workloads:
        files += (runs + 1) * (sz["startup_files"] + sz["startup_dirs"])
    if "rename" in workloads:
        files += runs * 2 * (sz["rename_files"] + 2)
    return files, files * 4096


def fs_type_of(path: Path) -> str:
    """Filesystem type and options of the mount holding path (/proc/mounts)."""
    best, found = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, typ, opts = line.split()[:4]
                mnt = mnt.replace("\\040", " ")
                if (str(path) == mnt or str(path).startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                    best, found = mnt, f"{typ} ({opts})"
    except OSError:
        pass
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, a smoke run in under 2 minutes")
    ap.add_argument("--livesync", default=str(HERE.parent / "target" / "release" / "livesync"),
                    help="livesync binary (default: target/release/livesync)")
    ap.add_argument("--tools", default="livesync,livesync-rsync,clsync,lsyncd",
                    help="comma-separated subset of livesync,livesync-rsync,clsync,lsyncd")
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help="comma-separated subset of " + ",".join(WORKLOADS))
    ap.add_argument("--workdir", help="where to build the trees: a new dir is made in it (default: in /tmp), "
                         "removed at the end unless --keep")
    ap.add_argument("--timeout", type=float, help="convergence timeout in seconds (default 120, quick 15)")
    ap.add_argument("--runs", type=int, help="latency runs (default 15, quick 5)")
    ap.add_argument("--repeat", type=int,
                    help="runs of storm/startup/rename per tool, round robin; the table shows "
                         "the median (default 3, quick 1)")
    ap.add_argument("--stall", type=float,
                    help="give up on convergence after this long without any change in DST or "
                         "CPU use by the tool; 0 waits for the whole timeout (default 15, quick 5)")
    ap.add_argument("--out", default=str(HERE / "out" / "results.json"), help="JSON output path")
    ap.add_argument("--keep", action="store_true", help="keep the workdir and logs")
    args = ap.parse_args()

    sz = dict(QUICK if args.quick else FULL)
    if args.timeout:
        sz["timeout"] = args.timeout
    if args.runs:
        sz["latency_runs"] = args.runs
    if args.repeat:
        sz["repeat"] = max(1, args.repeat)
    if args.stall is not None:
        sz["stall"] = args.stall

    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}")
    all_tools: dict[str, Tool] = {
        "livesync": Livesync(args.livesync, rsync=False),
        "livesync-rsync": Livesync(args.livesync, rsync=True),
        "clsync": Clsync(),
        "lsyncd": Lsyncd(),
    }
    tools: list[Tool] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name not in all_tools:
            ap.error(f"unknown tool {name!r}")
        t = all_tools[name]
        exe = t.binary if isinstance(t, Livesync) else t.name
        if (os.sep in exe and not os.access(exe, os.X_OK)) or (os.sep not in exe and not shutil.which(exe)):
            skipped[name] = f"{exe} not found"
            log(f"skipping {name}: {exe} not found")
            continue
        tools.append(t)
    if not tools:
        log("no tool to run")
        return 2

    # SIGTERM/SIGHUP behave like Ctrl-C so the finally blocks run.
    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    own_workdir = args.workdir is None
    if own_workdir:
        base = Path(tempfile.mkdtemp(prefix="livesync-bench-", dir="/tmp"))
    else:
        base = Path(args.workdir).resolve()
        base.mkdir(parents=True, exist_ok=True)
        base = Path(tempfile.mkdtemp(prefix="livesync-bench-", dir=base))
    need_files, need_bytes = disk_need(sz, len(tools), workloads)
    st = os.statvfs(base)
    if st.f_bavail * st.f_frsize < need_bytes * 1.2 or st.f_favail < need_files * 1.2:
        log(f"not enough room in {base}: the run keeps every tree until the end and needs about "
            f"{need_bytes / 2**30:.1f} GiB and {need_files} inodes; use --workdir elsewhere or --quick")
        shutil.rmtree(base, ignore_errors=True)
        return 2
    fs_type = fs_type_of(base)
    limit = InotifyLimit(sz["startup_dirs"] + sz["storm_dirs"] + 10000)
    out_path = Path(args.out)
    logs_out = out_path.parent / "logs"
    results: dict[str, dict] = {w: {} for w in workloads}
    env = environment(tools)
    t_begin = NOW()
    interrupted = False
    try:
        shared: dict = {}
        n_prime = max(sz["startup_files"], sz["storm_files"])
        log(f"priming the filesystem with {n_prime} files (absorbs the cost of earlier deletions)")
        build_tree(fresh_dir(base / "prime"), max(sz["startup_dirs"], sz["storm_dirs"]), n_prime)
        os.sync()
        for wl in workloads:
            if wl == "startup":
                log(f"building startup tree: {sz['startup_dirs']} dirs, {sz['startup_files']} files")
                src = fresh_dir(base / "startup-src")
                shared["startup_src"] = src
                shared["startup_deepest"] = build_tree(src, sz["startup_dirs"], sz["startup_files"])
                snapshot(src)  # warm the cache the same way for every tool
            runs: dict[str, list[dict]] = {t.name: [] for t in tools}
            reps = 1 if wl == "latency" else sz["repeat"]
            for rep in range(reps):
                for t in tools:
                    r = run_one(wl, t, base / f"{wl}-{t.name}-{rep + 1}", sz, shared, logs_out,
                                f" ({rep + 1}/{reps})" if reps > 1 else "")
                    runs[t.name].append(r)
            for name, rs in runs.items():
                results[wl][name] = aggregate(rs)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; cleaning up")
    finally:
        Daemon.stop_all()
        limit.restore()
    try:
        report(args, sz, tools, skipped, results, env, base, fs_type, out_path, NOW() - t_begin,
               interrupted)
    finally:
        # after the report: removing a full run's ~1.4 million files takes minutes
        if args.keep:
            log(f"kept {base}")
        else:
            log(f"removing {base} ...")
            try:
                shutil.rmtree(base, ignore_errors=True)
                log("removed")
            except KeyboardInterrupt:
                log(f"interrupted: {base} is left behind")
                interrupted = True
    return 130 if interrupted else 0


def report(args, sz: dict, tools: list[Tool], skipped: dict, results: dict, env: dict, base: Path,
           fs_type: str, out_path: Path, elapsed: float, interrupted: bool) -> None:
    """Write the JSON and print the Markdown table."""
    names = [t.name for t in tools]
    env["loadavg_end"] = os.getloadavg()
    env["workdir"] = str(base)
    env["workdir_fs"] = fs_type
    doc = dict(
        mode="quick" if args.quick else "full",
        command=" ".join(sys.argv),
        sizes=sz,
        elapsed_s=elapsed,
        interrupted=interrupted,
        environment=env,
        skipped=skipped,
        commands=COMMANDS,
        results=results,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"## livesync vs clsync vs lsyncd ({doc['mode']} sizes, {env['cpus']} CPUs, "
          f"kernel {env['kernel']})\n")
    print(table(results, names))
    loads = [r.get("loadavg") for rs in results.values() for res in rs.values()
             for r in res.get("runs", [res]) if r.get("loadavg") is not None]
    press = [r.get("cpu_pressure_pct") for rs in results.values() for res in rs.values()
             for r in res.get("runs", [res]) if r.get("cpu_pressure_pct") is not None]
    if loads:
        print(f"\nMachine load after each run: 1-min loadavg {min(loads):.1f}–{max(loads):.1f}"
              + (f", CPU pressure (some, avg10) median {statistics.median(press):.0f}%" if press else "")
              + f"; sizes: {doc['mode']}, {sz['repeat']} run(s) per tool for storm/startup/rename; "
              f"workdir on {fs_type.split(' ')[0]}.")
    if skipped:
        print("\nskipped: " + ", ".join(f"{k} ({v})" for k, v in skipped.items()))
    failed = [(wl, t, r["error"]) for wl, rs in results.items() for t, r in rs.items() if "error" in r]
    for wl, t, e in failed:
        print(f"\n{wl} / {t} failed: {e}")
    sys.stdout.flush()
    log(f"JSON written to {out_path}; measuring took {elapsed:.0f}s")


if __name__ == "__main__":
    sys.exit(main())
