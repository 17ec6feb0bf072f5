"""What a simulated network sends and schedules: frames by message type, trio's task steps.

    python tools/census_sim.py [--peers 300] [--writes 300] [--seed 3] [--json]

Runs `pttsync simulate`'s default workload and counts, over the whole run:

* every frame a node sends, by message type: frames, bytes, and the items
  they carry (oplogs of a `Push`, IDs of an `IHave`...).  Each frame is
  decoded once more to be counted, so the run is slower than a plain one;
* trio's task steps by task (a reader, the pusher, the lazy timer, the
  timers' service...) and its scheduler's turns (`io waits`), through a
  trio `Instrument` that changes nothing in the run.

simulation.md ("Fewer announcements, shared folds...") has the census of
the default 1,000-peer run and what it showed.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from typing import Any

import trio

from pttsync.net import peer
from pttsync.net.wirecodec import decode_any
from pttsync.sim import SimConfig
from pttsync.sim.plan import make_plan
from pttsync.sim.run import run_plan


class Steps(trio.abc.Instrument):
    """Task steps by task name (its last dotted part), and the scheduler's turns."""

    def __init__(self) -> None:
        self.by_task: collections.Counter[str] = collections.Counter()
        self.io_waits = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.by_task[task.name.rsplit(".", 1)[-1]] += 1

    def before_io_wait(self, timeout: float) -> None:
        self.io_waits += 1


def census(peers: int, writes: int, seed: int) -> dict[str, Any]:
    frames: collections.Counter[str] = collections.Counter()
    size: collections.Counter[str] = collections.Counter()
    items: collections.Counter[str] = collections.Counter()
    counted = peer.PeerLink._count  # every frame a link sends goes through it

    def count(self: peer.PeerLink, frame: bytes) -> None:
        msg = decode_any(frame)
        kind = type(msg).__name__
        frames[kind] += 1
        size[kind] += len(frame)
        items[kind] += len(getattr(msg, "oplogs", ()) or getattr(msg, "ids", ()) or ())
        counted(self, frame)

    cfg = SimConfig(peers=peers, writes=writes, seed=seed)
    steps = Steps()
    peer.PeerLink._count = count  # type: ignore[method-assign]
    try:
        report = run_plan(cfg, make_plan(cfg), instruments=[steps])
    finally:
        peer.PeerLink._count = counted  # type: ignore[method-assign]
    return {
        "peers": peers,
        "writes": writes,
        "seed": seed,
        "ok": report.ok,
        "messages": {
            kind: {"frames": frames[kind], "bytes": size[kind], "items": items[kind]}
            for kind in sorted(frames, key=lambda k: -frames[k])
        },
        "frames": sum(frames.values()),
        "task_steps": dict(steps.by_task.most_common()),
        "steps": sum(steps.by_task.values()),
        "io_waits": steps.io_waits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--peers", type=int, default=300)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = census(args.peers, args.writes, args.seed)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["ok"] else 1
    head = f"{out['peers']} peers, {out['writes']} writes, seed {out['seed']}"
    print(f"{head}: {out['frames']:,} frames")
    for kind, c in out["messages"].items():
        frames, size, items = c["frames"], c["bytes"], c["items"]
        print(f"  {kind:<28} {frames:>10,} frames {size:>14,} bytes {items:>10,} items")
    print(f"{out['steps']:,} task steps, {out['io_waits']:,} scheduler turns")
    for task, n in out["task_steps"].items():
        print(f"  {task:<28} {n:>10,}")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
