"""Benchmark a timed wait: trio's (a cancel scope and a deadline) against net/timers.py's.

    python tools/bench_timers.py                  # 20,000 tasks, 20 waits each
    python tools/bench_timers.py --tasks 1000 --waits 100 --json

Each of `--tasks` tasks waits `--waits` times for a random time under trio's
autojump mock clock, as a simulated network's nodes do, three ways in one
run (the figures are wall microseconds a wait, and their ratios to trio's):

* `trio`: `trio.sleep` inside `trio.fail_after`, what a simulated handshake did;
* `timers`: `net.timers.sleep_until`, one service task waking the parked tasks;
* `flag`: `net.timers.Flag.wait_until`, a wait that another task may end early
  (a sync round's wait for its end), against `trio.Event.wait` under
  `trio.move_on_at` (`trio_event`).

A wait costs trio more the more tasks wait at once: its cancel scopes'
deadlines, and the `Cancelled` raised and caught when each comes.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from pttsync.net.timers import Flag, sleep_until

Waiter = Callable[[random.Random, int], Awaitable[None]]


async def _trio(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        with trio.fail_after(10):
            await trio.sleep(rng.random())


async def _timers(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        await sleep_until(trio.current_time() + rng.random())


async def _trio_event(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        with trio.move_on_at(trio.current_time() + rng.random()):
            await trio.Event().wait()


async def _flag(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        await Flag().wait_until(trio.current_time() + rng.random())


def measure(waiter: Waiter, tasks: int, waits: int) -> float:
    """Wall microseconds a wait, `tasks` tasks waiting `waits` times each."""

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(waiter, random.Random(i), waits)

    start = time.perf_counter()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return (time.perf_counter() - start) / (tasks * waits) * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tasks", type=int, default=20_000, help="tasks waiting at once")
    p.add_argument("--waits", type=int, default=20, help="waits each task makes")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.tasks < 1 or args.waits < 1:
        p.error("--tasks and --waits must be at least 1")
    us = {
        name: measure(waiter, args.tasks, args.waits)
        for name, waiter in (
            ("trio", _trio), ("timers", _timers), ("trio_event", _trio_event), ("flag", _flag),
        )
    }  # fmt: skip
    out = {
        "tasks": args.tasks,
        "waits": args.waits,
        "us_a_wait": {k: round(v, 2) for k, v in us.items()},
        "timers_to_trio": round(us["timers"] / us["trio"], 3),
        "flag_to_trio_event": round(us["flag"] / us["trio_event"], 3),
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.tasks:,} tasks, {args.waits} waits each: wall us a wait")
        for name, v in out["us_a_wait"].items():
            print(f"  {name:11} {v:8.2f}")
        print(f"  timers / trio:      {out['timers_to_trio']:.3f}")
        print(f"  flag / trio_event:  {out['flag_to_trio_event']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
