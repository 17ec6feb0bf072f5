"""tools/mem_sim.py, small: a snapshot at convergence, attributed to source lines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_memory_tool_reports_per_peer_and_by_line() -> None:
    tool = Path(__file__).parent.parent / "tools" / "mem_sim.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--peers", "6", "--writes", "12", "--duration", "2",
         "--top", "4", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and out["peers"] == 6
    assert out["per_peer_bytes"] * 6 <= out["traced_bytes"] and out["per_peer_bytes"] > 10_000
    assert len(out["top"]) == 4 and all(":" in line["where"] for line in out["top"])
    assert out["top"][0]["bytes"] >= out["top"][-1]["bytes"]
