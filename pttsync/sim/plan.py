"""What a simulation does: its settings, and the plan of writes and faults drawn from its seed.

`SimConfig` holds every knob (the CLI's `pttsync simulate` options map onto
it one to one).  `make_plan(config)` turns it into a `Plan`: the exact list
of writes and fault events, in virtual seconds from the start, drawn from
the seed alone.  The world (world.py) then carries the plan out.  Keeping
the plan apart means a run can be described, printed and replayed event by
event, and a failing run can be shrunk to fewer events (shrink.py).

Time line of a run (virtual seconds):

    0 .. ramp        the initial peers start, each joining `bootstrap` earlier ones
    warmup           the first write; writes are spread over `duration` seconds
                     (by default 30, or up to the end of the last partition or
                     masters' outage, so the writes go on through every fault)
    faults           anywhere in the write window (partitions may outlast it)
    last disturbance the last write, heal, restart, join or master's return
    + settle         the run waits at most `max_wait` more for convergence
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import UsageError
from .fabric import TRANSPORTS, LinkModel

MAX_PEERS = 20_000
MAX_WRITES = 1_000_000
STORES = ("memory", "sqlite")
WRITERS = ("any", "masters", "members")


class WriteKind(Enum):
    PUT = "put"
    DELETE = "delete"


class FaultKind(Enum):
    CRASH = "crash"  # a peer stops (its store kept) ...
    RESTART = "restart"  # ... and starts again
    PARTITION = "partition"  # the peers split into groups ...
    HEAL = "heal"  # ... and can talk again
    LEAVE = "leave"  # a peer goes away for good (churn)
    JOIN = "join"  # a new peer is admitted by a master and joins (churn, late joiners)
    MASTERS_DOWN = "masters_down"  # every master stops ...
    MASTERS_UP = "masters_up"  # ... and comes back


@dataclass(frozen=True, slots=True)
class Write:
    """One application write: at `at` s, on peer `peer`, of document `key`."""

    at: float
    peer: int
    key: str
    kind: WriteKind = WriteKind.PUT

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at, "peer": self.peer, "key": self.key, "kind": self.kind.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Write:
        return cls(float(d["at"]), int(d["peer"]), str(d["key"]), WriteKind(d["kind"]))


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault event.  `peers` names who it concerns; `groups` a partition's sides."""

    at: float
    kind: FaultKind
    peers: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "kind": self.kind.value}
        if self.peers:
            out["peers"] = list(self.peers)
        if self.groups:
            out["groups"] = [list(g) for g in self.groups]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Fault:
        return cls(
            float(d["at"]), FaultKind(d["kind"]), tuple(int(p) for p in d.get("peers", ())),
            tuple(tuple(int(p) for p in g) for g in d.get("groups", ())),
        )  # fmt: skip

    def describe(self) -> str:
        who = ""
        if self.groups:
            who = " into groups of " + ", ".join(str(len(g)) for g in self.groups)
        elif self.peers:
            names = ", ".join(f"peer{p}" for p in self.peers[:6])
            who = f" {names}" + (f" (+{len(self.peers) - 6})" if len(self.peers) > 6 else "")
        return f"t={self.at:8.3f}s  {self.kind.value}{who}"


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Every setting of a simulation run (defaults: a small, healthy network)."""

    peers: int = 20
    writes: int = 100
    seed: int = 1
    # -- the network
    latency_ms: tuple[float, float] = (5.0, 80.0)
    latency_dist: str = "uniform"  # uniform in latency_ms, or lognormal (5th..95th percentile)
    jitter: float = 0.1
    loss: float = 0.0
    bandwidth: float = 0.0  # bytes/s per connection direction; 0: unlimited
    transport: str = "direct"
    # -- the topic and the nodes
    masters: int = 1
    expiry: float = 3600.0  # seconds an oplog may stay pending
    sync_interval: float = 10.0
    visit_interval: float = 60.0  # a node's visits to a peer it has no link to; 0: none
    push: bool = True
    push_mesh: int = 3  # peers each node picks for its push mesh (0: push to every peer)
    push_every: float = 0.1  # at most one push batch per node this often (seconds)
    announce_every: float = 0.25  # at most one lazy-push announcement per link this often
    max_peers: int = 16
    bootstrap: int = 3  # earlier peers each new peer joins
    skew_ms: float = 0.0  # each peer's clock is off by up to this much, either way
    store: str = "memory"  # the peers' stores: memory (MemoryStore) or sqlite (in memory)
    # -- the workload
    warmup: float = 5.0
    duration: float | None = None  # seconds the writes are spread over (see write_window)
    hot_keys: int = 3  # documents many peers update concurrently ...
    hot: float = 0.2  # ... this fraction of the writes goes to them
    deletes: float = 0.05  # fraction of writes that delete a document
    write_by: str = "any"  # who writes: any peer, masters (valid at once), members (co-signed)
    # -- faults
    partitions: tuple[tuple[float, float], ...] = ()  # (start, end) s: split in two halves
    partition_groups: int = 2
    crashes: int = 0
    down: tuple[float, float] = (5.0, 30.0)  # seconds a crashed peer stays down
    churn: int = 0  # peers that leave for good, and as many new ones that join
    late: int = 0  # admitted peers that start only after the writes
    late_at: float | None = None  # when they start (default: 10 s after the writes)
    masters_offline: tuple[float, float] | None = None  # (start, end) s: every master down
    # -- the run
    max_wait: float = 900.0  # virtual seconds to wait for convergence after the last event
    hold: float = 0.0  # virtual seconds the converged network runs on idle before the checks
    sample_every: float = 1.0  # virtual seconds between timeline samples
    ramp: float = 2.0  # seconds over which the initial peers start
    jobs: int = 1  # processes the run is split across (parts.py): 1 or 2

    def __post_init__(self) -> None:
        """Raises UsageError for a setting out of range (the message names it)."""
        _check(1 <= self.peers <= MAX_PEERS, f"peers must be 1..{MAX_PEERS}")
        _check(0 <= self.writes <= MAX_WRITES, f"writes must be 0..{MAX_WRITES:,}")
        _check(type(self.seed) is int, "seed must be an integer")
        _check(1 <= self.masters <= min(self.peers, 64), "masters must be 1..min(peers, 64)")
        _check(60 <= self.expiry <= 30 * 86400, "expiry must be 60 s .. 30 days")
        _check(0.01 <= self.sync_interval <= 3600, "sync interval must be 0.01..3600 s")
        _check(
            self.visit_interval == 0 or 0.01 <= self.visit_interval <= 86400,
            "visit interval must be 0 (no visits) or 0.01..86400 s",
        )
        _check(1 <= self.max_peers <= 1024, "max peers must be 1..1024")
        _check(0 <= self.push_mesh <= 1024, "push mesh must be 0..1024")
        _check(0 <= self.push_every <= 60, "push interval must be 0..60 s")
        _check(0 <= self.announce_every <= 60, "announcement interval must be 0..60 s")
        _check(0 <= self.bootstrap <= 64, "bootstrap must be 0..64")
        _check(0 <= self.skew_ms <= 600_000, "clock skew must be 0..600000 ms")
        _check(self.store in STORES, f"store must be one of {', '.join(STORES)}")
        _check(self.transport in TRANSPORTS, f"transport must be one of {', '.join(TRANSPORTS)}")
        _check(
            0 <= self.warmup <= 86400 and (self.duration is None or 0 <= self.duration <= 86400),
            "the warm-up and the duration must be 0..86400 s",
        )
        _check(0 <= self.hot <= 1 and 0 <= self.deletes <= 1, "hot and deletes are fractions")
        _check(0 <= self.hot_keys <= 1000, "hot keys must be 0..1000")
        _check(self.write_by in WRITERS, f"write-by must be one of {', '.join(WRITERS)}")
        _check(
            self.write_by != "members" or self.peers > self.masters or self.writes == 0,
            "write-by members needs a peer that is not a master",
        )
        _check(2 <= self.partition_groups <= 16, "partition groups must be 2..16")
        for start, end in self.partitions:
            _check(0 <= start < end <= 10 * 86400, f"bad partition {start}:{end} (start < end)")
        _check(0 <= self.crashes <= 100_000 and 0 <= self.churn <= self.peers, "bad crashes/churn")
        _check(0 <= self.down[0] <= self.down[1] <= 86400, "down must be lo:hi seconds")
        _check(0 <= self.late < MAX_PEERS, "bad late")
        if self.masters_offline is not None:
            start, end = self.masters_offline
            _check(0 <= start < end <= 10 * 86400, "masters offline must be start:end, start < end")
        _check(0 < self.max_wait <= 30 * 86400, "max wait must be positive")
        _check(0 <= self.hold <= 86400, "hold must be 0..86400 s")
        _check(0.01 <= self.sample_every <= 3600, "sample interval must be 0.01..3600 s")
        _check(0 <= self.ramp <= 3600, "ramp must be 0..3600 s")
        _check(self.jobs in (1, 2), "jobs must be 1 or 2")
        self.link_model()  # checks latency, jitter, loss and bandwidth

    def write_window(self) -> tuple[float, float]:
        """When the writes happen: `duration` seconds from `warmup`.  With no duration
        given, 30 s, or until the last partition or masters' outage ends, if later."""
        if self.duration is not None:
            return self.warmup, self.warmup + self.duration
        ends = [end for _, end in self.partitions]
        if self.masters_offline is not None:
            ends.append(self.masters_offline[1])
        return self.warmup, max([self.warmup + 30.0, *ends])

    def link_model(self) -> LinkModel:
        lo, hi = self.latency_ms
        return LinkModel(
            latency=(lo / 1000, hi / 1000), distribution=self.latency_dist,
            jitter=self.jitter, loss=self.loss,
            bandwidth=self.bandwidth,
        )  # fmt: skip

    def replace(self, **changes: Any) -> SimConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: object) -> SimConfig:
        """The config `to_json` wrote (UsageError for anything else)."""
        if not isinstance(data, dict):
            raise UsageError("a simulation config is a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise UsageError(f"unknown simulation setting {unknown[0]!r}")
        values = dict(data)
        for name in ("latency_ms", "down", "masters_offline"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        if isinstance(values.get("partitions"), list):
            values["partitions"] = tuple(tuple(p) for p in values["partitions"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise UsageError(f"bad simulation config: {exc}") from None


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything a run will do, in time order."""

    writes: tuple[Write, ...]
    faults: tuple[Fault, ...]
    initial: int  # peers 0..initial-1 exist from the start (late joiners included)
    late: tuple[int, ...]  # of those, the ones that start late

    @property
    def last_event(self) -> float:
        times = [w.at for w in self.writes] + [f.at for f in self.faults]
        return max(times, default=0.0)

    def partitions(self) -> list[tuple[float, float, tuple[tuple[int, ...], ...]]]:
        """Each partition's start, end (its heal's time; inf if none) and groups."""
        heals = [h for h in self.faults if h.kind is FaultKind.HEAL]
        out = []
        for f in self.faults:
            if f.kind is FaultKind.PARTITION:
                ends = [h.at for h in heals if h.groups == f.groups and h.at > f.at]
                out.append((f.at, min(ends, default=math.inf), f.groups))
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "late": list(self.late),
            "writes": [w.to_json() for w in self.writes],
            "faults": [f.to_json() for f in self.faults],
        }

    @classmethod
    def from_json(cls, data: object) -> Plan:
        """The plan `to_json` wrote (UsageError for anything else)."""
        try:
            assert isinstance(data, dict)
            faults = sorted(
                (Fault.from_json(f) for f in data["faults"]),
                key=lambda f: (f.at, f.kind.value, f.peers),
            )
            return cls(
                tuple(Write.from_json(w) for w in data["writes"]),
                tuple(faults),
                int(data["initial"]),
                tuple(int(p) for p in data["late"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"not a simulation plan: {exc!r}") from None


def make_plan(cfg: SimConfig) -> Plan:
    """The writes and faults of a run, drawn from `cfg.seed` alone."""
    rng = random.Random(f"pttsync-sim/{cfg.seed}/plan")
    initial = cfg.peers + cfg.late
    masters = list(range(cfg.masters))
    late = tuple(range(cfg.peers, initial))
    start, end = cfg.write_window()
    faults: list[Fault] = []

    # Peers that may be hit by crashes and churn: not masters (their own fault kind).
    plain = [p for p in range(cfg.peers) if p not in masters]
    leaving = rng.sample(plain, min(cfg.churn, len(plain)))
    for i, peer in enumerate(leaving):
        faults.append(Fault(rng.uniform(start, max(start, end)), FaultKind.LEAVE, (peer,)))
        joiner = initial + i
        faults.append(Fault(rng.uniform(start, max(start, end)), FaultKind.JOIN, (joiner,)))
    late_at = cfg.late_at if cfg.late_at is not None else end + 10.0
    if late:
        faults.append(Fault(late_at, FaultKind.JOIN, late))

    crashable = [p for p in plain if p not in leaving]
    for _ in range(cfg.crashes if crashable else 0):
        peer = rng.choice(crashable)
        at = rng.uniform(start, max(start, end))
        faults.append(Fault(at, FaultKind.CRASH, (peer,)))
        faults.append(Fault(at + rng.uniform(*cfg.down), FaultKind.RESTART, (peer,)))

    everyone = list(range(initial + len(leaving)))
    for p_start, p_end in cfg.partitions:
        order = list(everyone)
        rng.shuffle(order)
        k = cfg.partition_groups
        groups = tuple(tuple(sorted(order[i::k])) for i in range(k))
        faults.append(Fault(p_start, FaultKind.PARTITION, groups=groups))
        faults.append(Fault(p_end, FaultKind.HEAL, groups=groups))

    if cfg.masters_offline is not None:
        m_start, m_end = cfg.masters_offline
        faults.append(Fault(m_start, FaultKind.MASTERS_DOWN, tuple(masters)))
        faults.append(Fault(m_end, FaultKind.MASTERS_UP, tuple(masters)))

    writes = _workload(cfg, rng, start, end)
    faults.sort(key=lambda f: (f.at, f.kind.value, f.peers))
    return Plan(tuple(writes), tuple(faults), initial, late)


def _workload(cfg: SimConfig, rng: random.Random, start: float, end: float) -> list[Write]:
    """Writes on random peers: some on a few hot documents (concurrent updates), the rest
    on documents of their own; a few deletes."""
    times = sorted(rng.uniform(start, end) for _ in range(cfg.writes))
    writes = []
    writers = {
        "any": range(cfg.peers),
        "masters": range(cfg.masters),
        "members": range(cfg.masters, cfg.peers),
    }[cfg.write_by]
    for n, at in enumerate(times):
        peer = writers[rng.randrange(len(writers))]
        if cfg.hot_keys and rng.random() < cfg.hot:
            key = f"hot/{rng.randrange(cfg.hot_keys)}"
        else:
            key = f"doc/{n:07d}"
        kind = WriteKind.DELETE if rng.random() < cfg.deletes else WriteKind.PUT
        writes.append(Write(at, peer, key, kind))
    return writes


def epidemic_rounds(n: int) -> float:
    """The push-pull epidemic bound log3(N) + ln ln(N) (Karp et al.), in rounds."""
    if n < 3:
        return 1.0
    return math.log(n, 3) + math.log(math.log(n))
