"""Running a simulation: `simulate(config) -> SimReport`, reproducibly.

    report = pttsync.simulate(pttsync.SimConfig(peers=50, writes=200, seed=7))
    assert report.ok, report.trace()

A run is one `trio.run` under a clock that jumps to the next deadline
(clock.py, as trio's autojump `MockClock`), so virtual time costs no wall
time.  Everything random comes from the seed: the plan, the
keys, the latencies, each node's RNG.  One thing is left: trio shuffles
each batch of ready tasks with its own module-level `random.Random`, and
breaks deadline ties by memory address.  `deterministic_trio` seeds that
generator and turns on the ordering trio keeps for Hypothesis (sorting
each batch by task creation before the seeded shuffle).  Both are private
to trio: the simulator looks for them when it runs, and with a trio that
lacks them the run still works and reports `reproducible: false`; the test
suite checks that two runs (two processes, two hash seeds) with one seed
give one report, so a trio release that changes them is caught in CI.
"""

from __future__ import annotations

import contextlib
import cProfile
import functools
import logging
import multiprocessing
import os
import signal
import socket
import time
import traceback
from typing import TYPE_CHECKING, Any

import trio

from ..core import oplogcodec
from ..errors import SimulationError
from . import totals
from .bridge import WAIT_SLICE_MS, SocketBridge
from .clock import SimClock
from .collect import few_collections, follow_phases
from .invariants import Facts, check, compare_documents, facts_of
from .observe import cdf_points, fault_windows, quantiles, spread, tree_state
from .parts import Part, PartResult, check_splittable
from .plan import FaultKind, Plan, SimConfig, make_plan
from .profiling import PhaseClock, cost_centres
from .report import SimReport
from .stopper import Stopped, Stopper
from .world import World

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from multiprocessing.connection import Connection

    from .world import Progress

log = logging.getLogger(__name__)

DECODE_CACHE = 200_000
"""Verified oplog records remembered across the simulated peers (see run_plan)."""


def sim_clock() -> SimClock:
    """The run's clock (clock.py): MockClock's autojump, without its empty turns."""
    return SimClock()


@contextlib.contextmanager
def deterministic_trio(seed: int) -> Iterator[bool]:
    """Make trio's scheduling a function of `seed` for the duration (True if it could)."""
    try:
        from trio._core import _run as trio_run  # noqa: PLC0415 - private, optional
    except ImportError:  # pragma: no cover - a trio without the module
        yield False
        return
    rng = getattr(trio_run, "_r", None)
    if rng is None or not hasattr(trio_run, "_ALLOW_DETERMINISTIC_SCHEDULING"):
        yield False  # pragma: no cover - a trio without the hooks
        return
    state, flag = rng.getstate(), trio_run._ALLOW_DETERMINISTIC_SCHEDULING
    rng.seed(seed)
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    try:
        yield True
    finally:
        rng.setstate(state)
        trio_run._ALLOW_DETERMINISTIC_SCHEDULING = flag  # type: ignore[misc]


def simulate(
    cfg: SimConfig,
    *,
    progress: Callable[[Progress], None] | None = None,
    reproduce: str = "",
    profile: bool = False,
    stopper: Stopper | None = None,
) -> SimReport:
    """Run the simulation `cfg` describes and check its invariants (`Stopped` if
    `stopper` stopped it first)."""
    plan = make_plan(cfg)
    return run_plan(
        cfg, plan, progress=progress, reproduce=reproduce, profile=profile, stopper=stopper
    )


def run_plan(
    cfg: SimConfig,
    plan: Plan,
    *,
    progress: Callable[[Progress], None] | None = None,
    reproduce: str = "",
    profile: bool = False,
    stopper: Stopper | None = None,
    instruments: Sequence[trio.abc.Instrument] = (),
    on_report: Callable[[SimReport], None] | None = None,
) -> SimReport:
    """Carry out `plan` (normally `make_plan(cfg)`) and report.

    The peers share one cache of verified oplog records: a record one
    simulated peer verified is not verified again by the next (a pure
    function of the bytes, so nothing changes but the CPU spent; a real
    network does that work on a thousand machines at once).

    The checks run at the run's end, inside it, while every node is still up
    (`World.on_finished`); then the nodes stop.  `on_report(report)`, if
    given, is handed the report there, before any node stops: it may end the
    process (`pttsync simulate` does, once it has written the report out:
    shutting down 10,000 nodes one by one takes a quarter of a minute nobody
    waits for).  If it returns, the nodes stop, and the report comes back
    with the stop's time.

    With `profile`, the run up to its report is timed under cProfile and the
    report's `profile` holds the wall time per phase and the top cost centres
    (profiling.py); without it, only the phases.  `instruments` are trio's,
    for tools that count what the run does (tools/census_sim.py).
    """
    wall = time.perf_counter()
    check_splittable(cfg)
    profiler = cProfile.Profile() if profile else None
    # From here the collector follows the run's phases (collect.py); the second
    # process is forked inside the block, so it starts from a collected heap.
    with few_collections():
        phases = PhaseClock(follow_phases)
        second = (
            Second(cfg, plan, lambda: stopper is not None and stopper.stopped)
            if cfg.jobs > 1
            else None
        )
        if profiler is not None:
            profiler.enable()
        try:
            part = second.part() if second is not None else None
            world = World(cfg, plan, progress=progress, phases=phases, part=part)
            with (
                deterministic_trio(cfg.seed) as reproducible,
                oplogcodec.decode_cache(DECODE_CACHE),
            ):
                end = _Ending(
                    world, second, phases, profiler, on_report,
                    reproducible=reproducible, reproduce=reproduce, wall=wall,
                )  # fmt: skip
                world.on_finished = end.finish
                watch = list(instruments)  # they watch the run; they change nothing in it
                clock = SimClock(part.lockstep if part is not None else None)
                try:
                    if stopper is None:
                        trio.run(world.run, clock=clock, instruments=watch)
                    else:
                        trio.run(stopper.run, world, clock=clock, instruments=watch)
                finally:
                    if part is not None:
                        part.lockstep.finish()
            phases.stop()
        finally:
            if profiler is not None:
                profiler.disable()
            if second is not None:
                second.close()
    if end.report is None and stopper is not None and stopper.stopped:
        # Before any failure it explains: a wait for the second process given up.
        raise Stopped("the simulation was stopped before it ended")
    if end.error is not None:
        raise end.error
    if end.report is None:  # it never reached its checks
        if part is not None and part.lockstep.broken:
            raise SimulationError("the split run's second process ended unexpectedly")
        raise SimulationError("the run ended before its checks")  # pragma: no cover - a bug
    report = end.report
    report.phases_s = phases.seconds()
    report.wall_s = round(time.perf_counter() - wall, 3)
    return report


class _Ending:
    """A run's end (`World.on_finished`): the checks, over the second process's peers
    too, and the report, all at the run's last instant, before any node stops."""

    def __init__(
        self,
        world: World,
        second: Second | None,
        phases: PhaseClock,
        profiler: cProfile.Profile | None,
        on_report: Callable[[SimReport], None] | None,
        *,
        reproducible: bool,
        reproduce: str,
        wall: float,
    ) -> None:
        self.world, self.second, self.phases = world, second, phases
        self.profiler, self.on_report = profiler, on_report
        self.reproducible, self.reproduce, self.wall = reproducible, reproduce, wall
        self.report: SimReport | None = None
        self.error: Exception | None = None  # the second process's failure, or on_report's

    def finish(self) -> None:
        world, second = self.world, self.second
        self.phases.enter("checks")
        if world.part is not None:  # each process runs on alone from here (`_answer`)
            world.part.lockstep.finish()
        try:
            live = sorted((p for p in world.peers.values() if p.state == "up"), key=_index)
            facts = None
            if second is not None:  # this process's facts, while the second reads its own
                facts = facts_of(world, world.live(), world.known(), oplogs=False)
                totals.merge(world, second.result())
            verdict = check(world, live, elsewhere=second, facts=facts)
        except SimulationError as exc:  # the second process failed: raised after the run
            self.error = exc
            return
        elapsed = time.perf_counter() - self.wall
        report = _report(
            world, world.plan, verdict, live, elapsed, self.reproducible, self.reproduce
        )
        report.phases_s = self.phases.seconds()  # so far: the stop is to come
        if self.profiler is not None:
            self.profiler.disable()
            centres: dict[str, Any] = dict(cost_centres(self.profiler))
            if report.split is not None:
                centres["split"] = report.split
            report.profile = centres
        self.report = report
        if self.on_report is not None:
            try:
                self.on_report(report)
            except Exception as exc:  # raised after the run, as it is (not in a group)
                self.error = exc


def _index(peer: Any) -> int:
    return int(peer.index)


class Second:
    """The second process of a split run (parts.py): forked with the plan, it runs
    the peers of part 1 in lockstep with this process (over a socket of their
    own, bridge.py), then hands its results over a pipe and exits.  This process's
    waits for it give up once `stopping()` is true (a stop: bridge.py)."""

    def __init__(self, cfg: SimConfig, plan: Plan, stopping: Callable[[], bool]) -> None:
        self.stopping = stopping
        ctx = multiprocessing.get_context("fork")
        self.conn, theirs = ctx.Pipe(duplex=True)
        # The lockstep's own wire (bridge.py): its sends never block, unlike the pipe's.
        self.link, their_link = socket.socketpair()
        self.lookahead = cfg.latency_ms[0] / 1000
        self.process = ctx.Process(
            target=_second,
            args=(cfg, plan, theirs, (their_link, self.link), self.lookahead),
            name="pttsync-sim-part-1",
        )
        self.process.start()
        theirs.close()
        their_link.close()
        self.facts = Facts({}, {}, {}, {})  # its peers' (invariants.py), with its result
        self.done = False

    def part(self) -> Part:
        return Part(0, SocketBridge(self.link, self.stopping), self.lookahead)

    def result(self) -> PartResult:
        """Its results, once both runs ended (then `facts` holds its peers')."""
        result, self.facts = self._recv("ok")
        assert isinstance(result, PartResult)
        return result

    def ask_documents(
        self, want: list[tuple[object, ...]], conflicts: dict[str, Any], sampled: set[int]
    ) -> None:
        self.conn.send(("docs", want, conflicts, sampled))

    def documents(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        differ, hidden = self._recv("docs")
        self.done = True  # that was its last answer
        return differ, hidden

    def _recv(self, kind: str) -> tuple[Any, ...]:
        try:
            while not self.conn.poll(WAIT_SLICE_MS / 1000):
                if self.stopping():
                    raise SimulationError("the run was stopped while it waited for the other")
            got = self.conn.recv()
        except (EOFError, OSError):
            raise SimulationError(
                "the second process of the split run ended unexpectedly"
            ) from None
        if got[0] != kind:
            raise SimulationError(f"the split run's second process failed:\n{got[1]}")
        return tuple(got[1:])

    def close(self) -> None:
        """Its end: it exits after its last answer; stopped or failed before, it is killed
        (it would run on alone)."""
        self.conn.close()
        self.link.close()
        if not self.done:
            self.process.kill()
        self.process.join(timeout=10)
        if self.process.is_alive():  # pragma: no cover - it ignored its end
            self.process.kill()
            self.process.join()


def _second(
    cfg: SimConfig,
    plan: Plan,
    conn: Connection,
    links: tuple[socket.socket, socket.socket],
    lookahead: float,
) -> None:
    """The second process's life (see `Second`)."""
    # The first process answers ^C and SIGTERM, and ends this one; if it dies, this
    # one's next read of the lockstep's socket or the pipe fails and it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    code = 0
    try:
        links[1].close()  # the first process's end: its death then reads as the end
        part = Part(1, SocketBridge(links[0]), lookahead)
        world = World(cfg, plan, part=part, phases=PhaseClock(follow_phases))
        world.on_finished = functools.partial(_answer, world, part, conn)
        with (
            deterministic_trio(cfg.seed),
            oplogcodec.decode_cache(DECODE_CACHE),
            few_collections(),
        ):
            try:
                trio.run(world.run, clock=SimClock(part.lockstep))
            finally:
                part.lockstep.finish()
            if part.lockstep.broken:
                raise SimulationError("the split run's first process is gone")
            raise SimulationError("the split run ended before its checks")  # pragma: no cover
    except BaseException:
        code = _failed(conn)
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the first process's buffers


def _answer(world: World, part: Part, conn: Connection) -> None:
    """The second process at the run's end (`World.on_finished`, at the instant the
    first runs its checks): what those read of this process's peers (invariants.py),
    then its end, without stopping its nodes (nobody reads them any more) nor the
    interpreter's teardown (which would free the heap object by object).

    Each process first ends its side of the lockstep, so that from here neither
    waits for the other's windows: only for the answers on the pipe."""
    code = 0
    try:
        world.phases.enter("checks")  # the collector off (collect.py)
        part.lockstep.finish()
        here = [p for p in world.peers.values() if p.up]
        facts = facts_of(world, here, world.known(), oplogs=True)
        conn.send(("ok", totals.part_result(world), facts))
        _, want, conflicts, sampled = conn.recv()
        conn.send(("docs", *compare_documents(world, here, want, conflicts, sampled)))
    except BaseException:
        code = _failed(conn)
    os._exit(code)


def _failed(conn: Connection) -> int:
    """Tell the first process why the second failed (the traceback being handled);
    the second's exit status."""
    with contextlib.suppress(OSError):
        conn.send(("error", traceback.format_exc()))
    return 1


def _report(
    world: World,
    plan: Plan,
    verdict: Any,
    live: list[Any],
    wall_s: float,
    reproducible: bool,
    reproduce: str,
) -> SimReport:
    cfg = world.cfg
    traffic = [world.fabric.traffic_of(world.peers[i].name) for i in sorted(world.peers)]
    messages = [t.messages_sent for t in traffic]
    sent = [t.bytes_sent for t in traffic]
    live_bits = sum(1 << p.index for p in live)
    spreads = [
        t.last_reach - t.at for t in world.tracks.values() if t.reached & live_bits == live_bits
    ]
    # The lowest-numbered live peer's tree (in a split run: of this process's peers;
    # peer0, the first master, is always this process's and is up at the end).
    here = [p for p in live if p.node is not None]
    final = tree_state(here[0].store, world.topic.topic_id) if here else b""
    convergence = None
    if world.converged_at is not None:
        convergence = round(max(0.0, world.converged_at - world.last_disturbance), 6)
    kinds = [f.kind for f in plan.faults]
    return SimReport(
        seed=cfg.seed,
        config=cfg.to_json(),
        split=totals.split_profile(world) if world.other is not None else None,
        converged=world.converged_at is not None,
        invariants=verdict.results,
        convergence_s=convergence,
        sync_rounds=totals.rounds(world),
        messages={"total": sum(messages), "per_peer": spread(messages)},
        bytes={"total": sum(sent), "per_peer": spread(sent)},
        lost_writes=verdict.lost_writes,
        expired_rolled_back=verdict.expired_rolled_back,
        conflicts=verdict.conflicts,
        virtual_s=round(world.finished_at, 6),
        wall_s=round(wall_s, 3),
        writes={
            "planned": len(plan.writes),
            "acknowledged": world.writes_done,
            "pending_at_ack": sum(1 for t in world.tracks.values() if t.pending),
            "refused": world.writes_refused,
            "orphaned": verdict.orphaned_writes,
            "skipped": world.writes_skipped,
        },
        peers={
            "initial": plan.initial,
            "live": len(live),
            "joined": sum(len(f.peers) for f in plan.faults if f.kind is FaultKind.JOIN),
            "left": kinds.count(FaultKind.LEAVE),
            "crashes": kinds.count(FaultKind.CRASH)
            + cfg.masters * kinds.count(FaultKind.MASTERS_DOWN),
        },
        spread_s=quantiles(spreads),
        documents={"count": verdict.documents, "peers_checked": verdict.peers_checked},
        faults=world.fault_log,
        reproducible=reproducible,
        reproduce=reproduce,
        failures=verdict.details,
        events=list(world.events),
        refusals=world.refusals,
        timeline=world.timeline.rows(final),
        push=_push(totals.push_totals(world), world.writes_done, len(live)),
        series={
            "bytes_per_peer": sent,
            "spread_cdf": cdf_points(spreads),
            "write_window": list(cfg.write_window()),
            "fault_windows": fault_windows(plan.faults, round(world.finished_at, 6)),
        },
    )


def _push(totals: dict[str, int], writes: int, live: int) -> dict[str, Any]:
    """The push counters, and the copies of each write that reached each peer by push."""
    per = totals["received"] / (writes * live) if writes and live else 0.0
    return {**totals, "copies_per_write_per_peer": round(per, 3)}
