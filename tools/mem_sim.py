"""Where a simulated network's memory goes: traced allocations per peer, by source line.

    python tools/mem_sim.py [--peers 100] [--writes 1000] [--duration 10] [--seed 1] [--top 15]

Runs `pttsync.simulate` under tracemalloc (about three times slower) and
takes one snapshot when the network first converges, while every node is
still running.  It prints the traced total per peer and the top source
lines by size; with `--json`, the same as one object.  Traced memory is
what Python allocated and still holds, not RSS (which adds the interpreter,
freed-but-kept arenas and C libraries): use it to see which structures grow
with peers and oplogs, and `/usr/bin/time` for the peak.  simulation.md
("Messages, memory and the number of peers") has the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import linecache
import sys
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pttsync.sim import SimConfig, simulate

if TYPE_CHECKING:
    from pttsync.sim.world import Progress


def measure(peers: int, writes: int, duration: float, seed: int, top: int) -> dict[str, Any]:
    snapshot: list[tracemalloc.Snapshot] = []

    def on_progress(p: Progress) -> None:
        if p.converged and not snapshot:
            gc.collect()
            snapshot.append(tracemalloc.take_snapshot())

    tracemalloc.start(1)
    try:
        report = simulate(
            SimConfig(peers=peers, writes=writes, duration=duration, seed=seed),
            progress=on_progress,
        )
    finally:
        tracemalloc.stop()
    if not snapshot:
        raise SystemExit("the network never converged: no snapshot taken")
    stats = snapshot[0].statistics("lineno")
    total = sum(s.size for s in stats)
    root = str(Path(__file__).resolve().parent.parent) + "/"
    lines = []
    for s in stats[:top]:
        frame = s.traceback[0]
        lines.append({
            "bytes": s.size,
            "blocks": s.count,
            "where": f"{frame.filename.replace(root, '')}:{frame.lineno}",
            "code": linecache.getline(frame.filename, frame.lineno).strip()[:80],
        })  # fmt: skip
    return {
        "peers": peers,
        "writes": writes,
        "ok": report.ok,
        "traced_bytes": total,
        "per_peer_bytes": total // peers,
        "top": lines,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=100)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    out = measure(args.peers, args.writes, args.duration, args.seed, args.top)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"{out['peers']} peers, {out['writes']} writes: {out['traced_bytes'] / 1e6:.1f} MB"
        f" traced at convergence, {out['per_peer_bytes'] / 1e3:.1f} KB a peer"
    )
    for line in out["top"]:
        print(f"{line['bytes'] / 1e6:8.2f} MB {line['blocks']:9d}  {line['where']}  {line['code']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
