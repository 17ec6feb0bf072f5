"""A run's end (sim/run.py): the checks and the report at the last instant, before
any node stops; `pttsync simulate` writes the report out there and ends.

The checks read every peer while its node still runs (`World.on_finished`),
so a caller handed the report then (`run_plan`'s `on_report`) may end the
process without waiting for thousands of nodes to shut down; in process the
nodes stop, and the report comes back with the stop's time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from pttsync import SimConfig
from pttsync.sim.plan import make_plan
from pttsync.sim.report import SimReport
from pttsync.sim.run import run_plan

REPO = Path(__file__).resolve().parent.parent
ARGS = ["--peers", "16", "--writes", "12", "--seed", "5", "--no-progress", "--json"]


class Census(trio.abc.Instrument):
    """The run's tasks alive now (spawned and not yet exited)."""

    def __init__(self) -> None:
        self.live = 0

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        self.live += 1

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.live -= 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_the_report_is_handed_over_before_any_node_stops(jobs: int) -> None:
    cfg = SimConfig(peers=16, writes=12, seed=5, jobs=jobs)
    census = Census()
    handed: list[tuple[SimReport, dict[str, Any], int]] = []

    def take(report: SimReport) -> None:
        handed.append((report, json.loads(json.dumps(report.to_json())), census.live))

    report = run_plan(cfg, make_plan(cfg), on_report=take, instruments=[census])
    assert len(handed) == 1
    given, then, tasks = handed[0]
    assert given is report and report.ok, report.trace()
    # Each node of this process runs tasks of its own (its links, its timers) until
    # it stops: with every node still up, there are more tasks than nodes here.
    assert tasks > cfg.peers // jobs
    assert census.live == 0  # and then everything stopped
    assert then["phases_s"]["stop"] == 0.0 and list(then["phases_s"])[-1] == "stop"
    assert report.phases_s["stop"] > 0.0  # ... and then the nodes stopped
    now = json.loads(json.dumps(report.to_json()))
    for body in (now, then):
        body.pop("wall_s")
        body.pop("phases_s")
    assert now == then  # the stop changed nothing in the report


def test_a_failure_of_the_taker_is_raised_as_it_is() -> None:
    cfg = SimConfig(peers=6, writes=4, seed=2, jobs=2)

    def take(report: SimReport) -> None:
        raise ValueError("the taker's own")

    with pytest.raises(ValueError, match="the taker's own"):
        run_plan(cfg, make_plan(cfg), on_report=take)


def _command(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pttsync", "simulate", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_the_command_ends_with_its_report_before_the_stop(
    jobs: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its own process: the report is written at the run's end and the process ends
    (no stop); the same report as a run in process, which stops its nodes."""
    from pttsync.cli.main import main  # noqa: PLC0415 - one test

    proc = _command(*ARGS, "--jobs", jobs)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["phases_s"]["stop"] == 0.0 and report["phases_s"]["checks"] > 0
    assert main(["simulate", *ARGS, "--jobs", jobs]) == 0
    here = json.loads(capsys.readouterr().out)
    assert here["phases_s"]["stop"] > 0.0
    for body in (report, here):
        body.pop("wall_s")
        body.pop("phases_s")
    assert report == here


def test_a_failing_run_to_shrink_stops_first(tmp_path: Path) -> None:
    """With --shrink, a failing run's report is not written at once: the shrink runs
    more simulations, after this one's nodes have stopped."""
    saved = tmp_path / "min.json"
    proc = _command(
        "--peers", "12", "--writes", "10", "--duration", "0", "--max-wait", "1",
        "--partition", "4:100", "--jobs", "1", "--no-progress", "--shrink",
        "--max-shrink-runs", "3", "--save-plan", str(saved), "--json",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is False and report["phases_s"]["stop"] > 0.0
    assert "shrink:" in proc.stderr and saved.exists()
    assert report["reproduce"] == f"pttsync simulate --plan {saved}"
