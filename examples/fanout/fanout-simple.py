#!/usr/bin/env python3
"""Simple-mode fan-out handler (pdsh/pdcp style).

livesync -M simple runs it once per changed path as
    fanout-simple.py sync LABEL MASK /abs/watch/dir/rel/path
(clsync's default arguments) in the watch dir. It pushes the path to every
host in FANOUT_HOSTS (comma list) below FANOUT_DEST: a file with
`pdcp -w HOSTS -p FILE DEST/REL`, a directory with `pdsh -w HOSTS mkdir -p`,
and a path that is gone with `pdsh -w HOSTS rm -rf --`. FANOUT_PDCP and
FANOUT_PDSH name the programs (default pdcp and pdsh). Names are passed as
argv elements, never through a shell.
"""
import os
import subprocess
import sys

IN_ISDIR = 0x40000000


def main():
    if len(sys.argv) != 5 or sys.argv[1] != "sync":
        sys.exit("usage: fanout-simple.py sync LABEL MASK PATH")
    mask, path = int(sys.argv[3]), os.fsencode(sys.argv[4])
    root = os.fsencode(os.getcwd())
    rel = os.path.relpath(path, root)
    hosts = os.environ["FANOUT_HOSTS"]
    dest = os.path.join(os.fsencode(os.environ["FANOUT_DEST"]), rel) if rel != b"." else os.fsencode(os.environ["FANOUT_DEST"])
    pdcp = os.environ.get("FANOUT_PDCP", "pdcp")
    pdsh = os.environ.get("FANOUT_PDSH", "pdsh")
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            cmd = [pdsh, "-w", hosts, "mkdir", "-p", "--", dest]
        else:
            cmd = [pdcp, "-w", hosts, "-p", path, dest]
    else:
        cmd = [pdsh, "-w", hosts, "rm", "-rf", "--", dest]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
