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
    overhead_per_diff, seconds (the sync only), converged, bytes_by_type

Negentropy runs on the same two sets in the same run (unless --no-negentropy):
tools/negentropy/reconcile.mjs drives nostr-tools' NIP-77 module (a port of
the reference JS of hoytech/negentropy) over each side's (update time in
seconds, oplog ID) pairs, with no frame limit.  It adds:

    neg_round_trips, neg_bytes (its messages, both ways), neg_per_diff, and
    ratio = overhead_per_diff / neg_per_diff (below 1.0: fewer bytes than negentropy)

negentropy only finds the differing IDs; fetching them costs at least 32 B an
ID more, which `ratio` does not charge it (`neg_need` says how many).  Install
it once with `npm ci --prefix tools/negentropy` (Node 18 or later).

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
import shutil
import sqlite3
import subprocess
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

NEGENTROPY = Path(__file__).resolve().parent / "negentropy"
START, END = parse_iso("2025-01-01"), parse_iso("2026-01-01")
ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
TOPIC = new_topic(ALICE, name="bench", create_time=START, nonce=b"\0" * 16)


def shared_file(n: int, cache: Path) -> Path:
    """The store file of the n shared oplogs, generated once, then cached."""
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
    with Store.open(path):  # a file cached by an older pttsync is migrated first, since
        pass  # shared_store copies its pages as they are
    return path


def shared_store(n: int, cache: Path) -> Store:
    """An in-memory store holding the n shared oplogs."""
    path = shared_file(n, cache)
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


def negentropy_ready() -> str | None:
    """None if negentropy can run here, else why not."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NEGENTROPY / "node_modules" / "nostr-tools").is_dir():
        return f"run `npm ci --prefix {NEGENTROPY}` first"
    return None


def _id_set(store: Store, path: Path) -> None:
    """Write the store's (update time in seconds, oplog ID) pairs, 40 bytes each."""
    leaves = store.tree(TOPIC.topic_id).leaves(0, 2**63 - 1)
    path.write_bytes(
        b"".join((x.time // 1_000_000_000).to_bytes(8, "big") + x.oplog_id for x in leaves)
    )


def negentropy(a: Store, b: Store) -> dict[str, int]:
    """Reconcile a's and b's IDs with negentropy: its round trips, bytes, have and need."""
    with tempfile.TemporaryDirectory(prefix="pttsync-neg-") as tmp:
        pa, pb = Path(tmp) / "a.bin", Path(tmp) / "b.bin"
        _id_set(a, pa)
        _id_set(b, pb)
        out = subprocess.run(
            ["node", str(NEGENTROPY / "reconcile.mjs"), str(pa), str(pb)],
            check=True, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    result: dict[str, int] = json.loads(out.stdout)
    return result


def run(
    n: int, d: int, mode: str, cache: Path, *, with_negentropy: bool = True
) -> dict[str, object]:
    a = shared_store(n, cache)
    b = copy(a)
    lo = START
    if mode == "recent":  # the span of the newest 10·d shared oplogs
        lo = END - int((END - START) * min(1.0, 10 * max(d, 1) / max(n, 1)))
    if d:
        populate(a, ALICE, TOPIC.topic_id, count=d - d // 2, start=lo, end=END, seed=2)
        # The topic's master writes both sides' extras (a member's would be pending).
        populate(b, ALICE, TOPIC.topic_id, count=d // 2, start=lo, end=END, seed=3)
    neg = negentropy(a, b) if with_negentropy else None
    started = time.perf_counter()
    report = sync_local(
        a, b, TOPIC.topic_id, peer_a=ALICE.peer_id, peer_b=BOB.peer_id, now=END, max_rounds=4
    )
    seconds = time.perf_counter() - started
    t = report.totals()
    total = t["bytes_sent"] + t["bytes_received"]
    overhead = total - t["oplog_bytes"]
    by_type: dict[str, int] = {}
    for r in report.rounds:
        for k, v in r.bytes_by_type.items():
            by_type[k] = by_type.get(k, 0) + v
    out: dict[str, object] = {
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
        "bytes_by_type": by_type,
    }
    if neg is not None:
        per = neg["bytes"] / d if d else None
        out.update(
            neg_round_trips=neg["round_trips"],
            neg_bytes=neg["bytes"],
            neg_per_diff=round(per) if per is not None else None,
            neg_need=neg["need"],
            ratio=round(overhead / d / per, 2) if per else None,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10_000, help="shared oplogs (default: 10,000)")
    p.add_argument("--d", type=int, default=100, help="differences, split between the sides")
    p.add_argument("--mode", choices=["uniform", "recent"], default="uniform")
    p.add_argument("--suite", action="store_true", help="run the standard table")
    p.add_argument("--big", action="store_true", help="with --suite: include n = 1,000,000")
    p.add_argument("--no-negentropy", action="store_true", help="do not run negentropy alongside")
    p.add_argument(
        "--cache",
        type=Path,
        default=Path(tempfile.gettempdir()) / "pttsync-bench",
        help="where generated shared stores are kept",
    )
    args = p.parse_args(argv)
    neg = not args.no_negentropy
    if neg and (why := negentropy_ready()) is not None:
        p.error(f"negentropy cannot run: {why} (or pass --no-negentropy)")
    if not args.suite:
        print(json.dumps(run(args.n, args.d, args.mode, args.cache, with_negentropy=neg)))
        return 0
    sizes = [10_000, 100_000] + ([1_000_000] if args.big else [])
    for n in sizes:
        for d, mode in SUITE:
            if d > n // 10:
                continue
            row = run(n, d, mode, args.cache, with_negentropy=neg)
            print(json.dumps(row), flush=True)
    return 0


SUITE = [(0, "uniform")] + [
    (d, mode) for d in (1, 100, 1000, 10_000) for mode in ("uniform", "recent")
]
"""(d, mode) of the suite: the issue's d in {1, 100, 1,000, 10,000}, both spreads."""


if __name__ == "__main__":
    sys.exit(main())
