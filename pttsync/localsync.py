"""Sync two stores in one process, through the real session code and wire format.

`sync_local` is what `pttsync sync --local A B` runs, and what the tests and
tools/bench_sync.py use: a Requester on store A and a Receiver on store B
exchange messages in *flights* (everything one side has to send, then
everything the other answers).  Every message is encoded, framed, and
decoded again on the way, so the byte counts are the real wire sizes and
the decoder sees exactly what a peer would send.

A round trip is one flight from the requester plus the flight answering it.
`cut_after` drops every message after the first n of a round, which is how
the tests interrupt a session at every message boundary.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .core.sync.frames import FrameReader, encode_frame
from .core.sync.msgcodec import decode_message, encode_message
from .core.sync.receiver import Receiver
from .core.sync.requester import Requester
from .core.sync.session import State, SyncConfig, SyncContext
from .errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .core.lifecycle.replica import Replica
    from .core.store import Store
    from .core.sync.messages import Message

log = logging.getLogger(__name__)

DEFAULT_MAX_ROUNDS = 8


@dataclass(slots=True)
class RoundReport:
    round_trips: int = 0
    messages: int = 0
    bytes_sent: int = 0  # requester -> receiver, framed
    bytes_received: int = 0  # receiver -> requester, framed
    oplogs_sent: int = 0
    oplogs_received: int = 0
    oplog_bytes: int = 0  # encoded records, both ways
    completed: bool = False
    bytes_by_type: dict[str, int] = field(default_factory=dict)  # framed, by message type


@dataclass(slots=True)
class LocalSyncReport:
    """The outcome of `sync_local` (the JSON of `pttsync sync --local`)."""

    rounds: list[RoundReport] = field(default_factory=list)
    digest_a: str = ""
    digest_b: str = ""
    converged: bool = False
    rejected: int = 0  # records refused as invalid, both sides

    def totals(self) -> dict[str, int]:
        keys = ("round_trips", "messages", "bytes_sent", "bytes_received")
        out = {k: sum(getattr(r, k) for r in self.rounds) for k in keys}
        out.update(
            oplogs_sent=sum(r.oplogs_sent for r in self.rounds),
            oplogs_received=sum(r.oplogs_received for r in self.rounds),
            oplog_bytes=sum(r.oplog_bytes for r in self.rounds),
        )
        return out

    def as_json(self) -> dict[str, Any]:
        t = self.totals()
        return {
            "converged": self.converged,
            "rounds": len(self.rounds),
            "round_trips": t["round_trips"],
            "messages": t["messages"],
            "bytes_a_to_b": t["bytes_sent"],
            "bytes_b_to_a": t["bytes_received"],
            "oplogs_sent": t["oplogs_sent"],
            "oplogs_received": t["oplogs_received"],
            "oplog_bytes": t["oplog_bytes"],
            "rejected": self.rejected,
            "digest_a": self.digest_a,
            "digest_b": self.digest_b,
            "per_round": [asdict(r) for r in self.rounds],
        }


class _Wire:
    """One direction of the in-process link: frames, then decodes, every message."""

    def __init__(self) -> None:
        self.reader = FrameReader()

    def carry(self, msg: Message) -> tuple[Message, int, int]:
        """(the message as the far side decodes it, framed bytes, record bytes)."""
        frame = encode_frame(encode_message(msg))
        self.reader.feed(frame)
        payload = self.reader.next_frame()
        assert payload is not None
        oplog_bytes = sum(len(o) for o in getattr(msg, "oplogs", ()))
        return decode_message(payload), len(frame), oplog_bytes


def round_id(seed: bytes, n: int) -> bytes:
    """A deterministic 16-byte round ID (the network uses random ones)."""
    return hashlib.sha256(seed + n.to_bytes(8, "big")).digest()[:16]


def run_round(
    requester: Requester,
    receiver: Receiver,
    now: int,
    rid: bytes,
    *,
    cut_after: int | None = None,
    progress: Callable[[RoundReport], None] | None = None,
) -> RoundReport:
    """One sync round, flight by flight; stops early after `cut_after` messages.

    `progress(report)` is called after every round trip with the round so far.
    """
    report = RoundReport()
    to_b, to_a = _Wire(), _Wire()
    outgoing = requester.start(now, rid)
    delivered = 0

    def deliver(
        msgs: list[Message], wire: _Wire, side: Requester | Receiver
    ) -> list[Message] | None:
        nonlocal delivered
        replies: list[Message] = []
        for m in msgs:
            if cut_after is not None and delivered >= cut_after:
                return None
            decoded, size, oplog_bytes = wire.carry(m)
            delivered += 1
            report.messages += 1
            report.oplog_bytes += oplog_bytes
            kind = type(m).__name__
            report.bytes_by_type[kind] = report.bytes_by_type.get(kind, 0) + size
            n = len(getattr(m, "oplogs", ()))
            if side is receiver:
                report.bytes_sent += size
                report.oplogs_sent += n
            else:
                report.bytes_received += size
                report.oplogs_received += n
            replies += side.receive(decoded, now)
        return replies

    while outgoing:
        report.round_trips += 1
        answers = deliver(outgoing, to_b, receiver)
        got = None if answers is None else deliver(answers, to_a, requester)
        if got is None:
            requester.abort()
            return report
        outgoing = got
        if progress is not None:
            progress(report)
    report.completed = requester.state is State.DONE
    return report


def sync_local(
    store_a: Store,
    store_b: Store,
    topic_id: bytes,
    *,
    peer_a: bytes,
    peer_b: bytes,
    now: int,
    config: SyncConfig | None = None,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    progress: Callable[[int, RoundReport], None] | None = None,
    replica_a: Replica | None = None,
    replica_b: Replica | None = None,
) -> LocalSyncReport:
    """Run rounds (A requests, B answers) until both digests agree or `max_rounds` ran.

    `progress(round number, round so far)` is called after every round trip.
    Give a side's `Replica` (the one its DocumentStore watches, holding its
    identity) to have that side co-sign in postsync and report its changes.
    """
    for store, replica in ((store_a, replica_a), (store_b, replica_b)):
        if replica is not None and replica.store is not store:
            raise UsageError("a replica given to sync_local must be over that side's store")
    ctx_a = SyncContext(store_a, topic_id, config=config, replica=replica_a)
    ctx_b = SyncContext(store_b, topic_id, config=config, replica=replica_b)
    requester, receiver = Requester(ctx_a, peer_b), Receiver(ctx_b, peer_a)
    report = LocalSyncReport()
    for n in range(max_rounds):
        step = None if progress is None else functools.partial(progress, n + 1)
        rr = run_round(requester, receiver, now, round_id(peer_a + peer_b, n), progress=step)
        report.rounds.append(rr)
        log.info("round %d: %d round trips, %d messages", n + 1, rr.round_trips, rr.messages)
        if ctx_a.view.tree.digest() == ctx_b.view.tree.digest() and rr.completed:
            break
    report.digest_a = ctx_a.view.tree.digest().hex()
    report.digest_b = ctx_b.view.tree.digest().hex()
    report.converged = report.digest_a == report.digest_b
    report.rejected = requester.stats.rejected + receiver.stats.rejected
    return report
