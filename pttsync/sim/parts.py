"""A simulation run by two processes: who runs which peer, and what they share.

`pttsync simulate --jobs 2` runs one plan in two processes, each one trio
run on its own clock with half the peers (peer i in process i % 2), their
connections crossing in conservative lockstep (lockstep.py, remote.py).
Both carry out the same plan: each starts its own peers at their times and
makes their writes, and knows the others are up (the plan says when), so a
starting peer picks whom to join among all of them.

What the world decides from every peer, the processes decide together:

* **Samples.**  At each sample instant each process sends the other its
  peers' digests and whether any has something pending, its count of
  messages and writes, and its peers' last change; both then see the whole
  network, and both decide at the same instant that it has converged.
* **The end.**  After both runs, each sends its results (`PartResult`) and
  the facts the invariants need of its peers (invariants.py): the first
  process merges them and writes the one report.

A seed gives the same report for a given number of processes (the split
changes which task runs when, as any change of the code may); one process
stays the reference.  Faults are carried out by both processes as the
plan says: each stops or starts the peers it runs and marks the others
down or up; a newcomer is admitted by its master's process, at once, and
started by its own; when a peer leaves, each process notes which writes
its remaining peers hold, and the first decides at the end which left
with the peers that left (totals.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import SimulationError, UsageError
from .lockstep import DONE, Lockstep

if TYPE_CHECKING:
    from .lockstep import Bridge
    from .plan import SimConfig

JOBS = (1, 2)


def refusals(cfg: SimConfig) -> list[str]:
    """Why `cfg`'s plan cannot be split across processes (empty: it can)."""
    out = []
    if cfg.latency_dist != "uniform":
        out.append("a lognormal latency has no least value (the windows' length)")
    elif cfg.latency_ms[0] <= 0:
        out.append("it needs a least latency above 0 ms (its lookahead)")
    if cfg.peers < 2:
        out.append("it needs two peers")
    return out


def check_splittable(cfg: SimConfig) -> None:
    """UsageError unless `cfg` can run split across `cfg.jobs` processes."""
    if cfg.jobs not in JOBS:
        raise UsageError(f"jobs must be one of {', '.join(map(str, JOBS))}")
    why = refusals(cfg) if cfg.jobs > 1 else []
    if why:
        raise UsageError(f"--jobs 2 cannot run this plan: {'; '.join(why)}; use --jobs 1")


def auto_jobs(cfg: SimConfig) -> int:
    """What `--jobs auto` runs `cfg` with: 2 processes where the plan can be split and
    this process may use two CPUs, else 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    return 2 if cpus >= 2 and not refusals(cfg) else 1


class Part:
    """This process's share of a split run: its peers, and its end of the lockstep's wire."""

    def __init__(self, index: int, bridge: Bridge, lookahead: float) -> None:
        self.index = index
        self.lockstep = Lockstep(bridge, index, lookahead)

    def mine(self, peer: int) -> bool:
        """True if this process runs peer `peer` (by index)."""
        return peer % 2 == self.index

    def runs(self, name: str) -> bool:
        """True if this process runs the node named `name` ("peerN")."""
        return self.mine(int(name[4:]))

    def swap(self, obj: Any) -> Any:
        """`obj` for the other process's (SimulationError if that one's run ended)."""
        got = self.lockstep.exchange(obj)
        if got == DONE:
            self.lockstep.other_finished = True
            raise SimulationError("the other process of the split run ended first")
        return got


@dataclass(frozen=True, slots=True)
class SampleShare:
    """One process's part of a sample (see the module text)."""

    events_done: bool  # the plan's last event is behind it
    digests: dict[int, bytes]
    settled: bool  # none of its peers has anything pending, and none is new
    sent: int  # messages its peers sent so far
    writes_done: int
    last_change: float  # the latest commit of its peers (0: none)

    def merge(self, other: SampleShare) -> SampleShare:
        """Both processes' shares: the whole network's sample (the same on both sides)."""
        return SampleShare(
            self.events_done and other.events_done,
            {**self.digests, **other.digests},
            self.settled and other.settled,
            self.sent + other.sent,
            self.writes_done + other.writes_done,
            max(self.last_change, other.last_change),
        )


@dataclass(slots=True)
class PartResult:
    """What the second process hands the first at the end (everything the report
    reads that lives with the peers that process ran)."""

    traffic: dict[str, Any] = field(default_factory=dict)  # node name -> Traffic
    rounds: int = 0
    violations: int = 0
    internal_errors: int = 0
    push: dict[str, int] = field(default_factory=dict)
    bounds: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # used, limit, peer
    tracks: dict[bytes, Any] = field(default_factory=dict)  # its writes' WriteTracks
    reached: dict[bytes, tuple[int, float]] = field(default_factory=dict)  # others' writes
    writes_done: int = 0
    writes_refused: int = 0
    refusals: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    handed: int = 0
    leaves: list[tuple[list[bytes], set[bytes]]] = field(default_factory=list)  # world.py
    windows: int = 0  # the lockstep's windows, items it sent, and wall s it waited
    crossed: int = 0
    waited: float = 0.0
