"""Where a store's bytes go: every table and index, per oplog, as JSON.

    python tools/bench_disk.py [STORE.sqlite3 | DATA_DIR] [--reads] [--json]

Without an argument it measures the shared store tools/bench_sync.py caches
(`--n`, 100,000 by default; generated once if missing).  It reads SQLite's
`dbstat` table: the pages each table and index fills, so the figures are
what the file holds, free space inside pages included.  Prints:

    {"path", "oplogs", "file_bytes", "bytes_per_oplog",
     "by_object": {name: {"bytes", "per_oplog"}}, "body_bytes_per_oplog"}

`body_bytes_per_oplog` is the mean size of a record as stored (packed, from
schema 6).  With `--reads` it also times what reading records costs, best of
three passes, in microseconds a record, as `"reads"`: `bodies` (what a
serving node reads to send) and `stored_copies` (what every write looks up
first) of 20,000 random IDs, and `since` (every record, decoded).  Run the
same command on a store written by older code to compare.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.bench_sync import shared_file


def measure(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        (oplogs,) = conn.execute("SELECT count(*) FROM oplogs").fetchone()
        (body,) = conn.execute("SELECT coalesce(avg(length(body)), 0) FROM oplogs").fetchone()
        rows = conn.execute(
            "SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC"
        ).fetchall()
    finally:
        conn.close()
    per = max(oplogs, 1)
    total = sum(size for _, size in rows)
    return {
        "path": str(path),
        "oplogs": oplogs,
        "file_bytes": path.stat().st_size,
        "bytes_per_oplog": round(total / per, 1),
        "by_object": {
            name: {"bytes": size, "per_oplog": round(size / per, 1)}
            for name, size in rows
            if size >= per  # at least a byte an oplog
        },
        "body_bytes_per_oplog": round(body, 1),
    }


def reads(path: Path, sample: int = 20_000) -> dict[str, float]:
    """Microseconds a record of the store's reads (the module text), best of three."""
    from pttsync.core.store.sqlite import SqliteStore  # noqa: PLC0415 - only with --reads

    best: dict[str, float] = {}
    with SqliteStore.open(path) as store:
        topic_id = store.topics()[0].topic_id
        key = store._key(topic_id)
        ids = [row[0] for row in store._conn.execute("SELECT oplog_id FROM oplogs")]
        pick = random.Random(1).sample(ids, min(sample, len(ids)))
        for _ in range(3):
            for name, run, n in (
                ("bodies", lambda: store.bodies(topic_id, pick), len(pick)),
                ("stored_copies", lambda: store._existing(key, pick), len(pick)),
                ("since", lambda: sum(1 for _ in store.since(topic_id, 0)), len(ids)),
            ):
                t = time.perf_counter()
                run()
                us = (time.perf_counter() - t) / max(n, 1) * 1e6
                best[name] = round(min(us, best.get(name, us)), 2)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("store", nargs="?", type=Path, help="a store file or a data directory")
    p.add_argument("--n", type=int, default=100_000, help="without STORE: the cached size")
    p.add_argument("--reads", action="store_true", help="also time reading records")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    path: Path = args.store
    if path is None:
        path = shared_file(args.n, Path(tempfile.gettempdir()) / "pttsync-bench")
    elif path.is_dir():
        path = path / "store.sqlite3"
    if not path.is_file():
        p.error(f"no store at {path}")
    report = measure(path)
    if args.reads:
        report["reads"] = reads(path)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{path}: {report['oplogs']:,} oplogs, {report['bytes_per_oplog']} B an oplog")
    for name, v in report["by_object"].items():
        print(f"  {name:32} {v['bytes'] / 1e6:9.2f} MB {v['per_oplog']:8.1f} B an oplog")
    print(f"  (a record as stored: {report['body_bytes_per_oplog']} B)")
    for name, us in report.get("reads", {}).items():
        print(f"  read {name:27} {us:9.2f} us a record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
