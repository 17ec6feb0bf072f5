"""Stopping a simulation run from outside it (`pttsync simulate` on SIGTERM or ^C).

`Stopper.run(world)` runs the world under a cancel scope that `stop()` cancels,
from a signal handler or another thread; `run_plan` then raises `Stopped`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from .clock import SimClock

if TYPE_CHECKING:
    from .world import World

__all__ = ["Stopped", "Stopper"]


class Stopped(Exception):
    """The run was stopped from outside (`Stopper.stop`) before it ended: no report."""


class Stopper:
    """Stops a run from outside it: `stop()` may be called from a signal handler
    (`pttsync simulate` calls it on SIGTERM or ^C).  The run ends at once, without its
    checks, and `run_plan` raises `Stopped`.  It adds no task to the run, so a run
    that is not stopped is the very same run."""

    def __init__(self) -> None:
        self.stopped = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._clock: SimClock | None = None

    def stop(self) -> None:
        self.stopped = True
        token, clock = self._token, self._clock
        if token is not None:
            # The run's time stands still until the cancellation runs: no instant
            # after the stop's (clock.py).  A flag's store: signal-safe.
            if clock is not None:
                clock.held = True
            try:
                token.run_sync_soon(self._cancel)  # signal-safe, thread-safe
            except trio.RunFinishedError:
                if clock is not None:
                    clock.held = False

    def _cancel(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        if self._clock is not None:
            self._clock.held = False  # the nodes' shutdown may wait on timers

    async def run(self, world: World) -> None:
        """`world.run()`, cancelled by `stop()`."""
        clock = trio.lowlevel.current_clock()
        self._clock = clock if isinstance(clock, SimClock) else None
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            if self.stopped:
                self._scope.cancel()
            await world.run()
