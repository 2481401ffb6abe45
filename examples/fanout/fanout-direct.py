#!/usr/bin/env python3
"""Direct-mode fan-out handler (uftp style: one multicast send per batch).

livesync -M direct runs it once per batch as
    fanout-direct.py REL_PATH...
(handler arguments `%INCLUDE-LIST%`; the root is `.`) in the watch dir, the
list split across runs when it would pass ARG_MAX. What still exists is sent
to every receiver in one `uftp -H HOSTS -- PATH...` (uftpd on each host
writes it below its own destination, keeping the relative names); what is
gone is removed with one `pdsh -w HOSTS rm -rf -- DEST/PATH...`. FANOUT_UFTP
and FANOUT_PDSH name the programs (default uftp and pdsh); FANOUT_HOSTS is
the comma list of hosts and FANOUT_DEST their destination directory.
"""
import os
import subprocess
import sys


def main():
    paths = [os.fsencode(a) for a in sys.argv[1:] if a != "."]
    hosts = os.environ["FANOUT_HOSTS"]
    dest = os.fsencode(os.environ["FANOUT_DEST"])
    uftp = os.environ.get("FANOUT_UFTP", "uftp")
    pdsh = os.environ.get("FANOUT_PDSH", "pdsh")
    present = [p for p in paths if os.path.lexists(p)]
    gone = [os.path.join(dest, p) for p in paths if not os.path.lexists(p)]
    rc = 0
    if present:
        rc = subprocess.run([uftp, "-H", hosts, "--", *present]).returncode
    if gone and rc == 0:
        rc = subprocess.run([pdsh, "-w", hosts, "rm", "-rf", "--", *gone]).returncode
    sys.exit(rc)


if __name__ == "__main__":
    main()
