"""A first sync between two real `pttsync run` nodes over loopback TCP with Noise.

    python tools/bench_firstsync.py [--n 100000] [--runs 1] [--json] [--code DIR]

Node A holds n oplogs (generated once with `pttsync gen` and cached in
--cache); node B is new, admitted by A, and empty.  Both run as processes on
this machine; the clock runs from B's start until B holds every oplog of A.
The same run measures the raw single-core Ed25519 verify rate (the
`cryptography` package, one thread), and prints:

    {"n", "seconds", "oplogs_per_s", "raw_verify_per_s", "ratio", "runs": [...],
     "peak_rss_mb": {"serving": ..., "syncing": ...}}

`peak_rss_mb` is each node's peak resident memory (VmHWM) over the runs: the
node serving its n oplogs, and the new node syncing them.

`ratio` is the sync rate over the raw rate, the median of the runs.
`--code DIR` runs the two nodes from another checkout of pttsync (a
`git worktree` of an older commit), to compare before and after in one run;
they run with DIR as their working directory, since `python -m` puts the
working directory ahead of PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pttsync.errors import PttsyncError
from pttsync.net.controlclient import control_call

PTTSYNC = [sys.executable, "-m", "pttsync"]


def raw_verify_rate(seconds: float = 2.0) -> float:
    key = Ed25519PrivateKey.generate()
    public = key.public_key()
    messages = [os.urandom(200) for _ in range(256)]
    signatures = [key.sign(m) for m in messages]
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for m, s in zip(messages, signatures, strict=True):
            public.verify(s, m)
        done += len(messages)
    return done / (time.perf_counter() - started)


def cli(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [*PTTSYNC, *args], capture_output=True, text=True, env=env, cwd=env["PYTHONPATH"],
        check=True,
    )  # fmt: skip
    return done.stdout


def prepared(n: int, cache: Path, env: dict[str, str]) -> Path:
    """A data directory holding n oplogs (made once per n, then copied)."""
    source = cache / f"firstsync-{n}"
    if not (source / "store.sqlite3").exists():
        shutil.rmtree(source, ignore_errors=True)
        cli("init", "--data", str(source), env=env)
        cli("-q", "gen", "--data", str(source), "--count", str(n),
            "--from", "2025-01-01", "--to", "2026-01-01", env=env)  # fmt: skip
    return source


def status(d: Path) -> dict[str, Any] | None:
    """The node's first topic, asked over its control socket from this process.

    (A `pttsync status` process every 0.2 s cost about half a core on this
    2-core machine, taken from the two nodes being measured.)
    """
    try:
        answer = trio.run(control_call, d, {"op": "status"})
    except PttsyncError:
        return None  # not running yet
    topics = answer["topics"]
    return dict(topics[0]) if topics else None


def peak_rss_mb(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def one_run(n: int, source: Path, env: dict[str, str], peaks: list[tuple[float, float]]) -> float:
    work = Path(tempfile.mkdtemp(prefix="ptfs-", dir="/tmp"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        a, b = work / "a", work / "b"
        shutil.copytree(source, a)
        cli("init", "--data", str(b), "--topic-of", str(a), env=env)
        with open(work / "a.log", "wb") as log:
            procs.append(subprocess.Popen(
                [*PTTSYNC, "run", "--data", str(a), "--listen", "127.0.0.1:0"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=env["PYTHONPATH"],
            ))  # fmt: skip
        while status(a) is None:
            time.sleep(0.05)
        listen = json.loads(cli("status", "--data", str(a), "--json", env=env))["listen"]
        want = n + 2  # the genesis and B's admission
        started = time.perf_counter()
        with open(work / "b.log", "wb") as log:
            procs.append(subprocess.Popen(
                [*PTTSYNC, "run", "--data", str(b), "--join", listen],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=env["PYTHONPATH"],
            ))  # fmt: skip
        while True:
            top = status(b)
            if top is not None and top["valid"] >= want:
                took = time.perf_counter() - started
                peaks.append((peak_rss_mb(procs[0].pid), peak_rss_mb(procs[1].pid)))
                return took
            if time.perf_counter() - started > 3600:
                raise RuntimeError("no first sync within an hour")
            time.sleep(0.2)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--code", type=Path, help="run the nodes from this checkout")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pttsync-bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    code = (args.code or Path(__file__).resolve().parent.parent).resolve()
    env["PYTHONPATH"] = str(code)
    args.cache.mkdir(parents=True, exist_ok=True)
    source = prepared(args.n, args.cache, env)
    raw = raw_verify_rate()
    peaks: list[tuple[float, float]] = []
    runs = [one_run(args.n, source, env, peaks) for _ in range(args.runs)]
    seconds = statistics.median(runs)
    report = {
        "n": args.n,
        "code": str(code),
        "seconds": round(seconds, 2),
        "oplogs_per_s": round(args.n / seconds),
        "raw_verify_per_s": round(raw),
        "ratio": round(args.n / seconds / raw, 3),
        "runs": [round(r, 2) for r in runs],
        "peak_rss_mb": {
            "serving": round(max(p[0] for p in peaks), 1),
            "syncing": round(max(p[1] for p in peaks), 1),
        },
    }
    if args.json:
        print(json.dumps(report))
    else:
        raw_rate = report["raw_verify_per_s"]
        print(
            f"first sync of {args.n:,} oplogs: {seconds:.1f} s, {report['oplogs_per_s']:,}/s"
            f" = {report['ratio']}x the raw single-core verify rate ({raw_rate:,}/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
