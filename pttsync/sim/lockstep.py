"""Two simulation processes in conservative lockstep: what crosses, and when.

A simulation split across processes (each runs its own trio run on its own
`SimClock`, and owns some of the peers) stays exact because nothing one
process does can reach the other sooner than the link model's least
one-way latency, the *lookahead* `L`: a frame, a connection's reset, a
dial's SYN or its answer.

Time is cut into windows on a fixed grid of `L / GRID` seconds.  A process
runs everything due in its window, then crosses into the next one (the
clock, clock.py, is where it stops, since trio asks it for the next wake-up
only once nothing else can run).  Crossing into window `k` needs every item
the other process sent that arrives before the window's end; it takes them
from what has come (the *pool*) and schedules them, in the other's order.
Which window an item is handed over in depends only on its arrival time, so
a run is the same every time, however the two processes' pace varies.

Each process reports as it goes, without waiting: the items it sent, its
window's end, and the time of its next wake-up.  From a report the other
works out a time before which this one sends nothing (its *safe* time: the
earliest of its next wake-up, the arrival of anything on its way to it, and
a lookahead after what the reader itself may yet send it), and may run up
to that time plus `L`.  So a process waits only when it is about a
lookahead ahead; a window's random imbalance between the two no longer
costs a wait at every window, as a barrier did (docs/pip-11/simulation.md
measures it).  Idle
stretches are jumped: a process with nothing due for a while says so, and
the other crosses every empty window at once.  When both have nothing due
and nothing is on its way, the window is endless, as in one process.

A process whose run has ended says so (`finish`), and the other goes on
alone; reports are no longer sent to a process that ended.  Samples (the
network's state, read at one instant by both) are swapped over the same
wire (`exchange`).

This module knows nothing of frames or connections: an item is any
picklable value with its arrival time, handed to `deliver` on the other
side (sim/remote.py gives them their meaning).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import SimulationError, UsageError
from .bridge import NOTHING, Interrupted

if TYPE_CHECKING:
    from collections.abc import Callable

Item = tuple[float, Any]  # (when it arrives, what)

SLACK = 1e-7
"""Seconds a window ends early by: an arrival time rounded to the fabric's 1 ms
ticks may fall a hair (float error) below the time plus the latency, never by this
much; and a window that ends a hair before an instant runs none of it early."""

GRID = 4
"""Windows per lookahead.  A process may run up to `GRID - 1` windows past the
last report of the other; a window is where items are handed over and reports
sent, so more of them cost more messages (2: waits of 3.5 s a process in a
95 s run of 2,000 peers; 4: 1.6-2.4 s; the barrier before: 7.8-9.4 s)."""


class Bridge(Protocol):
    """One end of the duplex wire between two processes (bridge.SocketBridge; the
    tests use a pair of queues between threads).  `send` never blocks."""

    def send(self, obj: Any) -> None: ...

    def recv(self, block: bool) -> Any: ...  # NOTHING: none yet (not `block`)

    def flush(self, gone: Callable[[Any], bool]) -> None: ...

    def drop_output(self) -> None: ...


DONE = "done"  # what `exchange` gives when the other process's run has ended


class Lockstep:
    """This process's side of the windows (see the module text).

    `part` is 0 or 1; `lookahead` the least time anything takes to cross.
    `deliver(items)` schedules what the other process sent (each at its time,
    none before the current window's end); `post(when, what)` sends.
    """

    def __init__(self, bridge: Bridge, part: int, lookahead: float) -> None:
        if part not in (0, 1):
            raise UsageError("a lockstep pair has parts 0 and 1")
        if not (math.isfinite(lookahead) and lookahead > 10 * SLACK * GRID):
            raise UsageError("a lockstep needs a least latency above 0 (its lookahead)")
        self.bridge = bridge
        self.part = part
        self.lookahead = lookahead
        self.width = lookahead / GRID
        # Window k is [k*width, (k+1)*width), each end SLACK early.  Nothing crosses
        # before the lookahead: the first window runs to it unasked.
        self._index = GRID - 1
        self.window_end = lookahead - SLACK
        self._start = 0.0  # the current window's start: nothing before it is left to run
        self.deliver: Callable[[list[Item]], None] = _nowhere
        self._outbox: list[Item] = []  # posted, not yet reported
        self._sent: list[float] = []  # arrival times of posts the other may not have taken
        self._pool: list[tuple[float, int, Any]] = []  # the other's items, not yet taken
        self._received = 0  # the other's items so far (their order, for ties)
        self._safe = 0.0  # the other sends nothing before this (virtual) time
        self._soonest = 0.0  # its next wake-up, or first item held, as it last said
        self._told: tuple[float, float] = (-1.0, -1.0)  # the last report's (next, end)
        self._shares: deque[Any] = deque()
        self.barriers = 0  # windows crossed (statistics)
        self.crossed = 0  # items sent across (statistics)
        self.waited = 0.0  # wall seconds spent waiting for the other process (statistics)
        self.other_finished = False
        # The wire failed (the other process is gone), or a wait on it was given up (the
        # run was stopped, bridge.py): nothing more is sent or waited for.
        self.broken = False
        self.on_broken: Callable[[], None] = _nothing  # then this ends the run (world.py)

    def post(self, when: float, what: Any) -> None:
        """Send `what` to the other process, to arrive at virtual time `when`."""
        if when < self._start + self.lookahead - SLACK:
            # A bug of ours: the other may have run past it already.
            raise AssertionError(
                f"an item due at {when!r} crosses sooner than the lookahead after "
                f"{self._start!r}, the window's start"
            )
        self._outbox.append((when, what))
        heapq.heappush(self._sent, when)

    def due(self, next_time: float) -> bool:
        """True if this process must cross into a later window before `next_time`
        (its next wake-up): it is at or past the window's end."""
        return next_time >= self.window_end

    def barrier(self, next_time: float) -> None:
        """Cross into the window of `next_time` (this process's next wake-up;
        math.inf: none), or of the other's first item if that comes sooner, or as
        far towards it as the other's reports allow; waits only if they allow no
        window at all.  Hands over the other's items of the windows crossed."""
        self.barriers += 1
        try:
            self._take(False)
            while True:
                first = self._first(next_time)
                limit = self._limit(first)
                allowed = self._last_window(limit)
                if allowed > self._index:
                    break  # at least the next window
                self.report(next_time)
                began = time.perf_counter()
                self._take(True)
                self.waited += time.perf_counter() - began
        except SimulationError:  # from the clock, nothing may raise: the run is ended
            self.on_broken()
            self._start, self.window_end = self.window_end, math.inf
            return
        if math.isinf(first) and math.isinf(limit):  # nothing due, nothing to come
            self._start, self.window_end = self.window_end, math.inf
            return
        if math.isfinite(first):  # the window of `first`, if the other allows it
            index = max(self._index + 1, int((first + SLACK) // self.width))
            while (index + 1) * self.width - SLACK <= first:
                index += 1
            if allowed < index:
                index = int(allowed)
        else:  # nothing due here: as far as the other allows
            index = int(allowed)
        self._index = index
        self._start, self.window_end = self.window_end, (index + 1) * self.width - SLACK
        self._hand_over()

    def _first(self, next_time: float) -> float:
        """The first thing this process has to do: its next wake-up (`next_time`), or
        the first of the other's items it holds, whichever is sooner."""
        pool = self._pool
        return min(next_time, pool[0][0]) if pool else next_time

    def _limit(self, first: float) -> float:
        """How far this process may run: a lookahead past the time before which the
        other sends nothing (the earliest of its next wake-up as it last said, the
        arrival of what is on its way to it, and a lookahead after `first`, the
        soonest this one may send it anything).  The other's future items need not
        be counted: whatever they make this one send comes two lookaheads after the
        other's first, so the first send of either below the bound cannot be the
        answer to a sooner one."""
        if self.other_finished:
            return math.inf
        sent = self._sent
        safe = min(self._soonest, sent[0] if sent else math.inf, first + self.lookahead)
        self._safe = max(self._safe, safe)
        return self._safe + self.lookahead

    def _last_window(self, limit: float) -> float:
        """The last window whose end comes no later than `limit` (math.inf: none)."""
        if math.isinf(limit):
            return math.inf
        last = int(limit // self.width) - 1
        while (last + 1) * self.width > limit:
            last -= 1
        while (last + 2) * self.width <= limit:
            last += 1
        return last

    def report(self, next_time: float) -> None:
        """Tell the other what this process sent, its window's end, and its next
        wake-up (`next_time`), if any of it is news."""
        if self.other_finished or self.broken:
            return
        soonest = self._first(next_time)
        told = (soonest, self.window_end)
        if told == self._told and not self._outbox:
            return
        self._told = told
        mine, self._outbox = self._outbox, []
        self.crossed += len(mine)
        self._send(("p", soonest, self.window_end, mine))

    def exchange(self, obj: Any) -> Any:
        """Give `obj` to the other process and take its: both must call it at the same
        instant.  DONE if the other's run ended first."""
        self._send(("s", obj))
        began = time.perf_counter()
        while not self._shares:
            if self.other_finished or self.broken:
                return DONE
            self._take(True)
        self.waited += time.perf_counter() - began
        return self._shares.popleft()

    def finish(self) -> None:
        """This process's run ended: tell the other (which goes on alone)."""
        if self.other_finished or self.broken:
            return
        try:
            self._take(False)  # it may have ended too
        except SimulationError:
            return
        if self.other_finished:
            return
        mine, self._outbox = self._outbox, []
        self.other_finished = True  # nothing more is read
        try:
            self.bridge.send(("d", mine))
            # Until it has all, or says it ended too (it reads no more then).
            self.bridge.flush(_is_end)
        except (EOFError, OSError, Interrupted):
            pass  # gone as well (the first process's next read of it says so), or stopped

    # -- the wire ---------------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            self.bridge.send(message)
        except OSError:
            self.broken = True
            raise SimulationError("the other process of the split run is gone") from None

    def _take(self, block: bool) -> None:
        """Read one message (waiting for it if `block`), or all those come (if not);
        nothing once the other's run ended (it may have exited since)."""
        while not self.other_finished:
            try:
                got = self.bridge.recv(block)
            except (EOFError, OSError):
                self.broken = True
                raise SimulationError("the other process of the split run is gone") from None
            except Interrupted as exc:
                self.broken = True
                raise SimulationError(str(exc)) from None
            if got is NOTHING:
                return
            kind = got[0]
            if kind == "s":
                self._shares.append(got[1])
            elif kind == "p":
                self._on_report(got[1], got[2], got[3])
            else:  # "d": its run ended, and these are its last items
                self._pool_up(got[1])
                self.other_finished = True
                self.bridge.drop_output()
            if block:
                return

    def _pool_up(self, items: list[Item]) -> None:
        pool, n = self._pool, self._received
        for when, what in items:
            heapq.heappush(pool, (when, n, what))
            n += 1
        self._received = n

    def _on_report(self, soonest: float, end: float, items: list[Item]) -> None:
        """The other's report: it has taken everything of ours due before `end`, and
        has nothing of its own due before `soonest` (bar what is on its way to it)."""
        self._pool_up(items)
        sent = self._sent
        while sent and sent[0] < end:
            heapq.heappop(sent)
        self._soonest = soonest

    def _hand_over(self) -> None:
        """Schedule the other's items due before the window's end, in their order."""
        pool, end, items = self._pool, self.window_end, []
        while pool and pool[0][0] < end:
            when, _, what = heapq.heappop(pool)
            items.append((when, what))
        if items:
            self.deliver(items)


def _is_end(message: Any) -> bool:
    return bool(message[0] == "d")


def _nothing() -> None:
    pass


def _nowhere(items: list[Item]) -> None:  # pragma: no cover - a bug of ours: nobody listens
    raise AssertionError(f"{len(items)} items crossed with nobody to deliver them")
