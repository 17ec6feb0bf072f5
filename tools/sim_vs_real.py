"""partition-heal both ways: real processes in network namespaces, and `pttsync simulate`.

    python tools/sim_vs_real.py [--peers 5] [--seconds 20] [--seed 1] [--runs 3] [--json]

Runs tools/faults.py's partition-heal (needs root; see docs/pip-11/faults.md)
and a simulation of the same shape in the same run: the same peers, one
master, the same number of writes spread over the same time, the same
partition (two groups, from T/4 to T/4 + T after the writes start, T being
--seconds), a 1 s sync interval, the real store and transport, and
loopback-like latency (0.05 to 0.2 ms).  Prints both convergence times
after the heal, for each run (seed, seed + 1, ...), and their medians.  The
simulator's times are virtual seconds, the harness's wall seconds.
docs/pip-11/simulation.md explains the difference.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def real(peers: int, seconds: float, seed: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(HERE / "faults.py"), "--scenario", "partition-heal",
         "--peers", str(peers), "--seconds", str(seconds), "--seed", str(seed), "--json"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    if done.returncode == 2:
        raise SystemExit(done.stderr.strip())
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def simulated(peers: int, seconds: float, seed: int, writes: int) -> dict[str, Any]:
    start, end = seconds / 4, seconds / 4 + seconds
    done = subprocess.run(
        [sys.executable, "-m", "pttsync", "simulate", "--peers", str(peers),
         "--writes", str(writes), "--duration", str(seconds * 1.25), "--warmup", "2",
         "--partition", f"{start + 2:g}:{end + 2:g}", "--partition-groups", "2",
         "--sync-interval", "1", "--latency-ms", "0.05:0.2", "--store", "sqlite",
         "--transport", "noise", "--seed", str(seed), "--json", "--no-progress"],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for k in range(args.runs):
        seed = args.seed + k
        r = real(args.peers, args.seconds, seed)
        s = simulated(args.peers, args.seconds, seed, max(1, r["acknowledged"]))
        rows.append({
            "seed": seed,
            "real": {"ok": r["ok"], "convergence_s": r["convergence_s"],
                     "writes": r["acknowledged"]},
            "sim": {"ok": s["ok"], "convergence_s": s["convergence_s"], "writes": s["writes"],
                    "sync_rounds": s["sync_rounds"]},
        })  # fmt: skip
    med = {
        side: statistics.median(
            row[side]["convergence_s"] for row in rows if row[side]["convergence_s"] is not None
        )
        for side in ("real", "sim")
        if any(row[side]["convergence_s"] is not None for row in rows)
    }
    out = {"peers": args.peers, "seconds": args.seconds, "runs": rows, "median_s": med}
    if args.json:
        print(json.dumps(out))
    else:
        for row in rows:
            print(f"seed {row['seed']}: real {row['real']['convergence_s']} s (wall),"
                  f" simulated {row['sim']['convergence_s']} s (virtual),"
                  f" {row['real']['writes']} writes")  # fmt: skip
        print(f"median: {med}")
    ok = all(row["real"]["ok"] and row["sim"]["ok"] for row in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
