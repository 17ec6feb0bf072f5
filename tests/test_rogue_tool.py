"""tools/rogue.py, briefly: a rogue member over real TCP and Noise for two seconds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_a_rogue_member_over_tcp_is_closed_and_the_node_converges() -> None:
    tool = Path(__file__).parent.parent / "tools" / "rogue.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--seconds", "2", "--seed", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["converged"] and report["control_ok"]
    assert report["rogue_closed_for_violations"] > 0 and report["internal_errors"] == 0
    assert report["honest_links"] == 2 and not report["rogue_connected"]
    assert report["messages_sent"] > 0 and report["peak_rss_mb"] > 0
