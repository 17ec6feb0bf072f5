"""The named fault scenarios.  Each runs the workload while it injects its faults, then
ends every fault; the run then waits for convergence and checks the invariants.

`seconds` (tools/faults.py --seconds) is the length of the fault phase; the
other times follow from it.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable

    from .cluster import Cluster


@dataclass
class Timeline:
    """What the scenario did, and when (seconds since the run started)."""

    cluster: Cluster
    events: list[tuple[float, str]] = field(default_factory=list)

    def note(self, what: str) -> None:
        self.events.append((round(trio.current_time() - self.cluster.started, 2), what))


async def partition_heal(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """Two halves cut apart by nftables while both keep writing, then healed."""
    n = c.lab.n
    left, right = list(range((n + 1) // 2)), list(range((n + 1) // 2, n))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.writers, seconds * 1.25, rng)
        await trio.sleep(seconds / 4)
        c.lab.partition([left, right])
        t.note(f"partition {left} | {right}")
        await trio.sleep(seconds)
        c.lab.heal()
        t.note("heal")


async def crash_restart(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """kill -9 a random peer every fifth of the run, and start it again a second later."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(c.writers, seconds, rng)
        for _ in range(5):
            await trio.sleep(seconds / 5 - 1)
            victim = rng.randrange(c.lab.n)
            await c.kill(victim)
            t.note(f"kill -9 peer {victim}")
            await trio.sleep(1)
            await c.restart(victim)
            t.note(f"restart peer {victim}")


async def master_paused(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """SIGSTOP the only master while the members write (pending, waiting for its
    signature) until every one of those writes has expired (the topic's expiry,
    EXPIRY_S, has passed since the last); then SIGCONT."""
    assert c.expiry_s is not None
    await c.wait_converged(30)  # the members know they are members
    c.pause(0)
    t.note("SIGSTOP peer 0 (the master)")
    await c.writers(seconds / 2, rng, only=list(range(1, c.lab.n)))
    t.note("the members stop writing")
    await trio.sleep(c.expiry_s + 3)
    c.resume(0)
    t.note("SIGCONT peer 0")


async def skewed_clocks(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """Every peer's clock is off (libfaketime, set at start), within the 5 minutes
    of skew a node tolerates; they all write."""
    t.note("clocks: " + ", ".join(f"peer {p.index} {p.skew_s:+.0f} s" for p in c.peers))
    await c.writers(seconds, rng)


async def capped_catch_up(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """The last peer starts late, behind a 2 Mbit/s cap (tc tbf), and catches up on
    everything the others wrote (the master's generated history included)."""
    late = c.lab.n - 1
    await c.writers(seconds / 2, rng, only=list(range(late)))
    c.lab.cap(late, "2mbit")
    t.note(f"tc tbf 2mbit on peer {late}")
    await c.start(late)
    t.note(f"start peer {late}")
    await c.writers(seconds / 2, rng, only=list(range(late)))


async def bit_rot(c: Cluster, t: Timeline, rng: random.Random, seconds: float) -> None:
    """Stop a member, flip a byte in a few of its stored records, start it again."""
    await c.writers(seconds / 2, rng)
    await c.wait_converged(30)
    victim = 1
    c.signal(victim, signal.SIGTERM)
    proc = c.peers[victim].proc
    if proc is not None:
        await proc.wait()
    conn = sqlite3.connect(c.peers[victim].data / "store.sqlite3")
    with conn:
        rows = conn.execute("SELECT oplog_id, body FROM oplogs WHERE status=3").fetchall()
        for oid, body in rng.sample(rows, min(3, len(rows))):
            rotten = bytearray(body)
            rotten[rng.randrange(len(rotten))] ^= 1 << rng.randrange(8)
            conn.execute("UPDATE oplogs SET body=? WHERE oplog_id=?", (bytes(rotten), oid))
    conn.close()
    t.note(f"flipped a bit in 3 stored records of peer {victim}")
    await c.restart(victim)
    t.note(f"restart peer {victim}")


SCENARIOS: dict[str, Callable[[Cluster, Timeline, random.Random, float], Awaitable[None]]] = {
    "partition-heal": partition_heal,
    "crash-restart": crash_restart,
    "master-paused-until-expiry": master_paused,
    "skewed-clocks": skewed_clocks,
    "bandwidth-capped-catch-up": capped_catch_up,
    "bit-rot": bit_rot,
}

EXPIRY_S = 60.0
"""The topic's expiry in master-paused-until-expiry: the shortest a topic may have."""

SKEWS = (0.0, 100.0, -100.0, 140.0, -140.0, 60.0, -60.0)
"""Clock offsets (seconds) for skewed-clocks, by peer: any two differ by less than the
5 minutes of skew a node tolerates (a record further ahead waits until it is not)."""


def prepare(name: str, c: Cluster, seconds: float) -> list[int]:
    """Settings before the peers exist; returns the peers to start now."""
    if name == "master-paused-until-expiry":
        c.expiry_s = EXPIRY_S
    c.make([SKEWS[i % len(SKEWS)] for i in range(c.lab.n)] if name == "skewed-clocks" else None)
    if name == "bandwidth-capped-catch-up":
        # A history to catch up on: 3,000 oplogs generated on the master.
        subprocess.run(
            [sys.executable, "-m", "pttsync", "-q", "gen", "--data", str(c.peers[0].data),
             "--count", "3000", "--from", "2025-01-01", "--to", "2025-06-01"],
            check=True, capture_output=True,
        )  # fmt: skip
        return list(range(c.lab.n - 1))
    return list(range(c.lab.n))
