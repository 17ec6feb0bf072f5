"""Benchmark a timed sleep: trio's (cancel scopes and deadlines) against net/timers.py's.

    python tools/bench_timers.py                  # 20,000 tasks, 20 waits each, 1 ms ticks
    python tools/bench_timers.py --tasks 1000 --waits 100 --tick 0 --json

Each of `--tasks` tasks waits `--waits` times for a random time under trio's
autojump mock clock, as a simulated network's nodes do, three ways in one
run (the figures are wall microseconds a wait, and their ratios to trio's):

* `trio`: `trio.sleep`, what a node's anti-entropy tick and HandleFailedOplogs
  timer did;
* `trio_fail_after`: `trio.sleep` inside `trio.fail_after`, what a simulated
  handshake did;
* `timers`: `net.timers.sleep`, one service task waking the parked
  tasks (what both do now), its wake-ups rounded up to `--tick` (the
  simulator's 1 ms by default; 0, a real node's exact times: then every
  wake-up costs the service a turn of its own, and trio's own sleep wins).

A trio sleep is a cancel scope with a deadline, ended by a `Cancelled`
raised and caught; `fail_after` adds a second scope and a generator.  (An
event waited on under `trio.move_on_at` was measured the same way against a
wait on the service: no faster, so those waits stayed on trio.)
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Awaitable, Callable

import trio
import trio.testing

from pttsync.net.timers import sleep, use_ticks

Waiter = Callable[[random.Random, int], Awaitable[None]]


async def _trio(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        await trio.sleep(rng.random())


async def _trio_fail_after(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        with trio.fail_after(10):
            await trio.sleep(rng.random())


async def _timers(rng: random.Random, waits: int) -> None:
    for _ in range(waits):
        await sleep(rng.random())


def measure(waiter: Waiter, tasks: int, waits: int, tick: float = 0.0) -> float:
    """Wall microseconds a wait, `tasks` tasks waiting `waits` times each."""

    async def main() -> None:
        use_ticks(tick)
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
    p.add_argument("--tick", type=float, default=0.001, help="the timers' tick (default 1 ms)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.tasks < 1 or args.waits < 1:
        p.error("--tasks and --waits must be at least 1")
    if not 0 <= args.tick <= 1:
        p.error("--tick must be in [0, 1] s")
    us = {
        name: measure(waiter, args.tasks, args.waits, args.tick)
        for name, waiter in (
            ("trio", _trio), ("trio_fail_after", _trio_fail_after), ("timers", _timers),
        )
    }  # fmt: skip
    out = {
        "tasks": args.tasks,
        "waits": args.waits,
        "tick": args.tick,
        "us_a_sleep": {k: round(v, 2) for k, v in us.items()},
        "timers_to_trio": round(us["timers"] / us["trio"], 3),
        "timers_to_trio_fail_after": round(us["timers"] / us["trio_fail_after"], 3),
    }
    if args.json:
        print(json.dumps(out))
    else:
        each = f"{args.waits} waits each, tick {args.tick:g} s"
        print(f"{args.tasks:,} tasks, {each}: wall us a sleep")
        for name, v in out["us_a_sleep"].items():
            print(f"  {name:16} {v:8.2f}")
        print(f"  timers / trio:             {out['timers_to_trio']:.3f}")
        print(f"  timers / trio_fail_after:  {out['timers_to_trio_fail_after']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
