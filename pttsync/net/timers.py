"""Cheap timers: many tasks parked until a time, woken by one service task.

`trio.sleep_until` costs a cancel scope, a deadline and a `Cancelled`
raised and caught in the sleeping task: about 17 us a sleep on this
project's machine.  A node's pusher sleeps once a batch under load, and its
lazy-push timer once a change of plan; a simulation runs thousands of
nodes, and its samples showed a tenth of the run spent in trio's cancel
scopes.  Here a sleeping task is only parked (`wait_task_rescheduled`,
no scope, no exception); one service task per trio run sleeps until the
earliest time wanted, and reschedules every task due then.

* `sleep_until(when)`: park until trio time `when` (a checkpoint;
  cancellable like any); `exact=True` leaves `when` off the ticks below
  (the simulator's own delays, which `trio.sleep` kept exact).
  `sleep(seconds)`: `sleep_until` from now, `trio.sleep`'s counterpart.
* `Alarm`: park until a time or until someone calls `ring()`, whichever
  comes first (the lazy-push timer: its plan may move earlier), or until
  rung alone (a simulated pipe's reader, woken by a delivery).
* `call_at(when, fn)`: run `fn()` (synchronous, quick) in the service task
  at `when`: no task to wake at all (the simulator's frame deliveries: the
  readers they wake run in the very next batch, as a task's would).
* `use_ticks(tick)`: round every wake-up up to a whole `tick` of trio time,
  so wake-ups within one tick share one turn of the service.  The
  simulator sets its 1 ms delivery tick (sim/link.py); a real node keeps
  the default, 0: exact times.
* `drive()`: no service task; the run's clock wakes what is due itself
  (`Timers.next_time` and `fire`), as the simulator's clock does
  (sim/clock.py): a wake-up then costs no turn of trio's loop and no
  cancel scope of the service's.
* `serve(alarm, step)`: call `step()` (synchronous, quick) now and again at
  the time it returns or when `alarm` is rung, until it returns None: a
  task's loop of "wait, then do what is due" (the pusher, the lazy-push
  timer).  While a `run_steps()` task runs (the simulator starts one), the
  steps after the first are called by that task, every step due at an
  instant in one turn, and the serving task stays parked: a step costs no
  wake-up of its task.  Without one, the serving task wakes and calls
  `step()` itself, as its own loop would.

One `Timers` per trio run (a `RunVar`): every node of a simulation shares
it, as they share the run.  Its service is a trio system task, started at
the first use and cancelled with the run.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, Generic, TypeVar

import outcome
import trio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "Alarm", "Handoff", "call_at", "drive", "run_steps", "serve", "sleep", "sleep_until",
    "use_ticks",
]  # fmt: skip

T = TypeVar("T")


class _Entry:
    """One wake-up: a parked task's, or a call's; both None once done or gone."""

    __slots__ = ("call", "rung", "served", "task", "when")

    def __init__(
        self,
        when: float,
        task: trio.lowlevel.Task | None,
        call: Callable[[], None] | None = None,
    ) -> None:
        self.when = when
        self.task = task
        self.call = call
        self.rung = False  # woken by `Alarm.ring`, not by its time
        self.served: _Served | None = None  # its task `serve`s: a step may be made for it


class Timers:
    """The parked tasks of one trio run, and the service task that wakes them."""

    def __init__(self, tick: float = 0.0) -> None:
        self.tick = tick
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()  # ties are rescheduled in the order parked
        self._scope: trio.CancelScope | None = None  # the service's sleep
        self._started = False
        self.driven = False  # woken by the run's clock (`drive`): no service task
        self.steps: Handoff[_Served] = Handoff()  # steps due, for a `run_steps` task

    @property
    def stepping(self) -> bool:
        """True while a `run_steps` task makes the steps of serving tasks."""
        return self.steps.running

    def wake(self, entry: _Entry, task: trio.lowlevel.Task) -> None:
        """`entry`'s time came (or its alarm rang): wake its task, or have its step made."""
        served = entry.served
        if served is not None and self.steps.running:
            self.steps.items.append(served)
            self.steps.ring()
        else:
            trio.lowlevel.reschedule(task)

    def due(self, when: float) -> float:
        """`when` rounded up to a whole tick (unchanged with no tick).

        A time a hair past a tick (float error) rounds down to it, not a whole tick
        up; but never below `when` itself, or a task waiting for it would wake before
        it and wait again at once, forever."""
        if self.tick <= 0 or math.isinf(when):
            return when
        return max(when, math.ceil(when / self.tick - 1e-6) * self.tick)

    def park(self, entry: _Entry) -> None:
        """Have `entry`'s task woken at its time (the caller then parks it)."""
        heapq.heappush(self._heap, (entry.when, next(self._order), entry))
        if self.driven:
            return
        if not self._started:
            self._started = True
            trio.lowlevel.spawn_system_task(self._serve, name="pttsync.net.timers")
        elif self._scope is not None and entry.when < self._scope.deadline:
            self._scope.deadline = entry.when

    def next_time(self) -> float:
        """When the earliest wake-up still wanted is due (math.inf: none)."""
        heap = self._heap
        while heap and heap[0][2].task is None and heap[0][2].call is None:
            heapq.heappop(heap)  # woken early (an alarm rung) or cancelled
        return heap[0][0] if heap else math.inf

    def fire(self, now: float) -> None:
        """Wake every task due by `now`, and make every call due, in the order parked."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)[2]
            task, entry.task = entry.task, None
            if task is not None:
                self.wake(entry, task)
            elif entry.call is not None:
                call, entry.call = entry.call, None
                call()  # a bug here ends the run loudly, as a bug should

    async def _serve(self) -> None:
        me = trio.lowlevel.current_task()
        while True:
            with trio.CancelScope(deadline=self.next_time()) as scope:
                self._scope = scope

                def wake(_: object, scope: trio.CancelScope = scope) -> trio.lowlevel.Abort:
                    # Its own deadline wakes the service like a reschedule: no
                    # `Cancelled` raised and caught once a turn.  Any other
                    # cancellation (the run ending) is delivered as usual.
                    if scope.cancel_called and trio.current_time() >= scope.deadline:
                        trio.lowlevel.reschedule(me)
                        return trio.lowlevel.Abort.FAILED
                    return trio.lowlevel.Abort.SUCCEEDED

                await trio.lowlevel.wait_task_rescheduled(wake)
            self._scope = None
            self.fire(trio.current_time())


_TIMERS: trio.lowlevel.RunVar[Timers] = trio.lowlevel.RunVar("pttsync_timers")


def _timers() -> Timers:
    try:
        return _TIMERS.get()
    except LookupError:
        timers = Timers()
        _TIMERS.set(timers)
        return timers


def use_ticks(tick: float) -> None:
    """Round this trio run's wake-ups up to whole `tick`s (call before any timer)."""
    _timers().tick = tick


def drive() -> Timers:
    """This run's timers, to be woken by its clock rather than a service task: the
    clock (sim/clock.py) calls `next_time()` and `fire(now)` whenever trio asks
    it how long to sleep.  Call before any timer; the clock must then call them
    for as long as the run lasts, or a sleeping task never wakes."""
    timers = _timers()
    if timers._started:
        raise RuntimeError("the timers' service has started: too late to drive them")
    timers.driven = True
    return timers


def call_at(when: float, call: Callable[[], None], *, exact: bool = False) -> None:
    """Run `call()` in the service task at trio time `when` (rounded up to a tick,
    unless `exact`)."""
    timers = _timers()
    timers.park(_Entry(when if exact else timers.due(when), None, call))


async def _park(entry: _Entry) -> None:
    def abort(_: object) -> trio.lowlevel.Abort:
        entry.task = None  # the service drops it
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)


async def sleep_until(when: float, *, exact: bool = False) -> None:
    """Sleep until trio time `when`, as `trio.sleep_until` does (see the module text)."""
    timers = _timers()
    if not exact:
        when = timers.due(when)
    if when <= trio.current_time():
        await trio.lowlevel.checkpoint()
        return
    entry = _Entry(when, trio.lowlevel.current_task())
    timers.park(entry)
    await _park(entry)


async def sleep(seconds: float, *, exact: bool = False) -> None:
    """Sleep `seconds` of trio time, as `trio.sleep` does: `sleep_until` from now.

    On the simulator's 1 ms ticks about a fifth of `trio.sleep`'s cost with
    20,000 tasks (`python tools/bench_timers.py`); with exact times, as in a
    real node, about half again as much (its wake-ups share no turn)."""
    await sleep_until(trio.current_time() + seconds, exact=exact)


class Alarm:
    """A task's wake-up at a time, or earlier by `ring()` (one task waits on it)."""

    def __init__(self) -> None:
        self._entry: _Entry | None = None

    async def wait_until(self, when: float) -> bool:
        """Park until trio time `when` (math.inf: until rung); True if it was rung."""
        entry = self._entry = _Entry(when, trio.lowlevel.current_task())
        if not math.isinf(when):  # else only a ring wakes it: no service to tell
            timers = _timers()
            entry.when = when = timers.due(when)
            if when <= trio.current_time():
                self._entry = None
                await trio.lowlevel.checkpoint()
                return False
            timers.park(entry)
        try:
            await _park(entry)
        finally:
            self._entry = None
        return entry.rung

    def _park_step(self, served: _Served, when: float) -> bool:
        """Park `served`'s task until `when` or a ring.  False if `when` is due already
        and no `run_steps` task runs: the serving task checkpoints and steps itself."""
        entry = self._entry = _Entry(when, served.task)
        entry.served = served
        if math.isinf(when):
            return True
        timers = served.timers
        entry.when = when = timers.due(when)
        if when <= trio.current_time() and not timers.stepping:
            self._entry = None
            return False
        timers.park(entry)  # (if due already, `run_steps` gets it at the next wake-up)
        return True

    @property
    def waiting(self) -> bool:
        """True while a task waits on it (not yet woken, rung, or cancelled)."""
        entry = self._entry
        return entry is not None and entry.task is not None

    def ring(self) -> None:
        """Wake the task waiting now, if any (a no-op otherwise)."""
        entry = self._entry
        if entry is not None and entry.task is not None:
            task, entry.task = entry.task, None
            entry.rung = True
            if entry.served is None:
                trio.lowlevel.reschedule(task)
            else:
                entry.served.timers.wake(entry, task)


_DONE = object()  # the last step said so: the serving task returns


class _Served:
    """A task that `serve`s an alarm, and its step."""

    __slots__ = ("alarm", "live", "step", "task", "timers")

    def __init__(self, alarm: Alarm, step: Callable[[], float | None]) -> None:
        self.alarm = alarm
        self.step = step
        self.task = trio.lowlevel.current_task()
        self.timers = _timers()
        self.live = True  # False once its task is cancelled: no step is made for it

    def abort(self, _: object) -> trio.lowlevel.Abort:
        self.live = False
        entry = self.alarm._entry
        if entry is not None:
            entry.task = None  # the timers drop it
        return trio.lowlevel.Abort.SUCCEEDED

    def make_step(self) -> None:
        """Make the step due, in `run_steps`; the task stays parked unless it is the last
        (it returned None) or it raised, which the task then raises as its own."""
        if not self.live:
            return
        try:
            when = self.step()
        except Exception as exc:
            trio.lowlevel.reschedule(self.task, outcome.Error(exc))
            return
        if when is None:
            trio.lowlevel.reschedule(self.task, outcome.Value(_DONE))
        else:
            self.alarm._park_step(self, when)

    def give_back(self) -> None:
        """`run_steps` ended with this step due: the serving task makes it itself."""
        if self.live:
            trio.lowlevel.reschedule(self.task)


async def serve(alarm: Alarm, step: Callable[[], float | None]) -> None:
    """Call `step()` now, then at the trio time it returns (math.inf: none) or when
    `alarm` rings, whichever comes first, until it returns None (see the module text).

    The steps after the first are made by `run_steps`'s task while one runs; an
    exception of a step is raised here either way.  The alarm is this loop's alone."""
    served = _Served(alarm, step)
    when = step()
    while when is not None:
        if alarm._park_step(served, when):
            try:
                woke = await trio.lowlevel.wait_task_rescheduled(served.abort)
            finally:
                alarm._entry = None
            if woke is _DONE:
                return
        else:
            await trio.lowlevel.checkpoint()
        when = step()


async def run_steps() -> None:
    """Make the steps of the tasks that `serve` (run as a task, one per trio run):
    every step due at an instant in one turn of this task, in the order their
    times came or their alarms rang, and no wake-up of the serving tasks."""
    steps = _timers().steps
    if steps.running:
        raise RuntimeError("the timers' steps are already made by a task")
    await steps.run(_Served.make_step, _Served.give_back)


class Handoff(Generic[T]):
    """Items handed to one task, all those that came in a turn at once.

    The givers append to `items` and `ring()`; `run(handle, give_back)` (the
    taking task) calls `handle(item)` for each, in order, including those
    appended by a handler meanwhile, and at its end gives the untaken ones
    back (`give_back(item)`) for their owners to take the usual way.  The
    timers' steps (`run_steps`) and the simulated fabric's frames for parked
    readers (`sim/fabric.py`) are handed so."""

    __slots__ = ("_bell", "items", "running")

    def __init__(self) -> None:
        self.items: list[T] = []
        self.running = False  # a task takes them (`run`)
        self._bell = Alarm()

    def ring(self) -> None:
        """Wake the taking task (after appending to `items`)."""
        self._bell.ring()

    async def run(self, handle: Callable[[T], object], give_back: Callable[[T], object]) -> None:
        """Take the items handed over, until cancelled (see the class text)."""
        if self.running:
            raise RuntimeError("the items are already taken by a task")
        self.running = True
        try:
            while True:
                await self._bell.wait_until(math.inf)
                while self.items:  # a handler may hand over more: those too
                    todo, self.items = self.items, []
                    for item in todo:
                        handle(item)
        finally:
            self.running = False
            left, self.items = self.items, []
            for item in left:
                give_back(item)
