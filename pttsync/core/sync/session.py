"""The sync session: what the requester and the receiver share.

A sync round runs between a **requester** (requester.py), which drives it,
and a **receiver** (receiver.py), which only answers.  Both are sans-I/O:
`receive(message, now) -> messages to send`, with the current time passed
in, in the style of h11.  The shell moves the messages (TCP, the simulator's
memory streams, or the in-process driver in localsync.py).

This module holds the configuration, the states, the transition table
(every (role, state, message type) the protocol allows), the counters, and
the helpers both roles use to chunk replies under the frame limit.
docs/pip-11/sync.md describes the flows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, TypeVar

from ...errors import InvalidOplogError, RemoteProtocolError, UsageError
from ..lifecycle.handle import DEFAULT_CLOCK_SKEW, HandleResult, OplogHandler
from ..lifecycle.pending import pending_for_peer
from ..lifecycle.replica import Replica
from ..merkle import SPLIT_THRESHOLD
from ..oplogcodec import encode_oplog
from ..timeutil import HOUR_NS
from .fingerprint import DEFAULT_WIDTH, FLAT_MAX, FULL
from .frames import MAX_FRAME_SIZE
from .messages import (
    MAX_ITEM_LEAVES,
    MAX_LEAVES,
    MAX_OPLOGS,
    MAX_WANT,
    MAX_WANT_NODES,
    FpWant,
    Item,
    Key,
    Message,
    MsgType,
)
from .syncview import WINDOW_SPAN, TreeView

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType

    from ..identity import Identity
    from ..store import Store

T = TypeVar("T")

MAX_BODY = MAX_FRAME_SIZE - 16 * 1024
"""Bytes of records or items put in one message; the rest of a frame is envelope."""


class remote_input:
    """The one boundary where what a peer sent is judged: its errors become its fault.

    Every state machine that remote messages drive (Requester.receive,
    Receiver.receive, the node's pusher) runs each message inside this.  An
    `InvalidOplogError` that escapes the Handle steps (a record of another
    topic refuses its whole message) is the peer's violation and leaves as a
    `RemoteProtocolError` with `penalty`; a RemoteProtocolError passes as it
    is.  Any other exception is a bug of ours and passes unchanged, loudly.
    (A class, not a generator: it is entered once a message.)
    """

    __slots__ = ("penalty",)

    def __init__(self, penalty: int = 10) -> None:
        self.penalty = penalty

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (
            exc is not None
            and isinstance(exc, InvalidOplogError)
            and not isinstance(exc, RemoteProtocolError)
        ):
            raise RemoteProtocolError(str(exc), penalty=self.penalty) from exc


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Tunables of a sync session (docs/pip-11/sync.md gives the reasons)."""

    clock_skew: int = DEFAULT_CLOCK_SKEW  # future tolerance for update times
    sync_offset: int = HOUR_NS  # T = sync time - offset (PIP-11's 1-hour offset)
    max_window: int = 24 * HOUR_NS  # T is never more than this (+ offset) before now
    pipeline: int = 16  # requests the requester keeps in flight
    reply_budget: int = 1024 * 1024  # bytes of oplogs one range reply may carry
    list_chunk: int = 2048  # leaves in one SyncOplogAck chunk
    list_budget: int = 8192  # leaves one reply lists before asking to continue
    want_per_request: int = 512  # leaves asked for (by fingerprint) in one request
    window_list_max: int = 256  # a denser window is compared by its hours, not listed
    leaf_diff_max: int = 1024  # a receiver holding more leaves in a node descends instead
    max_pending_sent: int = 256  # pending oplogs offered in one postsync
    max_queued: int = 1_000_000  # nodes, IDs and ranges queued in one round
    fingerprint: int = DEFAULT_WIDTH  # bytes of each hash a descent compares (fingerprint.py)
    flat_max: int = FLAT_MAX  # a node with at most this many leaves is sent as its leaves

    def __post_init__(self) -> None:
        """Refuse settings a peer's decoder would refuse, or that bound nothing.

        Raises:
            UsageError: a setting is out of its range.
        """
        limits = {
            "clock_skew": (0, 2**62),
            "sync_offset": (0, 2**62),
            "max_window": (0, 2**62),
            "pipeline": (1, 1024),
            "reply_budget": (1, 64 * 1024 * 1024),
            "list_chunk": (1, MAX_LEAVES),
            "list_budget": (1, 10_000_000),
            "want_per_request": (1, MAX_WANT),
            "max_pending_sent": (0, MAX_OPLOGS),
            "max_queued": (1, 100_000_000),
            "window_list_max": (0, 10_000_000),
            "leaf_diff_max": (SPLIT_THRESHOLD, 1_000_000),
            "fingerprint": (1, FULL),
            "flat_max": (0, MAX_ITEM_LEAVES),
        }
        for name, (lo, hi) in limits.items():
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise UsageError(f"SyncConfig.{name} must be an integer in [{lo}, {hi}]")
        # Everything the requester may accept must lie in the window (syncview.WINDOW_SPAN).
        if self.max_window + self.sync_offset + self.clock_skew + HOUR_NS > WINDOW_SPAN:
            raise UsageError(
                "SyncConfig.max_window + sync_offset + clock_skew must leave an hour of the"
                f" {WINDOW_SPAN // HOUR_NS}-hour window"
            )


class Role(Enum):
    REQUESTER = "requester"
    RECEIVER = "receiver"


class State(Enum):
    IDLE = "idle"  # no round (a receiver waiting for SyncOplog)
    SYNCING = "syncing"  # requester: the tree and window comparison is running
    POSTSYNC = "postsync"  # requester: waiting for SyncPendingOplogAck
    SERVING = "serving"  # receiver: answering a round
    DONE = "done"  # requester: the round finished
    FAILED = "failed"  # the round ended with a protocol error or a rejection


_REPLIES = frozenset(
    {
        MsgType.SYNC_OPLOG_ACK,
        MsgType.SYNC_OPLOG_NEW_OPLOGS_ACK,
        MsgType.FORCE_SYNC_OPLOG_BY_MERKLE_ACK,
        MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK,
        MsgType.SYNC_OPLOG_REJECT,
    }
)
_REQUESTS = frozenset(
    {
        MsgType.SYNC_OPLOG_NEW_OPLOGS,
        MsgType.FORCE_SYNC_OPLOG_BY_MERKLE,
        MsgType.SYNC_PENDING_OPLOG,
    }
)

ACCEPTS: dict[tuple[Role, State], frozenset[MsgType]] = {
    (Role.REQUESTER, State.IDLE): frozenset(),
    (Role.REQUESTER, State.SYNCING): _REPLIES,
    (Role.REQUESTER, State.POSTSYNC): frozenset(
        {MsgType.SYNC_PENDING_OPLOG_ACK, MsgType.SYNC_OPLOG_REJECT}
    ),
    (Role.REQUESTER, State.DONE): frozenset(),
    (Role.REQUESTER, State.FAILED): frozenset(),
    (Role.RECEIVER, State.IDLE): frozenset({MsgType.SYNC_OPLOG}),
    (Role.RECEIVER, State.SERVING): _REQUESTS | {MsgType.SYNC_OPLOG},
}
"""The message types each role accepts in each state; anything else is a protocol error."""

REPLY_TYPES: dict[MsgType, frozenset[MsgType]] = {
    MsgType.SYNC_OPLOG: frozenset({MsgType.SYNC_OPLOG_ACK, MsgType.SYNC_OPLOG_REJECT}),
    MsgType.SYNC_OPLOG_NEW_OPLOGS: frozenset(
        {MsgType.SYNC_OPLOG_NEW_OPLOGS_ACK, MsgType.SYNC_OPLOG_ACK, MsgType.SYNC_OPLOG_REJECT}
    ),
    MsgType.FORCE_SYNC_OPLOG_BY_MERKLE: frozenset(
        {
            MsgType.FORCE_SYNC_OPLOG_BY_MERKLE_ACK,
            MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK,
            MsgType.SYNC_OPLOG_REJECT,
        }
    ),
    MsgType.SYNC_PENDING_OPLOG: frozenset(
        {MsgType.SYNC_PENDING_OPLOG_ACK, MsgType.SYNC_OPLOG_REJECT}
    ),
}
"""For each request type, the message types that may answer it."""


def check_accepts(role: Role, state: State, msg: Message) -> None:
    """Raise RemoteProtocolError if `msg` is out of order for (role, state)."""
    if msg.TYPE not in ACCEPTS.get((role, state), frozenset()):
        raise RemoteProtocolError(
            f"{type(msg).__name__} is out of order for a {role.value} in state {state.value}"
        )


@dataclass(slots=True)
class SyncStats:
    """What one side of a session did (counted over all its rounds)."""

    rounds: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    oplogs_sent: int = 0
    oplog_bytes_sent: int = 0
    oplogs_received: int = 0  # records received, before checks
    oplogs_stored: int = 0  # stored as new or as the winning copy
    rejected: int = 0  # records refused as invalid
    collisions: int = 0  # nodes compared again at full width (fingerprint.py)
    changed: int = 0  # nodes whose hash changed on the peer while the round ran
    faults: list[str] = field(default_factory=list)  # why, most recent last (bounded)

    def count_sent(self, messages: Sequence[Message]) -> None:
        self.messages_sent += len(messages)
        for m in messages:
            oplogs = getattr(m, "oplogs", ())
            self.oplogs_sent += len(oplogs)
            self.oplog_bytes_sent += sum(len(o) for o in oplogs)

    def count_handled(self, received: int, result: HandleResult) -> None:
        self.oplogs_received += received
        self.oplogs_stored += len(result.stored)
        self.rejected += len(result.rejected)
        self.faults = (self.faults + result.rejected)[-32:]


class SyncContext:
    """One topic of one store, as every session of that topic sees it.

    `identity` is this peer's key: with it, postsync co-signs the pending
    oplogs this peer is a signer of.  `replica` may be shared with the
    document layer and other sessions of the topic; one is made if not given.
    """

    def __init__(
        self,
        store: Store,
        topic_id: bytes,
        *,
        config: SyncConfig | None = None,
        handler: OplogHandler | None = None,
        replica: Replica | None = None,
        identity: Identity | None = None,
    ) -> None:
        self.store = store
        self.topic_id = topic_id
        self.config = config or SyncConfig()
        self.view = TreeView(store, topic_id)
        if handler is not None:
            replica = handler.replica
        elif replica is None:
            replica = Replica(store, topic_id, identity=identity)
        self.replica = replica
        self.handler = handler or OplogHandler(
            store, topic_id, clock_skew=self.config.clock_skew, replica=replica
        )

    def has_pending(self) -> bool:
        return self.store.has_pending(self.topic_id)

    def pending_for_peer(self, peer: bytes, now: int) -> list[bytes]:
        """Postsync's offer to `peer`: the pending oplogs it can sign, encoded."""
        oplogs = pending_for_peer(self.replica, peer, now, self.config.max_pending_sent)
        return [encode_oplog(o) for o in oplogs]

    def handle_pending(self, raw: Sequence[bytes], now: int) -> HandleResult:
        """HandlePendingOplogs on records from the peer (OplogHandler.handle_pending_oplogs)."""
        return self.handler.handle_pending_oplogs(raw, now)

    def handle_failed(self, now: int) -> int:
        """HandleFailedOplogs: the number of expired oplogs rolled back."""
        return len(self.handler.handle_failed_oplogs(now).failed)


def _pack(
    values: Iterable[T], cost: Callable[[T], int], limit: int, max_count: int
) -> list[list[T]]:
    """Group values, in order, into lists of at most `limit` cost and `max_count` values."""
    groups: list[list[T]] = [[]]
    size = 0
    for value in values:
        c = cost(value)
        if groups[-1] and (size + c > limit or len(groups[-1]) >= max_count):
            groups.append([])
            size = 0
        groups[-1].append(value)
        size += c
    return [g for g in groups if g]


RANGE_COST = 64
"""A time range asked for (or a continuation key), encoded: an upper bound."""


def record_cost(body: bytes) -> int:
    """What an encoded record adds to a message: its bytes and their CBOR header."""
    return len(body) + 5


def pack_bodies(bodies: Iterable[bytes], limit: int = MAX_BODY) -> list[list[bytes]]:
    """Group encoded records into lists that each fit in one message."""
    return _pack(bodies, record_cost, limit, MAX_OPLOGS)


def want_cost(want: FpWant) -> int:
    """What a want by fingerprint adds to a message, encoded (an upper bound)."""
    return len(want.fps) + 40


def pack_with_wants(
    bodies: Sequence[bytes], wants: Sequence[FpWant]
) -> list[tuple[list[bytes], list[FpWant]]]:
    """Records and wants by fingerprint, paired into messages that each fit in a frame.

    Wants go up to MAX_WANT_NODES (and half of MAX_BODY) to a message; the
    records of a message that carries wants fill only what they leave.
    """
    groups = _pack(wants, want_cost, MAX_BODY // 2, MAX_WANT_NODES)
    room = MAX_BODY - max((sum(want_cost(w) for w in g) for g in groups), default=0)
    packed = pack_bodies(bodies, room)
    n = max(len(packed), len(groups))
    packed += [[] for _ in range(n - len(packed))]
    groups += [[] for _ in range(n - len(groups))]
    return list(zip(packed, groups, strict=True))


def item_size(item: Item) -> int:
    """An upper bound of an item's encoded size (as sent: fingerprinted)."""
    width = len(item.hash) if item.hash is not None else FULL
    return 64 + len(item.children) * width


def pack_items(items: Iterable[Item], max_items: int, limit: int = MAX_BODY) -> list[list[Item]]:
    """Group items into lists that each fit in one message."""
    return _pack(items, item_size, limit, max_items)


def read_range(
    store: Store, topic_id: bytes, lo: Key, end: int, room: int, *, take_one: bool
) -> tuple[list[bytes], int, Key | None]:
    """Records of the valid oplogs with key >= `lo` and time < `end`, in key order.

    Takes records while their cost (`record_cost`) fits in `room` bytes; with
    `take_one` the first is taken even if it does not fit, so a caller always
    makes progress.  Returns the records, their cost, and the key to go on
    from (None: the range is done).
    """
    out: list[bytes] = []
    size = 0
    while True:
        leaves = store.leaves_from(topic_id, lo, end, _READ + 1)
        bodies = store.bodies(topic_id, [x.oplog_id for x in leaves[:_READ]])
        for leaf in leaves[:_READ]:
            body = bodies.get(leaf.oplog_id)
            if body is None:
                continue  # replaced or deleted since the leaf was read
            if size + record_cost(body) > room and (out or not take_one):
                return out, size, leaf.key
            out.append(body)
            size += record_cost(body)
        if len(leaves) <= _READ:
            return out, size, None
        lo = leaves[_READ].key


_READ = 256  # leaves read from the store at a time
