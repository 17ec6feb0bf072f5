"""Frames handed to a parked reader's handler by the fabric's task (sim/fabric.py
`hand_inline`, sim/link.py `_End.park`, net/inbox.py `feed`).

A reader that parks with a handler gets every frame exactly once and in order,
whether the handler takes it while the reader waits or the reader reads it
itself: after the handler gives a frame back, after a cancellation, around a
close or a reset.  And a simulation hands most of its frames that way, with
a bug of ours met there contained as the reader's own would be.
"""

from __future__ import annotations

import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from pttsync.errors import ConnectionLostError, UsageError
from pttsync.net.peer import PeerLink
from pttsync.net.timers import call_at, sleep, use_ticks
from pttsync.net.topicruntime import TopicRuntime
from pttsync.net.wire import Push
from pttsync.sim import SimConfig, simulate
from pttsync.sim.clock import SimClock
from pttsync.sim.fabric import TICK, Fabric, LinkModel, SimChannel

from .test_sim_fabric import Sim, number, numbered, running

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DEADLINE = 10_000.0  # virtual seconds: every run here ends well before, or fails


@asynccontextmanager
async def paired(
    fabric: Fabric, *, hand: bool = True, limit: float = 600.0
) -> AsyncIterator[tuple[Sim, SimChannel, SimChannel]]:
    """`running(fabric)` (its deadline and nursery), the fabric's handing task if
    `hand`, and a connection from "a" to "b": (the sim, a's side, b's side)."""
    async with running(fabric, limit) as sim:
        if hand:
            sim.nursery.start_soon(fabric.hand_inline)
        client, server = await sim.pair("a", "b")
        assert isinstance(client, SimChannel) and isinstance(server, SimChannel)
        yield sim, client, server


class Reader:
    """A reader that parks or receives as its plan says, and what it got."""

    def __init__(self, server: SimChannel, gives_back: list[bool], steps: list[int]) -> None:
        self.server = server
        self.gives_back = gives_back  # the handler's answers, in turn: False gives a frame back
        self.steps = steps  # 0: receive; 1: park; n > 1: park, cancelled after n ms
        self.got: list[int] = []  # frame numbers, handed or read
        self.handed = 0
        self.given_back = 0
        self.woken_for_work = 0  # park returned True
        self.parked: trio.CancelScope | None = None  # while parked: its scope
        self.end = ""

    def handle(self, frame: bytes) -> bool:
        scope = self.parked
        assert scope is not None, "a frame was handed to a reader that was not parked"
        assert not scope.cancel_called, "a frame was handed to a cancelled reader"
        self.got.append(number(frame))
        keep = self.gives_back[self.handed % len(self.gives_back)]
        self.handed += 1
        if not keep:
            self.given_back += 1
        return keep

    async def run(self, total: int) -> None:
        step = 0
        try:
            while len(self.got) < total:
                kind = self.steps[step % len(self.steps)]
                step += 1
                if kind and not await self._park(kind):
                    continue
                # Told to receive, or the park says there is something to receive.
                frame = await self.server.receive_frame()
                if frame is None:
                    self.end = "eof"
                    return
                self.got.append(number(frame))
        except ConnectionLostError:
            self.end = "reset"

    async def _park(self, kind: int) -> bool:
        """Park (cancelled after `kind` ms if over 1); True if the reader should receive."""
        with trio.move_on_after(kind / 1000 if kind > 1 else math.inf) as scope:
            self.parked = scope
            try:
                if await self.server.park(self.handle):
                    self.woken_for_work += 1
                    return False
                return True
            finally:
                self.parked = None
        return False  # cancelled


@settings(max_examples=150, deadline=None)
@given(
    frames=st.integers(1, 30),
    gaps=st.lists(st.integers(0, 25), min_size=1, max_size=8),
    loss=st.sampled_from([0.0, 0.2]),
    jitter=st.sampled_from([0.0, 2.0]),
    gives_back=st.lists(st.booleans(), min_size=1, max_size=6),
    steps=st.lists(st.sampled_from([0, 1, 1, 1, 3, 20]), min_size=1, max_size=6),
    end=st.sampled_from(["close", "crash", "none"]),
    driver=st.sampled_from(["mock", "clock"]),
    seed=st.integers(0, 2**16),
)
def test_every_frame_reaches_a_parking_reader_once_and_in_order(
    frames: int,
    gaps: list[int],
    loss: float,
    jitter: float,
    gives_back: list[bool],
    steps: list[int],
    end: str,
    driver: str,
    seed: int,
) -> None:
    """Frames sent at random gaps over a lossy, jittery link, read by a reader that
    parks with a handler (which gives some frames back), receives, or parks and is
    cancelled, as drawn; the sender then closes, crashes or stays."""
    clock: trio.abc.Clock = (
        SimClock() if driver == "clock" else trio.testing.MockClock(autojump_threshold=0)
    )
    fabric = Fabric(model=LinkModel(latency=(0.005, 0.05), jitter=jitter, loss=loss), seed=seed)
    sent: list[int] = []
    outcome: dict[str, object] = {}

    async def main() -> None:
        use_ticks(TICK)
        if isinstance(clock, SimClock):
            clock.drive()
        async with paired(fabric, limit=DEADLINE) as (sim, client, server):
            reader = Reader(server, gives_back, steps)
            sim.nursery.start_soon(reader.run, frames)
            try:
                for i in range(frames):
                    await sleep(gaps[i % len(gaps)] / 1000, exact=True)
                    await client.send_frame(numbered(i))
                    sent.append(i)
            except ConnectionLostError:
                pass
            if end == "close":
                await client.aclose()
            elif end == "crash":
                fabric.crash("a")
            while not reader.end and len(reader.got) < len(sent):
                await sleep(0.1)
            outcome["reader"] = reader

    trio.run(main, clock=clock)
    reader = outcome["reader"]
    assert isinstance(reader, Reader)
    # Exactly once, in order: a prefix of what was sent (all of it unless the link broke).
    assert reader.got == sent[: len(reader.got)]
    if reader.end != "reset":
        assert reader.got == sent
    # Park returns True exactly for the frames the handler gave back (at most one a
    # park: the reader is woken then, and frames behind it wait for it).
    assert reader.woken_for_work <= reader.given_back
    assert reader.given_back - reader.woken_for_work <= 1
    # Handed or read, each frame is counted once by the receiving node.
    assert fabric.traffic["b"].messages_received == len(reader.got)


async def test_without_the_fabrics_task_a_park_returns_at_once(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=LinkModel(latency=(0.01, 0.01), jitter=0.0))
    async with paired(fabric, hand=False) as (_, client, server):
        assert not fabric.inline
        start = trio.current_time()
        assert await server.park(lambda frame: pytest.fail("handed without the task")) is False
        assert trio.current_time() == start
        await client.send_frame(numbered(7))
        assert number(await server.receive_frame() or b"") == 7


async def test_frames_queued_before_a_park_are_received_not_handed(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=LinkModel(latency=(0.01, 0.01), jitter=0.0))
    async with paired(fabric) as (_, client, server):
        handed: list[int] = []
        for i in range(3):
            await client.send_frame(numbered(i))
        # A tick past the third's arrival: all three came while nobody read.
        await trio.sleep_until(server.end.inn.last_arrival + TICK)
        assert len(server.end.inn.items) == 3
        assert await server.park(lambda f: pytest.fail("handed a frame it should read")) is False
        assert [number(await server.receive_frame() or b"") for _ in range(3)] == [0, 1, 2]
        # Parked now: the next two are handed while it waits; the second gives it back.
        answers = iter([True, False])

        def take(frame: bytes) -> bool:
            handed.append(number(frame))
            return next(answers)

        for i in (3, 4, 5):
            await client.send_frame(numbered(i))
        with trio.fail_after(1):
            assert await server.park(take) is True
        assert handed == [3, 4]
        # Frame 5 arrived with them, behind the one given back: the reader reads it.
        assert number(await server.receive_frame() or b"") == 5
        assert fabric.traffic["b"].messages_received == 6


async def test_frames_on_their_way_to_a_reader_cancelled_meanwhile_are_read_in_order(
    autojump_clock: MockClock,
) -> None:
    """The reader is cancelled at the very instant frame 0 arrives, after the fabric
    queued it for the handler but before its task handed it; frame 1 arrives at that
    instant too, after the cancellation.  Neither is handed to the cancelled
    reader's handler, and the reader reads both, in order.  Whether the fabric's task
    or the cancelled reader runs first is trio's shuffle of one batch: 16 rounds, so
    that a hand-over to a cancelled reader shows in all but one run in 65,536."""
    fabric = Fabric(model=LinkModel(latency=(0.01, 0.01), jitter=0.0))
    async with paired(fabric) as (sim, client, server):
        handed: list[int] = []
        pipe = server.end.inn

        def keep(frame: bytes) -> bool:
            handed.append(number(frame))
            return True

        async def reader(gone: trio.Event, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                await server.park(keep)
            gone.set()

        for first in range(0, 32, 2):
            gone = trio.Event()
            scope = await sim.nursery.start(reader, gone)
            await client.send_frame(numbered(first))
            arrival = pipe.last_arrival

            def cancel_then_the_next(
                scope: trio.CancelScope = scope, n: int = first, at: float = arrival
            ) -> None:
                scope.cancel()  # after the first frame's delivery, at its instant
                fabric.schedule(at, pipe, numbered(n + 1))

            call_at(arrival, cancel_then_the_next)
            with trio.fail_after(1):
                await gone.wait()  # one reader at a time: this task reads after it
                got = [number(await server.receive_frame() or b"") for _ in range(2)]
            assert handed == [] and got == [first, first + 1]


async def test_the_fabric_hands_frames_with_one_task_only(autojump_clock: MockClock) -> None:
    fabric = Fabric()
    async with running(fabric) as sim:
        sim.nursery.start_soon(fabric.hand_inline)
        await trio.testing.wait_all_tasks_blocked()
        assert fabric.inline
        with pytest.raises(UsageError, match="already"):
            await fabric.hand_inline()
    assert not fabric.inline


def test_a_simulation_hands_most_frames_to_parked_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    handed: list[int] = []
    hand = Fabric.hand_inline

    async def counting(self: Fabric) -> None:
        try:
            await hand(self)
        finally:
            handed.append(self.handed)

    monkeypatch.setattr(Fabric, "hand_inline", counting)
    report = simulate(SimConfig(peers=8, writes=16, seed=5))
    assert report.ok, report.summary() + report.trace()
    assert handed and handed[0] > report.messages["total"] // 2


@pytest.mark.internal_errors
def test_a_bug_met_in_a_handed_frame_fails_only_that_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug of ours while a push is handed inline (in the fabric's task, not the
    reader's) is the reader's to raise: logged, counted, that link closed and backed
    off; the run goes on and converges, and reports the bug."""
    on_push = TopicRuntime.on_push
    hit: list[str] = []

    def buggy(self: TopicRuntime, link: PeerLink, push: Push) -> int:
        if not hit:
            hit.append(trio.lowlevel.current_task().name)
            raise ZeroDivisionError("a bug of ours")
        return on_push(self, link, push)

    monkeypatch.setattr(TopicRuntime, "on_push", buggy)
    report = simulate(SimConfig(peers=6, writes=12, seed=4))
    assert hit and "hand_inline" in hit[0]
    assert report.converged and report.lost_writes == 0
    invariants = dict(report.invariants)
    assert invariants.pop("no_false_violations").startswith("1 connections closed by an internal")
    assert set(invariants.values()) == {"ok"} and len(invariants) == 6
