"""The peers of a fault run: `pttsync run` processes in their namespaces, and the workload.

Peer 0 founds the topic and is its only master; the others are members it
admitted, so their writes are pending until peer 0 co-signs them.  Each
process runs under `ip netns exec` (which execs, so signals reach the node
itself), with `--lifeline` so that it ends with the harness, and, for a
skewed clock, under libfaketime.  The harness talks to each node through its
control socket, a Unix socket in the data directory, reachable from outside
the namespace.

The workload writes through the control sockets: each writer puts values
under a few shared keys, so peers update the same documents concurrently
(conflicts), and members' writes need the master.  Every acknowledged write
goes into the history with its oplog ID and the status it was acknowledged
with.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pttsync.cli.run import make_peers
from pttsync.errors import PttsyncError
from pttsync.net.controlclient import control_call

if TYPE_CHECKING:
    from .netlab import NetLab

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
READY_S = 30.0
CALL_S = 3.0  # a control call to a paused or partitioned node gives up after this


@dataclass
class Ack:
    """One acknowledged write."""

    peer: int
    key: str
    value: str
    oplog_id: str
    status: str  # as acknowledged: "valid" or "pending"
    at: float  # seconds since the run started


@dataclass
class Peer:
    index: int
    data: Path
    skew_s: float = 0.0  # the clock's offset, through libfaketime
    proc: trio.Process | None = None
    paused: bool = False
    restarts: int = 0

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


@dataclass
class Cluster:
    lab: NetLab
    root: Path
    sync_interval: float = 1.0
    expiry_s: float | None = None
    peers: list[Peer] = field(default_factory=list)
    history: list[Ack] = field(default_factory=list)
    attempts: int = 0
    started: float = 0.0

    def make(self, skews: list[float] | None = None) -> None:
        expiry = None if self.expiry_s is None else int(self.expiry_s * 1e9)
        dirs = make_peers(self.root, self.lab.n, expiry=expiry)
        skews = skews or [0.0] * self.lab.n
        self.peers = [Peer(i, d.path, skews[i]) for i, d in enumerate(dirs)]

    def env(self, peer: Peer) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
        if peer.skew_s:
            if not Path(FAKETIME_LIB).exists():
                raise RuntimeError(f"libfaketime is not installed ({FAKETIME_LIB})")
            env["LD_PRELOAD"] = FAKETIME_LIB
            env["FAKETIME"] = f"{peer.skew_s:+.0f}s"
            env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        return env

    async def start(self, i: int) -> None:
        peer = self.peers[i]
        cmd = [*self.lab.exec_prefix(i), sys.executable, "-m", "pttsync", "-v", "run",
               "--data", str(peer.data), "--listen", self.lab.listen(i),
               "--sync-interval", str(self.sync_interval), "--lifeline",
               "--restarts", str(peer.restarts)]  # fmt: skip
        for j in range(self.lab.n):
            if j != i:
                cmd += ["--join", self.lab.listen(j)]
        log = os.open(peer.data / "node.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            peer.proc = await trio.lowlevel.open_process(
                cmd, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                env=self.env(peer),
            )  # fmt: skip
        finally:
            os.close(log)
        peer.paused = False
        with trio.fail_after(READY_S):
            while True:
                if peer.proc.poll() is not None:
                    raise RuntimeError(f"peer {i} exited at start; see {peer.data / 'node.log'}")
                try:
                    await control_call(peer.data, {"op": "ping"}, timeout=CALL_S)
                    return
                except PttsyncError:
                    await trio.sleep(0.05)

    async def start_all(self) -> None:
        for i in range(self.lab.n):
            await self.start(i)

    def signal(self, i: int, signum: int) -> None:
        proc = self.peers[i].proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signum)

    async def kill(self, i: int) -> None:
        """kill -9, and reap it."""
        peer = self.peers[i]
        self.signal(i, signal.SIGKILL)
        if peer.proc is not None:
            await peer.proc.wait()

    async def restart(self, i: int) -> None:
        self.peers[i].restarts += 1
        await self.start(i)

    def pause(self, i: int) -> None:
        self.signal(i, signal.SIGSTOP)
        self.peers[i].paused = True

    def resume(self, i: int) -> None:
        self.signal(i, signal.SIGCONT)
        self.peers[i].paused = False

    async def stop_all(self) -> None:
        """SIGTERM every peer (SIGCONT first), then SIGKILL what is left after 15 s."""
        for p in self.peers:
            if p.up:
                self.resume(p.index)
                self.signal(p.index, signal.SIGTERM)
        with trio.move_on_after(15):
            for p in self.peers:
                if p.proc is not None:
                    await p.proc.wait()
        for p in self.peers:
            if p.up and p.proc is not None:
                p.proc.kill()
                await p.proc.wait()

    async def call(self, i: int, request: dict[str, Any]) -> Any:
        """A control request to peer i; None if it does not answer (down, paused, slow)."""
        peer = self.peers[i]
        if not peer.up or peer.paused:
            return None
        try:
            with trio.move_on_after(CALL_S):
                return await control_call(peer.data, request, timeout=CALL_S)
        except PttsyncError:
            return None
        return None

    # -- the workload -------------------------------------------------------------------

    async def write(self, i: int, key: str, value: str) -> None:
        self.attempts += 1
        result = await self.call(i, {"op": "put", "key": key, "value": value})
        if isinstance(result, dict) and "oplog_id" in result:
            status = str(result.get("status"))
            at = trio.current_time() - self.started
            self.history.append(Ack(i, key, value, str(result["oplog_id"]), status, at))

    async def writers(self, seconds: float, rng: random.Random, *, rate: float = 4.0,
                      keys: int = 12, only: list[int] | None = None) -> None:  # fmt: skip
        """Every peer (or `only` these) writes `rate` times a second for `seconds`."""
        who = list(range(self.lab.n)) if only is None else only

        async def writer(i: int, seed: int) -> None:
            r = random.Random(seed)
            n = 0
            while True:
                await self.write(i, f"doc-{r.randrange(keys)}", f"p{i}-{n}")
                n += 1
                await trio.sleep(r.expovariate(rate))

        with trio.move_on_after(seconds):
            async with trio.open_nursery() as nursery:
                for i in who:
                    nursery.start_soon(writer, i, rng.getrandbits(32))

    async def statuses(self) -> list[dict[str, Any] | None]:
        out: list[dict[str, Any] | None] = []
        for i in range(self.lab.n):
            s = await self.call(i, {"op": "status"})
            out.append(s["topics"][0] if isinstance(s, dict) and s.get("topics") else None)
        return out

    async def converged(self) -> bool:
        """Every peer answers, with one digest and nothing pending."""
        tops = await self.statuses()
        if any(t is None for t in tops):
            return False
        return len({t["digest"] for t in tops if t}) == 1 and all(
            t["pending"] == 0 for t in tops if t
        )

    async def wait_converged(self, limit: float) -> float | None:
        """Seconds until converged (polled every 0.2 s), or None after `limit`."""
        t0 = trio.current_time()
        with trio.move_on_after(limit):
            while not await self.converged():  # noqa: ASYNC110 - other processes' state
                await trio.sleep(0.2)
            return trio.current_time() - t0
        return None
