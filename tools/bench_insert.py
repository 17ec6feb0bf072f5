"""Benchmark: the cost of one insert as the store grows, measured in one run.

    python tools/bench_insert.py [--sizes 1000,10000,100000] [--probes 300] [--json]

For each store size N, fill a file store with N synthetic valid oplogs (a)
spread over one year, and (b) all inside one hour, then time `probes` inserts
of one oplog per transaction (the push path: oplog row, leaf and every parent
updated and committed).  It reports microseconds per insert and the ratio to
the smallest size.  A tree whose insert cost grew with the store would show
ratios near N/N0; pttsync's should stay near 1 (an hour over 32 leaves is
split into slices, so even one hot hour costs a few more levels, not a scan).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from pttsync.core.identity import Identity
from pttsync.core.oplog import OplogStatus, create_oplog
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.core.topic import new_topic
from pttsync.synthetic import populate


def per_insert_us(size: int, start: int, end: int, probes: int) -> float:
    identity = Identity.generate()
    topic = new_topic(identity, name="bench", create_time=start, nonce=b"b" * 16)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Store.open(Path(tmp) / "s.sqlite3", create=True) as store,
    ):
        store.add_topic(topic)
        populate(
            store,
            identity,
            topic.topic_id,
            count=size,
            start=start,
            end=end,
            seed=size,
            batch_size=20_000,
        )
        rng = random.Random(size)
        probes_ops = [
            create_oplog(
                identity,
                topic_id=topic.topic_id,
                object_id=b"probe%d" % i,
                op=1,
                value=i,
                create_time=rng.randrange(start, end),
            )
            for i in range(probes)
        ]
        started = time.perf_counter()
        for o in probes_ops:
            store.write_batch(topic.topic_id, [(o, OplogStatus.VALID)])
        elapsed = time.perf_counter() - started
        problems = store.check(topic.topic_id)
        if problems:
            raise SystemExit(f"store inconsistent: {problems[:3]}")
        return elapsed / probes * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    year = (parse_iso("2025-01-01"), parse_iso("2026-01-01"))
    hour = (parse_iso("2025-06-01T12:00Z"), parse_iso("2025-06-01T12:00Z") + HOUR_NS)
    rows = []
    for name, (start, end) in (("one year", year), ("one hour", hour)):
        base = None
        for size in sizes:
            us = per_insert_us(size, start, end, args.probes)
            base = base or us
            rows.append(
                {
                    "spread": name,
                    "stored": size,
                    "us_per_insert": round(us, 1),
                    "ratio_to_smallest": round(us / base, 2),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'spread':<10} {'stored':>8} {'us/insert':>10} {'ratio':>6}")
        for r in rows:
            print(
                f"{r['spread']:<10} {r['stored']:>8,} {r['us_per_insert']:>10} "
                f"{r['ratio_to_smallest']:>6}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
