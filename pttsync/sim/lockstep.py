"""Two simulation processes in conservative lockstep: what crosses, and when.

A simulation split across processes (each runs its own trio run on its own
`SimClock`, and owns some of the peers) stays exact because nothing one
process does can reach the other sooner than the link model's least
one-way latency, the *lookahead*: a frame, a connection's reset, a dial's
SYN or its answer.  So the processes run in windows.  At a window's end
each hands the other what it sent (items, each with the virtual time it
arrives, none before the window's end) and the time of its own next
wake-up; each then schedules what it received, and both compute the same
next window: from the earliest thing either has to do, `E`, to
`E + lookahead`.  A process runs everything due before its window's end
and then stops at the barrier; the clock (clock.py) is where it stops,
since trio asks it for the next wake-up only once nothing else can run.

The exchange itself is ordered so that two large payloads cannot block each
other in the pipe: the process of part 0 sends and then receives, the other
receives and then sends.  A process whose run has ended says so in one last
exchange (`finish`), and the other goes on alone.

This module knows nothing of frames or connections: an item is any
picklable value with its arrival time, handed to `deliver` on the other
side (sim/remote.py gives them their meaning).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import SimulationError, UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

Item = tuple[float, Any]  # (when it arrives, what)

SLACK = 1e-7
"""Seconds a window ends early by: an arrival time rounded to the fabric's 1 ms
ticks may fall a hair (float error) below the time plus the latency, never by this
much; and a window that ends a hair before an instant runs none of it early."""


class Bridge(Protocol):
    """One end of the duplex pipe between two processes (a multiprocessing
    `Connection` is one; the tests use a pair of queues between threads)."""

    def send(self, obj: Any) -> None: ...

    def recv(self) -> Any: ...


DONE = "done"  # what a process whose run ended sends instead


class Lockstep:
    """This process's side of the windows (see the module text).

    `part` is 0 or 1; `lookahead` the least time anything takes to cross.
    `deliver(items)` schedules what the other process sent (each at its time,
    none before the current window's end); `post(when, what)` sends.
    """

    def __init__(self, bridge: Bridge, part: int, lookahead: float) -> None:
        if part not in (0, 1):
            raise UsageError("a lockstep pair has parts 0 and 1")
        if not (math.isfinite(lookahead) and lookahead > 10 * SLACK):
            raise UsageError("a lockstep needs a least latency above 0 (its lookahead)")
        self.bridge = bridge
        self.part = part
        self.lookahead = lookahead
        # The first window: nothing crosses before the least latency has passed.
        self.window_end = lookahead - SLACK
        self.deliver: Callable[[list[Item]], None] = _nowhere
        self._outbox: list[Item] = []
        self.barriers = 0  # windows closed (statistics)
        self.crossed = 0  # items sent across (statistics)
        self.waited = 0.0  # wall seconds spent waiting for the other process (statistics)
        self.other_finished = False
        self.broken = False  # the pipe failed: the other process is gone
        self.on_broken: Callable[[], None] = _nothing  # then this ends the run (world.py)

    def post(self, when: float, what: Any) -> None:
        """Send `what` to the other process, to arrive at virtual time `when`."""
        if when < self.window_end:
            # A bug of ours: it would arrive in a window the other may have run.
            raise AssertionError(
                f"an item due at {when!r} crosses before the window's end {self.window_end!r}"
            )
        self._outbox.append((when, what))

    def due(self, next_time: float) -> bool:
        """True if this process must stop at the barrier before `next_time` (its next
        wake-up): it is at or past the window's end."""
        return next_time >= self.window_end

    def barrier(self, next_time: float) -> None:
        """Close the window: swap what crossed with the other process, deliver what
        came, and open the next window.  `next_time`: this process's next wake-up
        (math.inf: none)."""
        mine, self._outbox = self._outbox, []
        self.crossed += len(mine)
        theirs, their_next = self._swap((mine, next_time))
        self.barriers += 1
        if theirs:
            self.deliver(theirs)
        earliest = min(
            next_time,
            their_next,
            min((w for w, _ in mine), default=math.inf),
            min((w for w, _ in theirs), default=math.inf),
        )  # the same on both sides
        self.window_end = max(self.window_end, earliest + self.lookahead - SLACK)

    def _swap(self, payload: tuple[list[Item], float]) -> tuple[list[Item], float]:
        if self.other_finished or self.broken:
            return [], math.inf
        try:
            got = self.swap(payload)
        except SimulationError:  # from the clock, nothing may raise: the run is ended
            self.on_broken()
            return [], math.inf
        if got == DONE:
            self.other_finished = True
            return [], math.inf
        return got  # type: ignore[no-any-return]

    def swap(self, obj: Any) -> Any:
        """Give `obj` to the other process and take its: both must call it at the same
        point of their runs (the same instant, before the same window's end)."""
        try:
            if self.part == 0:
                self.bridge.send(obj)
            began = time.perf_counter()
            got = self.bridge.recv()
            self.waited += time.perf_counter() - began
            if self.part == 1:
                self.bridge.send(obj)
        except (EOFError, OSError):
            self.broken = True
            raise SimulationError("the other process of the split run is gone") from None
        return got

    def finish(self) -> None:
        """This process's run ended: one last exchange tells the other, whose next
        window then goes on alone (or which has finished too)."""
        if not (self.other_finished or self.broken):
            self.swap(DONE)
            self.other_finished = True


def _nothing() -> None:
    pass


def _nowhere(items: list[Item]) -> None:  # pragma: no cover - a bug of ours: nobody listens
    raise AssertionError(f"{len(items)} items crossed with nobody to deliver them")
