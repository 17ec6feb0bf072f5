"""Benchmark the simulator: a thousand peers to convergence, and how fast one write spreads.

    python tools/bench_sim.py scale  [--peers 1000] [--duration 10] [--seed 1]
    python tools/bench_sim.py spread [--sizes 100,300,1000] [--seed 1]
    python tools/bench_sim.py all --json

Every figure comes from one run of `pttsync.simulate` (real nodes, the
simulated network, virtual time), so they compare like with like:

1. **scale**: `--peers` peers, one write per peer spread over `--duration`
   virtual seconds (a member's write needs the master's signature), until
   every peer holds the same tree.  The target is at most 60 s of wall time
   for 1,000 peers on a 2-core machine; the ratio to it is printed.
2. **spread**: one write by a master (valid at once), at N = 100, 300 and
   1,000 peers, once with push and anti-entropy (the defaults) and once with
   anti-entropy alone.  A *round* is one anti-entropy interval: in it every
   node starts one sync with one random peer, which is a round of the
   push-pull epidemic model.  The spread in rounds is compared with the
   push-pull bound log3(N) + ln ln(N); the target is at most 1.5 times it.
   The push figure is also given in hops: the spread over the mean one-way
   latency.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pttsync.sim import SimConfig, epidemic_rounds, simulate

SCALE_TARGET_S = 60.0
SPREAD_TARGET = 1.5


def scale(peers: int, duration: float, seed: int) -> dict[str, Any]:
    cfg = SimConfig(peers=peers, writes=peers, duration=duration, seed=seed)
    report = simulate(cfg)
    return {
        "peers": peers,
        "writes": peers,
        "write_window_s": duration,
        "ok": report.ok,
        "converged": report.converged,
        "convergence_s": report.convergence_s,
        "virtual_s": report.virtual_s,
        "wall_s": report.wall_s,
        "target_wall_s": SCALE_TARGET_S,
        "ratio_to_target": round(report.wall_s / SCALE_TARGET_S, 3),
        "messages": report.messages["total"],
        "bytes": report.bytes["total"],
        "spread_s": report.spread_s,
    }


def spread(n: int, seed: int, *, push: bool) -> dict[str, Any]:
    cfg = SimConfig(
        peers=n, writes=1, write_by="masters", warmup=30.0, duration=0.0, seed=seed, push=push,
        hot=0.0, deletes=0.0,
    )  # fmt: skip
    report = simulate(cfg)
    seconds = report.spread_s["max"]
    rounds = seconds / cfg.sync_interval
    bound = epidemic_rounds(n)
    lo, hi = cfg.latency_ms
    return {
        "peers": n,
        "push": push,
        "ok": report.ok,
        "spread_s": seconds,
        "rounds": round(rounds, 3),
        "bound_rounds": round(bound, 3),
        "ratio": round(rounds / bound, 3),
        "target_ratio": SPREAD_TARGET,
        "hops": round(seconds / ((lo + hi) / 2000), 1) if push else None,
        "wall_s": report.wall_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["scale", "spread", "all"])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--sizes", default="100,300,1000")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    if args.what in ("scale", "all"):
        out["scale"] = scale(args.peers, args.duration, args.seed)
        if not args.json:
            s = out["scale"]
            print(
                f"scale: {s['peers']} peers, {s['writes']} writes over {s['write_window_s']:g} s:"
                f" {'converged' if s['converged'] else 'NOT converged'} in"
                f" {s['virtual_s']:.1f} virtual s, {s['wall_s']:.1f} s wall"
                f" ({s['ratio_to_target']:.2f} x the {SCALE_TARGET_S:g} s target),"
                f" {s['messages']:,} messages",
                flush=True,
            )
    if args.what in ("spread", "all"):
        rows = []
        for n in (int(x) for x in args.sizes.split(",")):
            for push in (True, False):
                row = spread(n, args.seed, push=push)
                rows.append(row)
                if not args.json:
                    how = "push + anti-entropy" if push else "anti-entropy alone "
                    hops = f", {row['hops']:g} hops" if row["hops"] is not None else ""
                    print(
                        f"spread: N={n:5d} {how}: {row['spread_s']:8.3f} s ="
                        f" {row['rounds']:6.2f} rounds{hops}; bound {row['bound_rounds']:.2f};"
                        f" ratio {row['ratio']:.3f} (target <= {SPREAD_TARGET:g});"
                        f" wall {row['wall_s']:.1f} s",
                        flush=True,
                    )
        out["spread"] = rows
    if args.json:
        json.dump(out, sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
