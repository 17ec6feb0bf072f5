"""The simulation's clock: virtual time that jumps to what is due next, in one turn.

A run is one `trio.run` whose time moves only by jumps: when every task
waits, the clock jumps to the earliest wake-up and the tasks due then run.
trio's `MockClock(autojump_threshold=0)` does this in two turns of the run
loop: a turn that finds nothing to run and jumps the clock (from inside
trio, through a hook only `MockClock` has), then a turn that wakes the
tasks due.  And most wake-ups of a run are not trio's deadlines but the
nodes' timers (net/timers.py: sleeps, alarms, the fabric's deliveries),
which a service task wakes: one more turn, and a cancel scope, for each.

`SimClock` jumps where trio asks a clock how long to sleep before its next
deadline (`deadline_to_sleep_time`, which trio calls only when no task is
ready to run), and answers 0, so the same turn's expiry wakes the tasks
due.  And it drives the run's timers (`drive`, called as the run starts):
when their next wake-up comes no later than trio's next deadline, it jumps
to that wake-up and wakes what is due there itself, rescheduling the tasks
and making the calls; those tasks run in the same turn, with any trio
deadline due at that instant.  A virtual instant thus costs one turn of
trio's loop, not three, and no cancel scope.  The times every task sees
are the times it would see under `MockClock` with the service; the order
of tasks woken at one instant is not (they are one batch now, shuffled by
trio's seeded generator, run.py), so a run's report differs from the
service's, and is as reproducible.

With nothing due at all it answers a day, so a run waiting only for I/O
(a signal's wake-up, `Stopper`) sleeps on it as under `MockClock`.  And
while `held` (a stop asked for, its call not yet run: `Stopper`) it does
not move at all: the wake-up that carries the stop waits on a socket trio
reads only after asking the clock, so a jump then would run the next
instant's tasks in the same turn as the stop, one instant past it.

Not for code that uses `trio.testing.wait_all_tasks_blocked`: its waiters
are woken in a turn with nothing else due before the clock moves, which
this clock never leaves (the simulator has none).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ..net import timers as net_timers

if TYPE_CHECKING:
    from .lockstep import Lockstep

IDLE_SLEEP = 86_400.0  # seconds: nothing due at all, so wait for I/O alone


class SimClock(trio.abc.Clock):
    """Virtual time, jumped to each wake-up as trio asks how long to sleep for it."""

    __slots__ = ("held", "lockstep", "now", "timers")

    def __init__(self, lockstep: Lockstep | None = None) -> None:
        self.now = 0.0
        self.timers: net_timers.Timers | None = None  # the run's, once driven
        self.held = False  # time stands still (a stop on its way: see the module text)
        # The windows of a run split across two processes (lockstep.py): at a
        # window's end the clock crosses into the next, waiting for the other
        # process only if it is a lookahead behind.
        self.lockstep = lockstep

    def drive(self) -> None:
        """Wake the run's timers from the clock, from now on (call as the run starts,
        in it, before any timer is set)."""
        self.timers = net_timers.drive()

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Called by trio with no task ready to run: jump to what is due first (a timer
        of the run's, woken here, or `deadline`), and sleep 0."""
        if self.held:
            return 0.0
        timers = self.timers
        if self.lockstep is not None:
            self._windows(deadline)
        if timers is not None:
            due = timers.next_time()
            if due <= deadline and not math.isinf(due):
                self.now = max(self.now, due)
                timers.fire(self.now)
                return 0.0
        if math.isinf(deadline):
            return IDLE_SLEEP
        if deadline > self.now:
            # MockClock's arithmetic (its jump adds the time left): the same floats.
            self.now += deadline - self.now
        return 0.0

    def _windows(self, deadline: float) -> None:
        """Cross windows until something of this process's is due before the current
        one's end (lockstep.py): the other process may send what comes first.  Then
        report how far this process got, so the other may run on meanwhile."""
        step, timers = self.lockstep, self.timers
        assert step is not None
        crossed = False
        while True:
            due = min(deadline, timers.next_time() if timers is not None else math.inf)
            if not step.due(due) or math.isinf(step.window_end) or step.broken:
                break
            step.barrier(due)
            crossed = True
        if crossed:  # the other may run on as far as this tells it
            step.report(due)

    def jump(self, seconds: float) -> None:
        """Move the time on by `seconds` (as `MockClock.jump`)."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self.now += seconds
