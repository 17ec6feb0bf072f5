"""tools/bench_timers.py, small: every sleep measured, and the ratios from the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).parent.parent / "tools" / "bench_timers.py"


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_timers_benchmark_measures_each_sleep_and_their_ratios() -> None:
    done = run_tool("--tasks", "50", "--waits", "4", "--tick", "0", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    us = out["us_a_sleep"]
    assert set(us) == {"trio", "trio_fail_after", "timers"} and all(v > 0 for v in us.values())
    # The ratios are of the unrounded figures: equal to the printed ones' within rounding.
    assert abs(out["timers_to_trio"] - us["timers"] / us["trio"]) < 0.01
    assert abs(out["timers_to_trio_fail_after"] - us["timers"] / us["trio_fail_after"]) < 0.01


def test_the_timers_benchmark_refuses_bad_arguments_without_a_traceback() -> None:
    done = run_tool("--tasks", "0")
    assert done.returncode == 2 and "at least 1" in done.stderr
    assert "Traceback" not in done.stderr
    done = run_tool("--tick", "-1")
    assert done.returncode == 2 and "--tick" in done.stderr and "Traceback" not in done.stderr
