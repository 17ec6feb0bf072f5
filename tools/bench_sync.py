"""Benchmark a PIP-11 sync between two in-memory peers.

Both peers share n signed oplogs spread over 2025; then d more oplogs are
split between them (half on each side, so both directions must be
repaired), spread over the whole year (`--mode uniform`) or among the newest
(`--mode recent`: in the time the newest 10·d shared oplogs span, as in
anchors.md §1.2).  The peers then sync through the real session code and
wire format (pttsync.localsync) at `now` = 2026-01-01, never having synced
before, and the tool prints one JSON object:

    n, d, mode, rounds, round_trips, bytes_total, bytes_oplogs (the encoded
    oplogs that had to move), bytes_overhead (everything else),
    overhead_per_diff, seconds (the sync only), converged

Usage:
    python tools/bench_sync.py --n 100000 --d 100 --mode uniform
    python tools/bench_sync.py --suite            # the table in docs/pip-11/sync.md
    python tools/bench_sync.py --suite --big      # adds n = 1,000,000 (~2 min once, cached)

The shared oplogs are signed for real; generating 1M takes about a minute,
so they are cached in --cache (default: a pttsync-bench folder in the temp dir).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from pttsync.core.identity import Identity
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import new_topic
from pttsync.localsync import sync_local
from pttsync.synthetic import populate

START, END = parse_iso("2025-01-01"), parse_iso("2026-01-01")
ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
TOPIC = new_topic(ALICE, name="bench", create_time=START, nonce=b"\0" * 16)


def shared_store(n: int, cache: Path) -> Store:
    """An in-memory store holding the n shared oplogs (built once, then cached)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"shared-v3-{n}.sqlite3"  # v3: oplogs carry document payloads
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with Store.open(tmp, create=True, synchronous="OFF") as s:
            s.add_topic(TOPIC)
            print(f"generating {n:,} shared oplogs (cached in {path})...", file=sys.stderr)
            populate(s, ALICE, TOPIC.topic_id, count=n, start=START, end=END, seed=1)
        tmp.rename(path)
    mem = Store.memory()
    src = sqlite3.connect(path)
    try:
        src.backup(mem._conn)
    finally:
        src.close()
    return mem


def copy(store: Store) -> Store:
    other = Store.memory()
    store._conn.backup(other._conn)
    return other


def run(n: int, d: int, mode: str, cache: Path) -> dict[str, object]:
    a = shared_store(n, cache)
    b = copy(a)
    lo = START
    if mode == "recent":  # the span of the newest 10·d shared oplogs
        lo = END - int((END - START) * min(1.0, 10 * max(d, 1) / max(n, 1)))
    if d:
        populate(a, ALICE, TOPIC.topic_id, count=d - d // 2, start=lo, end=END, seed=2)
        # The topic's master writes both sides' extras (a member's would be pending).
        populate(b, ALICE, TOPIC.topic_id, count=d // 2, start=lo, end=END, seed=3)
    started = time.perf_counter()
    report = sync_local(
        a, b, TOPIC.topic_id, peer_a=ALICE.peer_id, peer_b=BOB.peer_id, now=END, max_rounds=4
    )
    seconds = time.perf_counter() - started
    t = report.totals()
    total = t["bytes_sent"] + t["bytes_received"]
    overhead = total - t["oplog_bytes"]
    return {
        "n": n,
        "d": d,
        "mode": mode,
        "rounds": len(report.rounds),
        "round_trips": report.rounds[0].round_trips,
        "round_trips_all_rounds": t["round_trips"],
        "bytes_total": total,
        "bytes_oplogs": t["oplog_bytes"],
        "bytes_overhead": overhead,
        "overhead_per_diff": round(overhead / d) if d else None,
        "seconds": round(seconds, 3),
        "converged": report.converged and a.count(TOPIC.topic_id) == n + d,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="shared oplogs (default: 10,000)")
    p.add_argument("--d", type=int, default=100, help="differences, split between the sides")
    p.add_argument("--mode", choices=["uniform", "recent"], default="uniform")
    p.add_argument("--suite", action="store_true", help="run the standard table")
    p.add_argument("--big", action="store_true", help="with --suite: include n = 1,000,000")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pttsync-bench",
        help="where generated shared stores are kept",
    )
    args = p.parse_args(argv)
    if not args.suite:
        print(json.dumps(run(args.n, args.d, args.mode, args.cache)))
        return 0
    sizes = [10_000, 100_000] + ([1_000_000] if args.big else [])
    for n in sizes:
        for d, mode in [(0, "uniform"), (1, "uniform"), (100, "uniform"), (100, "recent"),
                        (1000, "uniform"), (1000, "recent")]:  # fmt: skip
            print(json.dumps(run(n, d, mode, args.cache)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
