"""net/timers.py's `serve` and `run_steps`: a loop of steps at the times they ask or
when their alarm rings, made by the serving task itself or, while a `run_steps`
task runs, by that task with the serving task parked.  Each test runs on both
drivers of the timers (a service task, or the simulator's clock) and both ways of
making the steps."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.net.timers import Alarm, run_steps, serve, sleep_until

from .test_timers import DRIVERS, run

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

STEPPERS = ("task", "run_steps")  # who makes the steps after the first


def with_steps(stepper: str, main: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """`main` with a `run_steps` task beside it (or not), ended once `main` is."""

    async def both() -> None:
        async with trio.open_nursery() as nursery:
            if stepper == "run_steps":
                nursery.start_soon(run_steps)
            await main()
            nursery.cancel_scope.cancel()

    return both


async def run_steps_in(scope: trio.CancelScope) -> None:
    """`run_steps` until `scope` is cancelled."""
    with scope:
        await run_steps()


def expected_calls(delays: list[float | None], rings: list[float], end: float) -> list[float]:
    """When the steps are made: at 0, then at the time the last one asked for (its
    delay after it), or at the first ring after it that comes sooner; a step that
    returns None is the last.  Rings have fractional parts no step time has, so no
    ring falls on a step's instant."""
    calls, t, pending = [0.0], 0.0, sorted(rings)
    for d in delays:
        if d is None:
            break
        pending = [r for r in pending if r > t]
        due = t + d
        t = pending.pop(0) if pending and pending[0] < due else due
        if t > end:
            break
        calls.append(t)
    return calls


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.just(math.inf), st.integers(0, 6).map(float)), max_size=14),
    st.lists(st.integers(0, 60), max_size=6, unique=True),
    st.sampled_from(DRIVERS),
    st.sampled_from(STEPPERS),
    st.one_of(st.none(), st.integers(0, 60)),
)
def test_each_step_comes_at_the_time_it_asked_or_at_the_ring_before_it(
    delays: list[float | None],
    ring_at: list[int],
    driver: str,
    stepper: str,
    stop_steps_at: int | None,
) -> None:
    """Random delays (some only a ring ends, some end the loop) and rings at random
    times: every step is made at the first of its time and a ring, never early,
    never twice, and `serve` returns after the step that said so.  `run_steps`, when
    it runs, may end at a random time: the serving task makes its steps itself then."""
    rings = [r + (i + 1) / 16 for i, r in enumerate(ring_at)]  # no two share a fraction
    end = 80.0
    calls: list[float] = []
    returned: list[float] = []
    script = iter([*delays, None])

    def step() -> float | None:
        calls.append(trio.current_time())
        d = next(script)
        return None if d is None else trio.current_time() + d

    async def main() -> None:
        alarm = Alarm()

        async def serving() -> None:
            await serve(alarm, step)
            returned.append(trio.current_time())

        async def ringer() -> None:
            for r in sorted(rings):
                await sleep_until(r)
                alarm.ring()

        async with trio.open_nursery() as nursery:
            if stepper == "run_steps":
                steps = trio.CancelScope()
                nursery.start_soon(run_steps_in, steps)
                if stop_steps_at is not None:
                    nursery.start_soon(stop_at, steps, stop_steps_at + 0.5)
            nursery.start_soon(serving)
            nursery.start_soon(ringer)
            await sleep_until(end)
            nursery.cancel_scope.cancel()

    async def stop_at(scope: trio.CancelScope, when: float) -> None:
        await sleep_until(when)
        scope.cancel()

    run(main, driver=driver)
    want = expected_calls(delays, rings, end)
    assert calls == pytest.approx(want)
    if len(want) == len(delays) + 1 or (len(want) <= len(delays) and delays[len(want) - 1] is None):
        assert returned == pytest.approx([want[-1]])  # the last step ended the loop
    else:
        assert returned == []


def serving_task_steps(stepper: str, driver: str) -> int:
    """Fifty steps, thirty a tenth of a second apart and twenty made by rings between
    them: how many times the serving task ran."""
    made = woken = 0
    alarm = Alarm()

    def step() -> float | None:
        nonlocal made
        made += 1
        return None if made == 50 else trio.current_time() + 0.1

    async def serving() -> None:
        await serve(alarm, step)

    async def ringer() -> None:
        for i in range(20):  # between steps: each ring makes one too
            await sleep_until(i / 10 + 0.05)
            alarm.ring()

    class Steps(trio.abc.Instrument):
        def before_task_step(self, task: trio.lowlevel.Task) -> None:
            nonlocal woken
            woken += task.name.endswith("serving")

    async def main() -> None:
        trio.lowlevel.add_instrument(Steps())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serving)
            nursery.start_soon(ringer)

    run(with_steps(stepper, main), driver=driver)
    assert made == 50
    return woken


@pytest.mark.parametrize("driver", DRIVERS)
def test_with_run_steps_the_serving_task_is_not_woken_a_step(driver: str) -> None:
    """Made by `run_steps`, the steps wake the serving task only when the last returns;
    made by the task, they wake it once a step."""
    assert serving_task_steps("task", driver) >= 50
    assert serving_task_steps("run_steps", driver) <= 3


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_step_made_by_run_steps_raises_in_its_serving_task_and_the_others_go_on(
    driver: str,
) -> None:
    """A bug in a step: its own task raises it (where the caller's containment
    catches it, as before), and the other serving task's steps are still made."""
    other: list[float] = []
    n = 0

    def broken() -> float | None:
        nonlocal n
        n += 1
        if n == 3:
            raise ZeroDivisionError("a bug of ours")
        return trio.current_time() + 1

    def fine() -> float | None:
        other.append(trio.current_time())
        return trio.current_time() + 1 if len(other) < 6 else None

    async def main() -> None:
        async def failing() -> None:
            with pytest.raises(ZeroDivisionError, match="a bug of ours"):
                await serve(Alarm(), broken)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(failing)
            nursery.start_soon(serve, Alarm(), fine)

    run(with_steps("run_steps", main), driver=driver)
    assert n == 3
    assert other == pytest.approx([0, 1, 2, 3, 4, 5])


def steps_after_cancelling(driver: str) -> list[float]:
    """The steps made for a serving task after another cancelled it, at the instant
    its step was due."""
    cancelled = False
    late: list[float] = []
    scope = trio.CancelScope()

    def step() -> float | None:
        if cancelled:
            late.append(trio.current_time())
        return trio.current_time() + 1

    async def serving() -> None:
        with scope:
            await serve(Alarm(), step)

    async def canceller() -> None:
        nonlocal cancelled
        await sleep_until(3)
        scope.cancel()
        cancelled = True

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(serving)
            nursery.start_soon(canceller)
            await sleep_until(5)

    run(with_steps("run_steps", main), driver=driver)
    return late


@pytest.mark.parametrize("driver", DRIVERS)
def test_no_step_is_made_for_a_task_cancelled_at_its_instant(driver: str) -> None:
    """The clock queues a step for `run_steps` at the instant another task cancels the
    serving one.  Whichever of the two runs first in that batch (trio's shuffle, so
    sixteen rounds), no step is made once the cancellation is in, and the run ends
    cleanly: no task is rescheduled twice."""
    for _ in range(16):
        assert steps_after_cancelling(driver) == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_steps_queued_as_run_steps_ends_are_made_by_their_tasks(driver: str) -> None:
    """`run_steps` cancelled, and at once a ring queues a step for it: its serving task
    is woken to make that step itself, and makes the ones after it."""
    calls: list[float] = []

    def step() -> float | None:
        calls.append(trio.current_time())
        return trio.current_time() + 1 if len(calls) < 6 else None

    async def main() -> None:
        alarm = Alarm()
        async with trio.open_nursery() as nursery:
            steps = trio.CancelScope()
            nursery.start_soon(run_steps_in, steps)
            nursery.start_soon(serve, alarm, step)
            await sleep_until(2.5)
            steps.cancel()
            alarm.ring()

    run(main, driver=driver)
    assert calls == pytest.approx([0, 1, 2, 2.5, 3.5, 4.5])


def test_one_run_has_one_maker_of_steps() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_steps)
            await sleep_until(1)
            with pytest.raises(RuntimeError, match="already"):
                await run_steps()
            nursery.cancel_scope.cancel()

    run(main)
