"""Benchmark the node over real loopback TCP: push versus anti-entropy, and write throughput.

    python tools/bench_node.py [--peers 8] [--writes 40] [--json]

Runs N nodes in this process on 127.0.0.1 with the real transport (Noise
XX over TCP) and real data directories (SQLite, synchronous=FULL), all in
one run, so the ratios compare like with like:

1. **push**: one write at a time on a random peer (a member's write needs
   the master's signature first); the wall time until every peer shows it
   as valid.  Median and 95th percentile.
2. **anti-entropy alone**: the same with push off and a 1 s sync interval.
3. **acknowledged writes per second** on the master, back to back (each
   durable before the call returns), with the peers connected.

With each of 1 and 2 it reports the bytes all nodes sent per write (frame
payloads, every message: pushes, announcements, sync rounds, routes) and
the copies of each write that reached each peer by push, over the timed
writes only.
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pttsync.cli.run import make_peers
from pttsync.net.changes import wait_until
from pttsync.net.config import NodeConfig
from pttsync.net.serve import serve_node

if TYPE_CHECKING:
    from pttsync.net.node import Node


def _valid_everywhere(nodes: list[Node], key: str) -> bool:
    for node in nodes:
        state = node.get(key)
        if state is None or state.pending:
            return False
    return True


async def _wait(nodes: list[Node], predicate: Any, limit: float = 60.0) -> None:
    with trio.fail_after(limit):
        await wait_until(nodes, predicate)


async def _cluster(root: Path, n: int, seed: int, push: bool, writes: int) -> dict[str, Any]:
    dirs = make_peers(root, n)
    rng = random.Random(seed)
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for d in dirs:
            cfg = NodeConfig(
                listen="127.0.0.1:0",
                join=(nodes[0].listen_address,) if nodes and nodes[0].listen_address else (),
                sync_interval=1.0 if not push else 10.0,
                push=push,
                control=False,
                seed=rng.randrange(2**32),
            )
            nodes.append(await nursery.start(functools.partial(serve_node, d.path, config=cfg)))
        await _wait(nodes, lambda: all(len(x.links) >= 1 for x in nodes))
        # Every peer knows it is a member (it learns its ROLE by syncing): a write
        # before that is refused, and with some seeds one came first.
        await _wait(nodes, lambda: all(x.api.topic().admits(x.peer_id) for x in nodes))
        latencies = []
        tag = "push" if push else "ae"
        sent0, copies0 = _bytes_sent(nodes), _push_received(nodes)
        for w in range(writes):
            key = f"{tag}-{w}"
            node = nodes[rng.randrange(n)]
            t0 = time.perf_counter()
            await node.put(key, w)
            await _wait(nodes, functools.partial(_valid_everywhere, nodes, key))
            latencies.append(time.perf_counter() - t0)
        sent, copies = _bytes_sent(nodes) - sent0, _push_received(nodes) - copies0
        throughput = None
        if push:
            count = 300
            t0 = time.perf_counter()
            for w in range(count):
                await nodes[0].put(f"burst-{w}", w)
            throughput = count / (time.perf_counter() - t0)
        nursery.cancel_scope.cancel()
    latencies.sort()
    return {
        "median_s": statistics.median(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "max_s": latencies[-1],
        "writes_per_s": throughput,
        "bytes_per_write": round(sent / writes),
        "push_copies_per_write_per_peer": round(copies / (writes * (n - 1)), 3),
    }


def _bytes_sent(nodes: list[Node]) -> int:
    """Frame payload bytes every node has sent so far, over every link."""
    return sum(link.stats.bytes_sent for x in nodes for link in x.links.values())


def _push_received(nodes: list[Node]) -> int:
    return sum(rt.stats.push_received for x in nodes for rt in x.topics.values())


async def _main(n: int, writes: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pttsync-bench-") as tmp:
        push = await _cluster(Path(tmp) / "push", n, seed, True, writes)
        ae = await _cluster(Path(tmp) / "ae", n, seed, False, writes)
    return {
        "peers": n,
        "writes": writes,
        "push": push,
        "anti_entropy_only": ae,
        "ratio_median_ae_over_push": ae["median_s"] / push["median_s"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peers", type=int, default=8)
    p.add_argument("--writes", type=int, default=20)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = trio.run(_main, args.peers, args.writes, args.seed)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
        return 0
    push, ae = report["push"], report["anti_entropy_only"]
    print(f"{args.peers} peers over loopback TCP (Noise XX), {args.writes} writes each way")
    print(
        f"push:               median {push['median_s'] * 1000:.1f} ms,"
        f" p95 {push['p95_s'] * 1000:.1f} ms to reach every peer (valid)"
    )
    print(
        f"anti-entropy only:  median {ae['median_s'] * 1000:.1f} ms,"
        f" p95 {ae['p95_s'] * 1000:.1f} ms (1 s interval)"
    )
    print(f"ratio:              {report['ratio_median_ae_over_push']:.1f}x slower without push")
    print(f"master writes:      {push['writes_per_s']:.0f} acknowledged writes/s (fsync each)")
    print(
        f"bytes per write:    {push['bytes_per_write']:,} with push"
        f" ({push['push_copies_per_write_per_peer']:.2f} pushed copies a peer),"
        f" {ae['bytes_per_write']:,} with anti-entropy alone"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
