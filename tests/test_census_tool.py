"""tools/census_sim.py, small: frames by message type and trio's task steps."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_census_counts_frames_by_type_and_task_steps() -> None:
    tool = Path(__file__).parent.parent / "tools" / "census_sim.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--peers", "8", "--writes", "12", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert out["ok"] and out["peers"] == 8
    kinds = out["messages"]
    assert {"Hello", "Push"} <= set(kinds)
    assert out["frames"] == sum(k["frames"] for k in kinds.values())
    assert kinds["Push"]["items"] >= kinds["Push"]["frames"] > 0
    assert out["steps"] == sum(out["task_steps"].values()) > out["frames"]
    assert out["io_waits"] > 0
