"""tools/bench_timers.py, small: every sleep measured, and the ratios from the same run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).parent.parent / "tools" / "bench_timers.py"


def test_the_timers_benchmark_measures_each_sleep_and_their_ratios() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--tasks", "50", "--waits", "4", "--tick", "0", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    us = out["us_a_sleep"]
    assert set(us) == {"trio", "trio_fail_after", "timers"} and all(v > 0 for v in us.values())
    # The ratios are of the unrounded figures: equal to the printed ones' within rounding.
    assert abs(out["timers_to_trio"] - us["timers"] / us["trio"]) < 0.01
    assert abs(out["timers_to_trio_fail_after"] - us["timers"] / us["trio_fail_after"]) < 0.01


def test_the_timers_benchmark_refuses_bad_arguments_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--tasks", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "at least 1" in done.stderr
    assert "Traceback" not in done.stderr
    done = subprocess.run(
        [sys.executable, str(TOOL), "--tick", "-1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--tick" in done.stderr and "Traceback" not in done.stderr
