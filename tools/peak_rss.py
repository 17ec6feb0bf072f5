"""Run a command and report its wall time and the peak of the RSS summed over it and
its children: what a `pttsync simulate --jobs 2` run holds in memory (`/usr/bin/time`
reports the larger process only).

    python tools/peak_rss.py pttsync simulate --peers 1000 --writes 1000 --seed 3 --json

The command's output goes through; the figures go to stderr, last:
"wall 56.2 s, peak summed RSS 887 MB, rc 0".  The RSS is read from /proc every
0.2 s (Linux only), so a peak shorter than that may be missed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.2


def tree(pid: int) -> list[int]:
    """`pid` and its descendants, as /proc lists them now."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(p for child in children for p in tree(int(child)))]


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if not Path("/proc/self/status").exists():
        print("peak_rss.py reads /proc: Linux only", file=sys.stderr)
        return 2
    command = list(argv)
    if command[0] == "pttsync" and shutil.which("pttsync") is None:
        command = [sys.executable, "-m", "pttsync", *command[1:]]
    began = time.perf_counter()
    proc = subprocess.Popen(command)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(rss_kb(p) for p in tree(proc.pid)))
        time.sleep(POLL_S)
    wall = time.perf_counter() - began
    print(f"wall {wall:.1f} s, peak summed RSS {peak / 1024:.0f} MB, rc {proc.returncode}",
          file=sys.stderr)  # fmt: skip
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
