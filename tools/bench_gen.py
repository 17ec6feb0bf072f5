"""Benchmark: `pttsync gen` against the raw Ed25519 sign rate, measured in one run.

    python tools/bench_gen.py [--count 100000] [--json] [--min-ratio 0.5]

It measures, in this order, on this machine:

1. the raw sign rate: one thread signing oplog creator messages with
   `cryptography`'s Ed25519, nothing else;
2. `pttsync gen --count N` over one year, as a user runs it (a fresh data
   directory, the SQLite file store, its default signer worker process), timed
   by the command itself: draft, sign, finish, encode, store, update the tree;
3. the same with `--sign-workers 0`: everything in one thread;
4. the raw sign rate again.

It reports each rate and its ratio to the mean raw sign rate.  The target
(issue 2) is gen >= 0.5x.  With --min-ratio it exits 1 if the default gen is below.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pttsync.core.identity import Identity
from pttsync.core.oplog import creator_message


def raw_sign_rate(count: int) -> float:
    identity = Identity.generate()
    messages = [creator_message(os.urandom(32)) for _ in range(count)]
    started = time.perf_counter()
    for m in messages:
        identity.sign(m)
    return count / (time.perf_counter() - started)


def gen_rate(count: int, workers: int, batch: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pttsync-bench-") as tmp:
        data = Path(tmp) / "peer"
        pttsync = [sys.executable, "-m", "pttsync", "-q"]
        subprocess.run([*pttsync, "init", "--data", str(data)], check=True, capture_output=True)
        out = subprocess.run(
            [
                *pttsync,
                "gen",
                "--data",
                str(data),
                "--count",
                str(count),
                "--from",
                "2025-01-01",
                "--to",
                "2026-01-01",
                "--seed",
                "1",
                "--batch",
                str(batch),
                "--sign-workers",
                str(workers),
                "--json",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out)
        check = subprocess.run(
            [*pttsync, "inspect", "check", "--data", str(data)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise SystemExit(f"store check failed after gen: {check.stdout}")
        return {"rate": float(result["oplogs_per_second"]), "seconds": float(result["seconds"])}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--sign-sample", type=int, default=30_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--min-ratio", type=float, default=None)
    args = parser.parse_args()

    before = raw_sign_rate(args.sign_sample)
    pipelined = gen_rate(args.count, 1, args.batch)
    inline = gen_rate(args.count, 0, args.batch)
    after = raw_sign_rate(args.sign_sample)
    raw = (before + after) / 2
    report = {
        "count": args.count,
        "raw_sign_per_second": round(raw),
        "raw_sign_before_after": [round(before), round(after)],
        "gen_per_second": round(pipelined["rate"]),
        "gen_ratio": round(pipelined["rate"] / raw, 3),
        "gen_inline_per_second": round(inline["rate"]),
        "gen_inline_ratio": round(inline["rate"] / raw, 3),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"raw Ed25519 sign rate     {raw:>10,.0f}/s  (before {before:,.0f}, after {after:,.0f})"
        )
        print(
            f"pttsync gen (default)     {pipelined['rate']:>10,.0f}/s  "
            f"= {report['gen_ratio']:.2f}x raw   [target >= 0.5x]"
        )
        print(
            f"pttsync gen --sign-workers 0 {inline['rate']:>7,.0f}/s  "
            f"= {report['gen_inline_ratio']:.2f}x raw   (one thread)"
        )
    if args.min_ratio is not None and report["gen_ratio"] < args.min_ratio:
        print(f"FAIL: gen ratio {report['gen_ratio']} < {args.min_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
