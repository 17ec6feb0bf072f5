"""tools/faults.py, briefly: real peers in network namespaces, with real faults.

Needs root, `ip netns`, nftables (and libfaketime for skewed-clocks, not run
here); skipped with the reason where they are missing.  CI runs as root and
installs them (.ci/run).  The full scenarios: `python tools/faults.py
--scenario NAME` (docs/pip-11/faults.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.faultlab.netlab import unavailable

TOOL = Path(__file__).parent.parent / "tools" / "faults.py"
WHY = unavailable()


@pytest.mark.skipif(WHY is not None, reason=f"no network namespaces here: {WHY}")
@pytest.mark.parametrize("scenario", ["partition-heal", "bit-rot"])
def test_a_short_fault_scenario_keeps_every_invariant(scenario: str) -> None:
    done = subprocess.run(
        [sys.executable, str(TOOL), "--scenario", scenario, "--peers", "3", "--seconds", "4",
         "--seed", "1", "--json"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] and report["converged"] and report["lost_writes"] == []
    assert set(report["invariants"].values()) == {"ok"}
    assert report["acknowledged"] > 0
    if scenario == "bit-rot":
        assert report["quarantined"] == 3


def test_without_namespaces_the_tool_says_why_and_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from tools import faults  # noqa: PLC0415

    monkeypatch.setattr(faults, "unavailable", lambda: "network namespaces need root")
    assert faults.main(["--scenario", "partition-heal"]) == 2
