"""Shrinking a failing simulation to a minimal plan, saving plans and replaying them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pttsync.errors import UsageError
from pttsync.sim import SimConfig, make_plan, run_plan
from pttsync.sim.observe import WriteTrack
from pttsync.sim.plan import FaultKind, Plan, Write
from pttsync.sim.shrink import load_plan, save_plan, shrink, units
from pttsync.sim.world import World

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

CFG = SimConfig(peers=6, writes=12, seed=5, crashes=2, partitions=((8.0, 15.0),), duration=20.0)
BAD_KEY = "doc/0000007"


@pytest.fixture
def buggy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug tied to one write: its writer acknowledges a write that no store holds."""
    real = World._write

    async def write(self: World, w: Write) -> None:
        await real(self, w)
        if w.key == BAD_KEY:
            ghost = b"\x07" * 32
            self.tracks[ghost] = WriteTrack(ghost, w.peer, w.key, w.at, pending=False)

    monkeypatch.setattr(World, "_write", write)


def test_faults_pair_with_what_undoes_them() -> None:
    plan = make_plan(CFG)
    groups = units(plan.faults)
    kinds = sorted(tuple(f.kind.value for f in g) for g in groups)
    assert kinds == [("crash", "restart"), ("crash", "restart"), ("partition", "heal")]
    assert sum(len(g) for g in groups) == len(plan.faults)


def test_a_failure_shrinks_to_the_write_that_causes_it(buggy: None) -> None:
    plan = make_plan(CFG)
    assert any(w.key == BAD_KEY for w in plan.writes)
    report = run_plan(CFG, plan)
    assert report.invariants["acknowledged_writes"] != "ok"
    found = shrink(CFG, plan, report, max_runs=40)
    assert found.plan.faults == ()  # no fault was needed
    assert [w.key for w in found.plan.writes] == [BAD_KEY]
    assert found.report.invariants["acknowledged_writes"] != "ok"
    assert found.runs <= 40


def test_shrink_refuses_a_run_that_did_not_fail() -> None:
    report = run_plan(CFG, make_plan(CFG))
    assert report.ok
    with pytest.raises(UsageError, match="nothing to shrink"):
        shrink(CFG, make_plan(CFG), report)


def test_a_saved_plan_replays_exactly(tmp_path: Path) -> None:
    plan = make_plan(CFG)
    target = tmp_path / "plan.json"
    save_plan(target, CFG, plan)
    cfg, again = load_plan(target)
    assert cfg == CFG and again == plan
    assert run_plan(cfg, again).without_wall_time() == run_plan(CFG, plan).without_wall_time()
    assert Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


@pytest.mark.parametrize(
    ("text", "message"),
    [("not json", "not JSON"), ("[]", "not a pttsync simulation plan"),
     ('{"pttsync_simulation": 1, "config": {"peers": 2, "bogus": 1}, "plan": {}}', "bogus"),
     ('{"pttsync_simulation": 1, "config": {}, "plan": {"writes": 3}}', "not a simulation plan")],
)  # fmt: skip
def test_bad_plan_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    target = tmp_path / "p.json"
    target.write_text(text)
    with pytest.raises(UsageError, match=message):
        load_plan(target)


def test_the_cli_shrinks_saves_and_replays(
    buggy: None, tmp_path: Path, run: Callable[..., tuple[int, str, str]]
) -> None:
    target = tmp_path / "min.json"
    code, _out, err = run(
        "simulate", "--peers", "6", "--writes", "12", "--seed", "5", "--crash", "2",
        "--partition", "8:15", "--duration", "20", "--shrink", "--save-plan", str(target),
    )  # fmt: skip
    assert code == 1
    assert f"saved to {target}" in err
    assert "0 of 6 fault events and 1 of 12 writes still fail" in err
    assert f"put {BAD_KEY}" in err
    assert f"reproduce with: pttsync simulate --plan {target}" in err
    code, _out, err = run("simulate", "--plan", str(target))
    assert code == 1  # the bug is still in place: the saved plan fails again
    code, _out, err = run("simulate", "--plan", str(target), "--peers", "3")
    assert code == 2
    assert "drop --peers" in err


def test_save_plan_of_a_healthy_run(
    tmp_path: Path, run: Callable[..., tuple[int, str, str]]
) -> None:
    target = tmp_path / "ok.json"
    code, out, _err = run("simulate", "--peers", "4", "--writes", "3", "--save-plan", str(target))
    assert code == 0 and target.exists()
    code, again, _err = run("simulate", "--plan", str(target))
    assert code == 0
    first_line = out.splitlines()[0].split(" in ")[0]
    assert again.splitlines()[0].startswith(first_line)
    assert FaultKind.CRASH.value == "crash"
