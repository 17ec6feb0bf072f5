"""The simulation's clock: virtual time that jumps to the next deadline, in one turn.

A run is one `trio.run` whose time moves only by jumps: when every task
waits, the clock jumps to the earliest deadline and the tasks due then
run.  trio's `MockClock(autojump_threshold=0)` does this in two turns of
the run loop: a turn that finds nothing to run and jumps the clock (from
inside trio, through a hook only `MockClock` has), then a turn that wakes
the tasks due.  Each virtual instant of a run thus cost a turn of the loop
with nothing in it: an I/O poll, the deadlines' expiry and trio's
statistics for the jump, about a third of the turns of a converged
network on idle.

`SimClock` jumps where trio asks a clock how long to sleep before the next
deadline (`deadline_to_sleep_time`, which trio calls only when no task is
ready to run): it moves its time to that deadline and answers 0, so the
same turn's expiry wakes the tasks due.  The tasks, their order and the
times they see are the very ones `MockClock` gives (tests/test_sim.py
compares the two on a trace and on whole runs): only the empty turns go.
With no deadline at all it answers a day, so a run waiting only for I/O
(a signal's wake-up, `Stopper`) sleeps on it as under `MockClock`.

Not for code that uses `trio.testing.wait_all_tasks_blocked`: its waiters
are woken in a turn with nothing else due before the clock moves, which
this clock never leaves (the simulator has none).
"""

from __future__ import annotations

import math

import trio

IDLE_SLEEP = 86_400.0  # seconds: no deadline at all, so wait for I/O alone


class SimClock(trio.abc.Clock):
    """Virtual time, jumped to each deadline as trio asks how long to sleep for it."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        return self.now

    def deadline_to_sleep_time(self, deadline: float) -> float:
        """Called by trio with no task ready to run: jump to `deadline`, sleep 0."""
        if math.isinf(deadline):
            return IDLE_SLEEP
        if deadline > self.now:
            # MockClock's arithmetic (its jump adds the time left), so that every
            # time a run sees is the very float it would see under MockClock.
            self.now += deadline - self.now
        return 0.0

    def jump(self, seconds: float) -> None:
        """Move the time on by `seconds` (as `MockClock.jump`)."""
        if seconds < 0:
            raise ValueError("time can't go backwards")
        self.now += seconds
