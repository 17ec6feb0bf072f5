"""Simulated networks with random settings, until one breaks an invariant.

Each run is `pttsync simulate` with settings drawn from the sweep's seed:
peers, writes, masters (1 to 3), who writes, slots a node (3 to 16), and
any mix of loss, partitions, crashes, churn, late joiners, masters offline,
clock skew, a thin push mesh or no push, a short expiry, lognormal latency,
a bandwidth cap, a short or long sync or visit interval, hot keys and
deletes, the SQLite store, and (small runs) the real Noise handshake.  A run
that breaks an invariant is printed with what broke and the command that replays it (add `--shrink`
to that command for the smallest plan that still fails).  The runs are
separate processes, `--jobs` at a time.

Usage:
    python tools/sim_sweep.py                       # 40 runs, seed 1
    python tools/sim_sweep.py --runs 500 --seed 7 --jobs 2
    python tools/sim_sweep.py --runs 3 --max-peers 12 --json

The settings are a pure function of --seed and the run's number, and each
run of a function of its settings, so a sweep's failures come back with
the same seed.  Exit 0 when every run held every invariant, 1 otherwise.
`--json` prints one object: {"runs", "failed", "failures": [{"command",
"broken": {INVARIANT: what}}]}.  What it found is in docs/pip-11/simulation.md
("What the simulator found", 2026-12-04).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import random
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900.0  # wall seconds a run may take (a default run of 40 peers takes a few)


def draw(rng: random.Random, max_peers: int = 40) -> list[str]:
    """One run's `pttsync simulate` arguments."""
    peers = rng.choice([n for n in (8, 12, 16, 20, 30, 40) if n <= max_peers] or [max_peers])
    args = ["--peers", str(peers), "--writes", str(rng.choice([10, 20, 40, 80]))]
    args += ["--seed", str(rng.randrange(1000)), "--masters", str(rng.choice([1, 1, 2, 2, 3]))]
    args += ["--write-by", rng.choice(["any", "members", "masters"])]
    args += ["--max-peers", str(rng.choice([3, 4, 6, 16]))]
    if rng.random() < 0.3:
        args += ["--loss", str(rng.choice([0.01, 0.05]))]
    if rng.random() < 0.3:
        start = rng.randint(5, 20)
        args += ["--partition", f"{start}:{start + rng.randint(2, 20)}"]
        if rng.random() < 0.3:
            args += ["--partition-groups", str(rng.choice([3, 4]))]
    if rng.random() < 0.3:
        args += ["--crash", str(rng.randint(1, 4))]
    if rng.random() < 0.2:
        args += ["--churn", str(rng.randint(1, 3))]
    if rng.random() < 0.2:
        args += ["--late", str(rng.randint(1, 3))]
    if rng.random() < 0.2:
        start = rng.randint(5, 20)
        args += ["--masters-offline", f"{start}:{start + rng.randint(2, 30)}"]
    if rng.random() < 0.2:
        args += ["--skew-ms", str(rng.choice([500, 5000, 60000]))]
    if rng.random() < 0.15:
        args += ["--push-mesh", str(rng.choice([0, 1, 2]))]
    if rng.random() < 0.1:
        args += ["--no-push"]
    if rng.random() < 0.15:  # writes left pending this long are rolled back
        args += ["--expiry", str(rng.choice([60, 120, 300]))]
    if rng.random() < 0.15:
        args += ["--latency-dist", "lognormal"]
    if rng.random() < 0.1:
        args += ["--bandwidth", rng.choice(["16k", "256k"])]
    if rng.random() < 0.1:
        args += ["--sync-interval", str(rng.choice([2, 30]))]
    if rng.random() < 0.1:
        args += ["--visit-interval", str(rng.choice([20, 300]))]
    if rng.random() < 0.1:
        args += ["--hot", str(rng.choice([0.0, 0.8])), "--deletes", str(rng.choice([0.0, 0.3]))]
    if rng.random() < 0.05:
        args += ["--store", "sqlite"]
    if rng.random() < 0.05 and peers <= 12:
        args += ["--transport", "noise"]
    # Half the runs whose plan can be split run in two processes (parts.py).
    unsplit = "lognormal" in args
    args += ["--jobs", "2" if not unsplit and rng.random() < 0.5 else "1"]
    return args


def run_one(args: list[str]) -> tuple[dict[str, str], float]:
    """Run `pttsync simulate ARGS --json`: what broke ({} if nothing), and the wall time."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "pttsync", "simulate", *args, "--json"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT, check=False
        )
        report = json.loads(done.stdout)
        broken = {k: v for k, v in report["invariants"].items() if v != "ok"}
    except subprocess.TimeoutExpired:
        broken = {"timeout": f"no report within {TIMEOUT:g} s"}
    except (json.JSONDecodeError, KeyError, TypeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        broken = {"crash": f"exit {done.returncode}: " + " / ".join(tail)}
    return broken, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=40, help="runs to make (default: 40)")
    parser.add_argument("--seed", type=int, default=1, help="the sweep's seed (default: 1)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default: 1)")
    parser.add_argument("--max-peers", type=int, default=40, help="peers a run at most")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    opts = parser.parse_args(argv)
    if opts.runs < 1 or opts.jobs < 1 or opts.max_peers < 2:
        parser.error("--runs and --jobs must be at least 1, --max-peers at least 2")
    plans = [draw(random.Random(f"{opts.seed}/{i}"), opts.max_peers) for i in range(opts.runs)]
    failures = []
    with concurrent.futures.ThreadPoolExecutor(opts.jobs) as pool:
        for args, (broken, wall) in zip(plans, pool.map(run_one, plans), strict=True):
            command = "pttsync simulate " + shlex.join(args)
            if not opts.json:
                print(f"{'FAIL' if broken else 'ok  '} {wall:6.1f} s  {command}", flush=True)
                for name, what in broken.items():
                    print(f"       {name}: {what}", flush=True)
            if broken:
                failures.append({"command": command, "broken": broken})
    if opts.json:
        print(json.dumps({"runs": opts.runs, "failed": len(failures), "failures": failures}))
    else:
        print(f"{opts.runs} runs, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
