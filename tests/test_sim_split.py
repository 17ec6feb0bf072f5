"""A simulation split across two processes (`simulate --jobs 2`, sim/parts.py).

Each test runs real forked processes: the first runs the even peers, the
second the odd ones, in lockstep over a pipe.  What must hold: the split run
is as healthy as the whole one and counts the whole network; a seed gives
one report; the checks see the second process's peers (a broken peer there
fails them); a failing second process is reported, not hung on; and what is
not split yet is refused with a clear error.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pttsync.cli import build_parser, main
from pttsync.cli.simulate import command_line, config_from
from pttsync.errors import SimulationError, UsageError
from pttsync.net.topicruntime import TopicRuntime
from pttsync.sim import SimConfig, SimReport, simulate, totals
from pttsync.sim.setup import identity_of
from pttsync.sim.world import World

REPO = Path(__file__).resolve().parent.parent
SPLIT = SimConfig(peers=12, writes=30, seed=11, loss=0.03, partitions=((9.0, 14.0),), jobs=2)
SPLIT_ARGS = [
    "--peers", "12", "--writes", "30", "--seed", "11", "--loss", "0.03",
    "--partition", "9:14", "--jobs", "2",
]  # fmt: skip


def run(cfg: SimConfig) -> SimReport:
    return simulate(cfg, reproduce=command_line(cfg))


def test_a_split_run_is_healthy_and_counts_the_whole_network() -> None:
    split = run(SPLIT)
    whole = run(SPLIT.replace(jobs=1))
    assert split.ok, split.trace()
    assert all(v == "ok" for v in split.invariants.values())
    assert split.peers["live"] == 12
    assert split.writes["acknowledged"] == 30
    assert split.documents["peers_checked"] == 12
    # Both processes' peers are counted: every peer sent something, and the totals
    # are those of a network of 12 (the same workload, scheduled otherwise).
    per_peer = split.series["bytes_per_peer"]
    assert len(per_peer) == 12 and min(per_peer) > 0
    assert 0.7 < split.messages["total"] / whole.messages["total"] < 1.4
    assert 0.7 < split.sync_rounds / whole.sync_rounds < 1.4
    assert split.push["copies_per_write_per_peer"] == pytest.approx(
        whole.push["copies_per_write_per_peer"], rel=0.3
    )
    # Each write's spread counts the peers of both processes.
    assert split.spread_s["writes"] == 30
    assert split.timeline[-1]["live"] == 12
    assert split.timeline[-1]["agree_final"] == 12
    assert "--jobs 2" in split.reproduce
    assert split.config["jobs"] == 2
    # The lockstep's figures: items crossed both ways, each process's wait (wall time,
    # so not in the JSON without --profile).
    assert split.split is not None and whole.split is None
    assert split.split["windows"] > 0 and split.split["crossed"] > 0
    assert [w >= 0 for w in split.split["waited_s"]] == [True, True]
    assert "split" not in split.to_json()


def test_every_fault_is_carried_out_by_both_processes() -> None:
    """Each process stops and starts its own peers as the plan says, and marks the
    other's down and up (the resets of a crashed peer's connections cross); a newcomer
    is admitted by its master's process and started by its own."""
    cfg = SimConfig(
        peers=16, writes=30, seed=8, crashes=4, masters=2, masters_offline=(10.0, 20.0),
        late=2, churn=3, loss=0.02, partitions=((12.0, 16.0),), jobs=2,
    )  # fmt: skip
    split = run(cfg)
    assert split.ok, split.trace()
    assert split.peers["crashes"] == 4 + 2 and split.peers["live"] == 18
    assert split.peers["joined"] == 2 + 3 and split.peers["left"] == 3  # late, newcomers
    assert split.writes["acknowledged"] == 30
    assert split.faults == run(cfg.replace(jobs=1)).faults  # one plan, carried out alike
    again = run(cfg)
    assert again.without_wall_time() == split.without_wall_time()


def test_a_split_run_gives_one_report_for_a_seed(tmp_path: Path) -> None:
    outputs = []
    for hash_seed in ("0", "31337"):
        proc = subprocess.run(
            [sys.executable, "-m", "pttsync", "simulate", *SPLIT_ARGS, "--json",
             "--no-progress"],
            env={**os.environ, "PYTHONHASHSEED": hash_seed}, cwd=REPO,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        report: dict[str, Any] = json.loads(proc.stdout)
        report.pop("wall_s")
        report.pop("phases_s")
        outputs.append(report)
    assert outputs[0] == outputs[1]
    here = json.loads(json.dumps(run(SPLIT).to_json()))
    here.pop("wall_s")
    here.pop("phases_s")
    assert here == outputs[0]


def test_the_checks_see_a_broken_peer_of_the_second_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """peer3 (odd: the second process's) takes no push and no sync round: the checks,
    made by the first process, must find it apart."""
    cfg = SimConfig(peers=6, writes=12, seed=4, max_wait=60.0, jobs=2)
    victim = identity_of(cfg.seed, 3).peer_id
    on_push, sync_round = TopicRuntime.on_push, TopicRuntime.sync_round
    on_request = TopicRuntime.on_request

    def deaf_on_push(self: TopicRuntime, link: Any, push: Any) -> int:
        return 0 if self.identity.peer_id == victim else on_push(self, link, push)

    async def no_round(self: TopicRuntime, link: Any, *, limit: float) -> bool:
        if self.identity.peer_id == victim:
            return False
        return await sync_round(self, link, limit=limit)

    def no_answer(self: TopicRuntime, link: Any, msg: Any) -> list[Any]:
        return [] if self.identity.peer_id == victim else on_request(self, link, msg)

    monkeypatch.setattr(TopicRuntime, "on_push", deaf_on_push)  # the fork inherits them
    monkeypatch.setattr(TopicRuntime, "sync_round", no_round)
    monkeypatch.setattr(TopicRuntime, "on_request", no_answer)
    report = run(cfg)
    assert report.ok is False
    inv = report.invariants
    assert inv["digests_equal"] == "2 distinct digests (peers per digest [5, 1])"
    groups = sorted(report.failures["digests_equal"], key=lambda g: g["count"])
    assert groups[0]["peers"] == ["peer3"]
    assert inv["documents_equal"] == "1 of 6 peers checked show other documents than the oracle"
    assert [d["peer"] for d in report.failures["documents_equal"]] == ["peer3"]
    assert inv["acknowledged_writes"].startswith("12 of 12 acknowledged writes")
    assert not report.converged


def test_a_second_process_killed_mid_run_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second process dies (as the OOM killer would) at its first sample."""
    sample = World._sample

    def dies(self: World) -> None:
        if self.part is not None and self.part.index == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        sample(self)

    monkeypatch.setattr(World, "_sample", dies)
    with pytest.raises(SimulationError, match=r"is gone|ended unexpectedly"):
        simulate(SimConfig(peers=6, writes=6, seed=2, jobs=2))
    assert multiprocessing.active_children() == []


def test_a_second_process_that_fails_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(world: Any) -> Any:
        raise RuntimeError("a bug in the second process")

    monkeypatch.setattr(totals, "part_result", broken)  # only the second process calls it
    with pytest.raises(SimulationError, match="second process failed") as info:
        simulate(SimConfig(peers=4, writes=4, seed=2, jobs=2))
    assert "a bug in the second process" in str(info.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"latency_ms": (0.0, 80.0)}, "least latency above 0"),
        ({"peers": 1, "masters": 1}, "two peers"),
        ({"latency_dist": "lognormal"}, "lognormal latency has no least value"),
    ],
)
def test_what_is_not_split_yet_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        simulate(SimConfig(peers=6, writes=6, jobs=2).replace(**changes))


def test_the_cli_refuses_a_split_it_cannot_run(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--peers", "6", "--jobs", "2", "--latency-dist", "lognormal"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--jobs 2 cannot run this plan: a lognormal latency has no least value" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        main(["simulate", "--jobs", "3"])
    assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("cpus", "extra", "jobs"),
    [
        ({0, 1}, [], 2),
        ({0, 1, 2, 3}, ["--crash", "2"], 2),
        ({0}, [], 1),
        ({0, 1}, ["--churn", "1"], 2),
        ({0, 1}, ["--latency-ms", "0:80"], 1),
    ],
)
def test_jobs_auto_splits_where_two_cpus_and_the_plan_allow(
    monkeypatch: pytest.MonkeyPatch, cpus: set[int], extra: list[str], jobs: int
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cpus)
    for given in ([], ["--jobs", "auto"]):
        args = build_parser().parse_args(["simulate", "--peers", "8", *extra, *given])
        assert config_from(args).jobs == jobs
    args = build_parser().parse_args(["simulate", "--peers", "8", "--jobs", "1", *extra])
    assert config_from(args).jobs == 1  # asked for: kept


def test_the_reproducing_command_says_how_many_processes_whenever_auto_could_differ() -> None:
    assert command_line(SimConfig(peers=8, jobs=1)).endswith("--jobs 1")
    assert command_line(SimConfig(peers=8, jobs=2)).endswith("--jobs 2")
    # With a log-normal latency, auto always runs one process: nothing to say.
    assert "--jobs" not in command_line(SimConfig(peers=8, latency_dist="lognormal"))


def test_the_profile_of_a_split_run_shows_its_windows_and_waits() -> None:
    cfg = SimConfig(peers=8, writes=10, seed=3, jobs=2)
    report = simulate(cfg, profile=True)
    assert report.profile is not None
    split = report.profile["split"]
    assert split["windows"] > 0 and split["crossed"] > 0
    assert len(split["waited_s"]) == 2 and min(split["waited_s"]) >= 0
    assert "two processes: " in report.summary()
    assert "split" not in simulate(cfg.replace(jobs=1), profile=True).profile  # type: ignore[operator]


@pytest.mark.parametrize("hold", [0.0, 3.0, 2.5])
def test_a_split_run_ends_at_one_sample_in_both_processes(hold: float) -> None:
    """The hold (and max_wait) end on a sample both processes decide it at: a hold that
    ended on a sample instant once let one process sample while the other had
    stopped, and the pipe's next message was the wrong one."""
    cfg = SimConfig(peers=8, writes=10, seed=3, hold=hold, jobs=2)
    report = run(cfg)
    assert report.ok, report.trace()
    assert report.virtual_s >= report.timeline[-1]["t"]
    assert (report.phases_s["hold"] > 0) == bool(hold)  # entered exactly with a hold
    if hold:
        converged_sample = min(r["t"] for r in report.timeline if r["distinct_digests"] == 1)
        assert report.virtual_s >= converged_sample + hold
