"""What the simulation watches: per-peer probes, the timeline, bounds and convergence.

A `Probe` is one more observer on a peer's replica (the same hook the
document layer uses): after each commit it notes the time, marks the peer's
digest stale, and records the first time each acknowledged write became
valid there.  Nothing in the node knows it is watched.

`Watch` samples every live peer each `sample_every` virtual seconds: the
digest (recomputed only for peers that committed since), the pending count,
and how full each bounded structure is.  From the samples come the timeline
(how many peers agree, per second), the maxima checked by the bounds
invariant, and the moment of convergence.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ..core.lifecycle.handle import MAX_WAITING
from ..core.oplog import OplogStatus
from ..core.store.memory import MemoryStore
from ..net.addressbook import DEFAULT_MAX_ENTRIES
from ..net.door import MAX_VISITS
from .plan import FaultKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..core.lifecycle.replica import Commit
    from ..core.store.protocol import Store
    from ..net.node import Node
    from .plan import Fault


@dataclass(slots=True)
class WriteTrack:
    """One acknowledged write: where and when it became valid."""

    oplog_id: bytes
    peer: int
    key: str
    at: float  # when the write was acknowledged (virtual s)
    pending: bool  # acknowledged as pending (a member's write, to be co-signed)
    reached: int = 0  # bitmap of the peers that have held it valid
    last_reach: float = 0.0  # when the last of them first did

    def reach(self, peer: int, now: float) -> None:
        bit = 1 << peer
        if not self.reached & bit:
            self.reached |= bit
            self.last_reach = now


class Probe:
    """A replica observer for one peer (see the module text)."""

    def __init__(
        self,
        peer: int,
        tracks: dict[bytes, WriteTrack],
        foreign: dict[bytes, WriteTrack] | None = None,
    ) -> None:
        self.peer = peer
        self.tracks = tracks
        # In a split run (parts.py): where the other process's writes reached this one's
        # peers, by oplog ID (the writes are tracked where they were made).
        self.foreign = foreign
        self.dirty = True
        self.last_change = 0.0

    def before_commit(self, commit: Commit) -> None:
        pass

    def after_commit(self, commit: Commit) -> None:
        if not commit.stored and not commit.failed:
            return
        now = trio.current_time()
        self.dirty = True
        self.last_change = now
        tracks = self.tracks
        for oplog, _old, new in commit.stored:
            if new is OplogStatus.VALID:
                track = tracks.get(oplog.oplog_id)
                if track is not None:
                    track.reach(self.peer, now)
                elif self.foreign is not None:
                    self._foreign(oplog.oplog_id, now)

    def _foreign(self, oplog_id: bytes, now: float) -> None:
        assert self.foreign is not None
        track = self.foreign.get(oplog_id)
        if track is None:
            track = self.foreign[oplog_id] = WriteTrack(oplog_id, -1, "", 0.0, False)
        track.reach(self.peer, now)


def tree_state(store: Store, topic_id: bytes) -> bytes:
    """What the timeline tells peers apart by: equal exactly when their digests are.

    A `MemoryStore`'s fingerprint (its leaves' hashes summed, kept as they
    change), else the digest.  A digest brings the tree's nodes up to date
    first, which a node does only when it syncs: read for a thousand peers
    once a virtual second, it cost 4% of the default run.
    """
    if isinstance(store, MemoryStore):
        fingerprint = store.fingerprint(topic_id)
        return fingerprint.to_bytes((fingerprint.bit_length() + 7) // 8)
    return store.tree(topic_id).digest()


@dataclass(slots=True)
class PeerSample:
    """The last sample of one peer."""

    digest: bytes = b""
    pending: int = 0
    valid: int = 0


# The bounded structures of a node, with each one's limit.
BOUNDS = (
    "links",
    "visits",
    "send_queue",
    "push_queue",
    "seen_cache",
    "waiting",
    "sessions",
    "address_book",
)


def bounds_of(node: Node) -> dict[str, tuple[int, int]]:
    """(in use, limit) of every bounded structure of a running node."""
    cfg = node.config
    send = max((ln._send.statistics().current_buffer_used for ln in node.links.values()), default=0)
    out = {
        "links": (len(node.links), cfg.max_peers),
        "send_queue": (send, cfg.send_queue),
        "address_book": (len(node.book), DEFAULT_MAX_ENTRIES),
        "push_queue": (0, cfg.push_queue),
        "seen_cache": (0, cfg.seen_cache),
        "waiting": (0, MAX_WAITING),
        # A visit holds sessions too: MAX_VISITS taken, and one of its own.
        "visits": (len(node.connections.visits), MAX_VISITS + 1),
        "sessions": (0, 2 * (cfg.max_peers + MAX_VISITS + 1)),
    }
    for rt in node.topics.values():
        for name, used in (
            ("push_queue", rt.pusher.queued()),
            ("seen_cache", len(rt.seen)),
            ("waiting", rt.ctx.handler.waiting),
            ("sessions", len(rt.requesters) + len(rt.receivers)),
        ):
            out[name] = (max(out[name][0], used), out[name][1])
    return out


FaultCounts = tuple[int, int, int, int]
"""At a sample: partitions in effect, peers down, masters down in their outage, peers left."""


def fault_counts(peers: Iterable[Any], masters: int, partitions: int) -> FaultCounts:
    """Partitions in effect, peers down, masters down in their outage, peers left: as
    the fault events applied so far left them (what the timeline's `events` lists)."""
    down = masters_down = left = 0
    for peer in peers:
        if peer.state == "down":
            down += 1
            masters_down += peer.index < masters  # only their outage stops masters
        elif peer.state == "left":
            left += 1
    return partitions, down, masters_down, left


MAX_EVENTS = 8  # fault events named in one sample's `events` cell; the rest are counted


@dataclass(slots=True)
class Timeline:
    """One row per sample: when, how many peers are live, and each live peer's digest;
    the faults in effect and the fault events since the sample before."""

    times: list[float] = field(default_factory=list)
    digests: list[dict[int, bytes]] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    writes_done: list[int] = field(default_factory=list)
    faults: list[FaultCounts] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def add(
        self,
        t: float,
        digests: dict[int, bytes],
        messages: int,
        writes: int,
        faults: FaultCounts,
        events: list[Fault],
    ) -> None:
        self.times.append(t)
        self.digests.append(digests)
        self.messages.append(messages)
        self.writes_done.append(writes)
        self.faults.append(faults)
        self.events.append(event_text(events))

    def rows(self, final: bytes) -> list[dict[str, Any]]:
        """Per sample: live peers, peers holding the final digest, distinct digests, ...
        (the columns of the CSV timeline, in order: report.TIMELINE_COLUMNS)."""
        out = []
        for t, ds, msgs, writes, faults, events in zip(
            self.times, self.digests, self.messages, self.writes_done, self.faults,
            self.events, strict=True,
        ):  # fmt: skip
            partitions, down, masters, left = faults
            out.append(
                {
                    "t": round(t, 3),
                    "live": len(ds),
                    "agree_final": sum(1 for d in ds.values() if d == final),
                    "distinct_digests": len(set(ds.values())),
                    "writes_done": writes,
                    "messages": msgs,
                    "partitions": partitions,
                    "down": down,
                    "masters_offline": masters,
                    "left": left,
                    "events": events,
                }
            )
        return out


def event_text(faults: list[Fault]) -> str:
    """Fault events as the `events` column names them: `crash peer3; heal into groups of
    4, 4` (each as in the report's `faults`, without its time), at most MAX_EVENTS."""
    names = [f.describe().removeprefix(f"t={f.at:8.3f}s  ") for f in faults[:MAX_EVENTS]]
    if len(faults) > MAX_EVENTS:
        names.append(f"(+{len(faults) - MAX_EVENTS} more)")
    return "; ".join(names)


def cdf_points(values: list[float], limit: int = 1000) -> list[list[float]]:
    """The empirical CDF of `values` as [value, fraction of values <= it] pairs, at most
    `limit` of them: every value if there are that few, else the values at each
    1/limit-th of the way (nearest rank).  Values rounded to the millisecond."""
    ordered = sorted(values)
    n = len(ordered)
    if n <= limit:
        ranks = [(i, (i + 1) / n) for i in range(n)]
    else:
        ranks = [((k * n + limit - 1) // limit - 1, k / limit) for k in range(1, limit + 1)]
    return [[round(ordered[i], 3), round(frac, 6)] for i, frac in ranks]


def fault_windows(faults: tuple[Fault, ...], end: float) -> dict[str, list[Any]]:
    """When each kind of fault was in effect, from the plan's events (what --plot shades):

    * partitions: [start, end, groups], each cut until its heal;
    * crashes: [start, end, crashes], the union of the intervals when some crashed peer
      was down (a crash lasts until the peer's next restart), with the crashes in each;
    * masters_offline: [start, end], each masters' outage;
    * leaves, joins: the times peers left for good or joined (churn, late joiners).

    An interval with no end in the plan (a shrunk plan may lose a heal) lasts to `end`.
    """
    ordered = sorted(faults, key=lambda f: f.at)

    def until(i: int, kind: FaultKind, peer: int = -1) -> float:
        """When event i ends: the next `kind` event with its groups (and `peer`)."""
        for later in ordered[i + 1 :]:
            if (
                later.kind is kind
                and later.groups == ordered[i].groups
                and (peer < 0 or peer in later.peers)
            ):
                return round(later.at, 6)
        return end

    partitions: list[Any] = []
    downs: list[tuple[float, float]] = []
    masters: list[Any] = []
    for i, f in enumerate(ordered):
        at = round(f.at, 6)
        if f.kind is FaultKind.PARTITION:
            partitions.append([at, until(i, FaultKind.HEAL), len(f.groups)])
        elif f.kind is FaultKind.CRASH:
            downs += [(at, until(i, FaultKind.RESTART, peer)) for peer in f.peers]
        elif f.kind is FaultKind.MASTERS_DOWN:
            masters.append([at, until(i, FaultKind.MASTERS_UP)])
    crashes: list[list[float]] = []
    for start, stop in sorted(downs):
        if crashes and start <= crashes[-1][1]:
            crashes[-1][1] = max(crashes[-1][1], stop)
            crashes[-1][2] += 1
        else:
            crashes.append([start, stop, 1])
    return {
        "partitions": partitions,
        "crashes": crashes,
        "masters_offline": masters,
        "leaves": [round(f.at, 6) for f in ordered if f.kind is FaultKind.LEAVE],
        "joins": [round(f.at, 6) for f in ordered if f.kind is FaultKind.JOIN],
    }


def spread(values: list[int]) -> dict[str, float]:
    """min, median and max of per-peer figures (all 0 for none)."""
    if not values:
        return {"min": 0, "median": 0, "max": 0}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def quantiles(values: list[float]) -> dict[str, float]:
    """median, p99 and max (virtual seconds, rounded to the millisecond), and how many."""
    if not values:
        return {"median": 0.0, "p99": 0.0, "max": 0.0, "writes": 0}
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 3),
        "p99": round(p99, 3),
        "max": round(ordered[-1], 3),
        "writes": len(ordered),
    }
