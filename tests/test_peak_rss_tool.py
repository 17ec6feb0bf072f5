"""tools/peak_rss.py: a command's wall time and the peak RSS summed over its processes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parent.parent / "tools" / "peak_rss.py"

# A parent that starts a child, each holding about 60 MB for a second.
TWO = (
    "import subprocess, sys, time; b = bytearray(60 << 20); "
    "c = subprocess.Popen([sys.executable, '-c', "
    "'import time; b = bytearray(60 << 20); time.sleep(1)']); time.sleep(1); c.wait()"
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc: Linux only")
def test_it_sums_the_rss_of_a_command_and_its_children() -> None:
    proc = subprocess.run(
        [sys.executable, str(TOOL), sys.executable, "-c", TWO],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = re.search(r"wall ([\d.]+) s, peak summed RSS (\d+) MB, rc 0$", proc.stderr.strip())
    assert m is not None, proc.stderr
    assert float(m.group(1)) >= 1.0
    assert int(m.group(2)) >= 120  # both processes' 60 MB, not the larger one's


def test_it_passes_the_command_s_exit_status_on() -> None:
    proc = subprocess.run(
        [sys.executable, str(TOOL), sys.executable, "-c", "raise SystemExit(3)"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "rc 3" in proc.stderr
