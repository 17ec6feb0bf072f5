"""net/timers.py: parked tasks woken by one service task on trio's mock clock, or
driven by the simulator's clock (sim/clock.py): each test that can runs both ways."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.net.timers import Alarm, call_at, drive, sleep_until, use_ticks
from pttsync.sim.clock import SimClock

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

DEADLINE = 10_000  # virtual seconds: every test ends well before, or fails


DRIVERS = ("service", "clock")  # a service task wakes the timers, or the run's clock


def run(main: Callable[[], Awaitable[None]], *, tick: float = 0.0, driver: str = "service") -> None:
    mock = trio.testing.MockClock(autojump_threshold=0)
    clock: trio.abc.Clock = SimClock() if driver == "clock" else mock

    async def bounded() -> None:
        use_ticks(tick)
        if isinstance(clock, SimClock):
            clock.drive()
        with trio.fail_after(DEADLINE):
            await main()

    trio.run(bounded, clock=clock)


def test_sleepers_wake_at_their_times_in_order() -> None:
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, when: float) -> None:
        await sleep_until(when)
        woke.append((name, trio.current_time()))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for name, when in [("c", 3.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("past", -1)]:
                nursery.start_soon(sleeper, name, when)
                await trio.testing.wait_all_tasks_blocked()

    run(main)
    # Ties (b1, b2) are rescheduled in the order parked, but trio runs a batch in any order.
    assert sorted(woke) == sorted([("past", 0.0), ("a", 1.0), ("b1", 2.0), ("b2", 2.0), ("c", 3.0)])
    assert [t for _, t in woke] == [0.0, 1.0, 2.0, 2.0, 3.0]


@pytest.mark.parametrize("driver", DRIVERS)
def test_ticks_round_wake_ups_up_to_a_whole_tick(driver: str) -> None:
    woke: list[float] = []

    async def main() -> None:
        for when in (0.0004, 0.0010, 0.0031):
            await sleep_until(when)
            woke.append(trio.current_time())

    run(main, tick=0.001, driver=driver)
    assert woke == pytest.approx([0.001, 0.001, 0.004])


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_time_a_hair_past_a_tick_is_never_rounded_below_itself(driver: str) -> None:
    """It once was (the 1e-6 slack for float error): a simulated connection's reset,
    due 1e-10 s after a tick, woke the delivery task at the tick, where nothing was due
    yet, and it waited again at once: the simulation spun forever."""
    woke: list[float] = []
    when = 0.002 + 1e-10

    async def main() -> None:
        await sleep_until(0.002)
        await sleep_until(when)
        woke.append(trio.current_time())

    run(main, tick=0.001, driver=driver)
    assert woke[0] >= when


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_alarm_wakes_at_its_time_or_when_rung_first(driver: str) -> None:
    results: list[tuple[bool, float]] = []

    async def main() -> None:
        alarm = Alarm()

        async def ringer() -> None:
            await sleep_until(2.0)
            alarm.ring()
            alarm.ring()  # a second ring with nobody waiting is a no-op

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ringer)
            results.append((await alarm.wait_until(5.0), trio.current_time()))  # rung at 2
            results.append((await alarm.wait_until(3.0), trio.current_time()))  # its time
            results.append((await alarm.wait_until(1.0), trio.current_time()))  # past: at once
        alarm.ring()  # nobody waits: nothing happens

    run(main, driver=driver)
    assert results == [(True, 2.0), (False, 3.0), (False, 3.0)]


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_cancelled_sleeper_is_dropped_and_the_others_still_wake(driver: str) -> None:
    woke: list[float] = []

    async def main() -> None:
        with trio.move_on_after(1.0):
            await sleep_until(5.0)  # cancelled at 1: must not be woken at 5
        assert trio.current_time() == 1.0
        with trio.move_on_after(1.0):
            await Alarm().wait_until(math.inf)  # an alarm nobody rings, cancelled at 2
        await sleep_until(6.0)
        woke.append(trio.current_time())

    run(main, driver=driver)
    assert woke == [6.0]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 40), st.one_of(st.none(), st.integers(1, 40))),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([0.0, 0.001, 0.25]),
    st.sampled_from(DRIVERS),
)
def test_each_waiter_wakes_at_its_time_rounded_or_its_ring(
    plan: list[tuple[int, int | None]], tick: float, driver: str
) -> None:
    """Alarms with random times (tenths of a second), some rung by another task at a
    random time: each wakes at the first of the two, never early, never late."""
    got: dict[int, tuple[bool, float]] = {}

    def due(t: float) -> float:
        return t if tick == 0 else math.ceil(t / tick - 1e-6) * tick

    async def waiter(i: int, alarm: Alarm, when: float) -> None:
        got[i] = (await alarm.wait_until(when), trio.current_time())

    async def ringer(alarm: Alarm, at: float) -> None:
        await sleep_until(at)
        alarm.ring()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i, (when, ring) in enumerate(plan):
                alarm = Alarm()
                nursery.start_soon(waiter, i, alarm, when / 10)
                if ring is not None:
                    nursery.start_soon(ringer, alarm, ring / 10)

    run(main, tick=tick, driver=driver)
    for i, (when, ring) in enumerate(plan):
        rung, at = got[i]
        own = due(when / 10)
        if own <= 0:
            assert (rung, at) == (False, 0.0)  # due already: at once
        elif ring is not None and due(ring / 10) < own:
            assert rung and at == pytest.approx(due(ring / 10))
        else:  # a ring at the very time may win the tie or not: the time is the same
            assert at == pytest.approx(own)


@pytest.mark.parametrize("driver", DRIVERS)
def test_calls_run_at_their_times_with_no_task_of_their_own(driver: str) -> None:
    ran: list[tuple[str, float]] = []

    async def main() -> None:
        for name, when in [("late", 0.0032), ("soon", 0.001), ("now", 0.0)]:
            call_at(when, lambda name=name: ran.append((name, trio.current_time())))  # type: ignore[misc]
        await sleep_until(0.01)

    run(main, tick=0.001, driver=driver)
    assert ran == [("now", 0.0), ("soon", 0.001), ("late", pytest.approx(0.004))]


def service_turns(driver: str) -> int:
    """Sleep a thousand times, a millisecond apart: how often the service task was
    rescheduled on the way (the run ending on time, or this fails)."""
    turns = 0
    real_reschedule = trio.lowlevel.reschedule

    def counting(task: trio.lowlevel.Task, *args: Any) -> None:
        nonlocal turns
        turns += task.name == "pttsync.net.timers"
        real_reschedule(task, *args)

    async def main() -> None:
        for i in range(1, 1001):
            await sleep_until(i / 1000)
        assert trio.current_time() == pytest.approx(1.0)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trio.lowlevel, "reschedule", counting)
        run(main, driver=driver)
    return turns


def test_the_service_wakes_at_its_deadlines_without_a_cancelled_and_ends_with_the_run() -> None:
    """A thousand turns of the service, each woken by its own deadline through a plain
    reschedule (trio delivers a `Cancelled` without one), and the run still ends: its
    end cancels the service as usual."""
    assert service_turns("service") >= 1000


@pytest.mark.parametrize("driver", DRIVERS)
def test_exact_sleeps_ignore_the_ticks(driver: str) -> None:
    woke: list[float] = []

    async def main() -> None:
        for when in (0.0004, 0.0031):
            await sleep_until(when, exact=True)
            woke.append(trio.current_time())

    run(main, tick=0.001, driver=driver)
    assert woke == [0.0004, 0.0031]


def test_the_clock_drives_the_timers_with_no_service_task_and_only_from_the_start() -> None:
    """Driven by the clock, a thousand wake-ups reschedule no service task (there is
    none); and a run whose service has started cannot hand its timers to a clock."""
    assert service_turns("clock") == 0

    async def late() -> None:
        await sleep_until(1.0)  # the service starts
        with pytest.raises(RuntimeError, match="too late"):
            drive()

    run(late)
