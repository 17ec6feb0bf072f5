"""tools/killloop.py, bounded: a writing node killed with -9 twenty times loses nothing.

The tool's default is 200 kills (`python tools/killloop.py --json`); CI runs 20.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_twenty_kills_lose_no_acknowledged_write() -> None:
    tool = Path(__file__).parent.parent / "tools" / "killloop.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--iterations", "20", "--seed", "3", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["iterations"] == 20 and report["acknowledged"] > 100
    assert report["lost"] == 0 and report["check_failures"] == 0
    assert report["converge_failures"] == 0 and report["failures"] == []
    assert report["kills_mid_write"] > 0
