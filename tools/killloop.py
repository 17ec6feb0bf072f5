"""Kill a writing node with SIGKILL at random moments and check that nothing acknowledged is lost.

    python tools/killloop.py [--iterations 200] [--seed S] [--json] [--dir DIR]

Two real `pttsync run` processes on loopback: A, the topic's master, takes
writes through its control socket (one `put` at a time, each acknowledged
only once it is durable), while it syncs with B, a member.  At a random
moment (seeded) A is killed with SIGKILL, mid-write or not.  After every
kill the tool checks:

* the store opens, and `inspect check`'s checks pass (every stored record
  decoded and verified against its row, every leaf, every tree node);
* every write acknowledged before the kill is in the store with its value
  (a write in flight at the kill may or may not be);

then starts A again, and checks that A and B converge (the same digest)
within a deadline.

With --json it prints one object: iterations, acknowledged (writes), keys,
lost, check_failures, converge_failures, kills_mid_write, seconds, and the
first few failures.  It exits 1 if any write was lost or any check failed.
Progress goes to stderr, on a terminal only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from pttsync.cli.run import make_peers
from pttsync.core.documents.docstore import DocumentStore
from pttsync.core.lifecycle.replica import Replica
from pttsync.core.store.integrity import scan
from pttsync.datadir import DataDir
from pttsync.errors import PttsyncError
from pttsync.net.controlclient import control_call

PTTSYNC = [sys.executable, "-m", "pttsync"]
READY_S = 30.0  # a started node answers on its control socket within this
CONVERGE_S = 30.0  # A and B agree within this after A is back
WRITE_S = (0.05, 1.5)  # A is killed this long after its first write, uniformly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Loop:
    def __init__(self, root: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.a, self.b = (d.path for d in make_peers(root, 2))
        self.port_a, self.port_b = free_port(), free_port()
        self.acked: dict[str, int] = {}  # each key's last acknowledged value
        self.acked_writes = 0
        self.in_flight: tuple[str, int] | None = None  # sent, not acknowledged, at the kill
        self.n = 0  # writes attempted
        self.failures: list[str] = []
        self.lost = self.check_failures = self.converge_failures = self.mid_write = 0
        self.b_proc: trio.Process | None = None

    async def start(self, d: Path, port: int, join: int) -> trio.Process:
        cmd = [*PTTSYNC, "-v", "run", "--data", str(d), "--listen", f"127.0.0.1:{port}"]
        cmd += ["--join", f"127.0.0.1:{join}", "--sync-interval", "1", "--lifeline"]
        fd = os.open(d / "node.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # stdin is the lifeline: if this tool dies, its nodes stop too.
            proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.PIPE, stdout=fd, stderr=subprocess.STDOUT
            )
        finally:
            os.close(fd)
        with trio.fail_after(READY_S):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the node on {d} exited with {proc.returncode}")
                try:
                    await control_call(d, {"op": "ping"}, timeout=5)
                    return proc
                except PttsyncError:
                    await trio.sleep(0.05)

    async def iteration(self, i: int) -> None:
        a = await self.start(self.a, self.port_a, self.port_b)
        try:
            await self.converge(i)
            kill_at = trio.current_time() + self.rng.uniform(*WRITE_S)
            self.in_flight = None
            with trio.move_on_at(kill_at):
                while True:
                    key, value = f"k{self.n % 500}", self.n
                    self.n += 1
                    self.in_flight = (key, value)
                    await control_call(self.a, {"op": "put", "key": key, "value": value})
                    self.in_flight = None
                    self.acked[key] = value
                    self.acked_writes += 1
            self.mid_write += self.in_flight is not None
            a.kill()  # SIGKILL
            await a.wait()
        finally:
            if a.poll() is None:
                a.kill()
                await a.wait()
            if a.stdin is not None:
                await a.stdin.aclose()  # the dead node's lifeline
        self.check_store(i)

    async def converge(self, i: int) -> None:
        async def digest(d: Path) -> str:
            status = await control_call(d, {"op": "status"}, timeout=5)
            return str(status["topics"][0]["digest"])

        with trio.move_on_after(CONVERGE_S):
            # Two other processes' state: polled, there is no event to wait on.
            while await digest(self.a) != await digest(self.b):  # noqa: ASYNC110
                await trio.sleep(0.05)
            return
        self.converge_failures += 1
        self.failures.append(f"iteration {i}: A and B did not converge within {CONVERGE_S} s")

    def check_store(self, i: int) -> None:
        try:
            with DataDir(self.a).open_store() as store:
                tid = store.topics()[0].topic_id
                problems = [str(d) for d in scan(store, tid)] + store.check(tid)
                docs = DocumentStore(Replica(store, tid))
                missing = []
                if self.in_flight is not None:
                    # The write in flight at the kill may have landed, or not; if it did,
                    # it is durable from now on, like an acknowledged one.
                    key, value = self.in_flight
                    state = docs.get(key)
                    if state is not None and state.value == value:
                        self.acked[key] = value
                for key, value in self.acked.items():
                    state = docs.get(key)
                    found = None if state is None else state.value
                    if found != value:
                        missing.append(f"{key}={value} (found {found})")
                docs.close()
        except PttsyncError as exc:
            problems, missing = [f"the store does not open: {exc}"], []
        if problems:
            self.check_failures += 1
            self.failures.append(f"iteration {i}: {problems[:3]}")
        if missing:
            self.lost += len(missing)
            self.failures.append(f"iteration {i}: lost {missing[:3]}")

    async def run(self, iterations: int, progress: bool) -> None:
        self.b_proc = await self.start(self.b, self.port_b, self.port_a)
        try:
            for i in range(1, iterations + 1):
                await self.iteration(i)
                if progress:
                    print(f"\rkill {i}/{iterations}, {len(self.acked)} keys, "
                          f"{self.lost} lost   ", end="", file=sys.stderr, flush=True)  # fmt: skip
            a = await self.start(self.a, self.port_a, self.port_b)  # the last restart
            try:
                await self.converge(iterations + 1)
            finally:
                a.send_signal(signal.SIGTERM)
                await a.wait()
        finally:
            self.b_proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(10):
                await self.b_proc.wait()
            if self.b_proc.poll() is None:
                self.b_proc.kill()
            if progress:
                print(file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=200, help="kills (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="when to kill (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", type=Path, help="where the two data directories go (kept)")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    root = args.dir or Path(tempfile.mkdtemp(prefix="pttsync-kill-", dir="/tmp"))
    started = time.monotonic()
    loop = Loop(root, args.seed)
    try:
        trio.run(loop.run, args.iterations, sys.stderr.isatty() and not args.json)
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    report: dict[str, Any] = {
        "iterations": args.iterations,
        "acknowledged": loop.acked_writes,
        "keys": len(loop.acked),
        "lost": loop.lost,
        "check_failures": loop.check_failures,
        "converge_failures": loop.converge_failures,
        "kills_mid_write": loop.mid_write,
        "seconds": round(time.monotonic() - started, 1),
        "failures": loop.failures[:10],
    }
    ok = not (loop.lost or loop.check_failures or loop.converge_failures)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['iterations']} kills, {report['acknowledged']:,} acknowledged writes"
            f" ({report['kills_mid_write']} kills mid-write): {report['lost']} lost,"
            f" {report['check_failures']} check failures,"
            f" {report['converge_failures']} convergence failures, {report['seconds']} s"
        )
        for failure in loop.failures[:10]:
            print("  " + failure)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
