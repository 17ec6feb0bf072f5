"""The PIP-11 sync messages: frozen dataclasses, their fields and their limits.

Their versioned, canonical CBOR form is msgcodec.py's.  Every message is one
CBOR map in one frame (frames.py):

    {"v": 1, "t": <type>, "tp": topic ID, "r": round ID, "s": seq, ...fields}

* `r` names the sync round (16 bytes chosen by the requester); a message of
  another round is stale or replayed.
* `s` is the request's sequence number.  Requests from the requester carry
  increasing numbers; every reply carries the number of the request it
  answers, and the last message of a reply has `last` set.

docs/pip-11/sync.md has the table of messages and fields.  Decoding is
strict: an unknown type or field, a wrong type, an out-of-range value, a
list over its limit or a non-canonical encoding raises RemoteProtocolError,
since only a peer can send us a bad message.  Oplog records inside a message
stay encoded here; HandleOplogs decodes and verifies them one by one, so one
bad record is rejected on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from ..merkle import Leaf, Level

PROTOCOL_VERSION = 2  # 2: fingerprints, child bitmaps, flat leaf lists (fingerprint.py)
ROUND_ID_SIZE = 16

# Per-message limits; the frame limit bounds the total as well.
MAX_LIST_NODES = 512  # a tree list: ~300 years, 11 months, 30 days, 23 hours at most
MAX_ITEMS = 512  # nodes compared in one ForceSyncOplogByMerkle(Ack)
MAX_ITEM_CHILDREN = 64  # a node has at most 31 children; slices 16
MAX_ITEM_LEAVES = 2048  # an unsplit bucket lists <= 32 leaves, more only within 16 ns
MAX_LEAVES = 2048  # leaves in one SyncOplogAck chunk
MAX_WANT = 4096  # leaves asked for in one request (SyncConfig.want_per_request)
MAX_WANT_RANGES = 256  # time ranges asked for in one message
MAX_WANT_NODES = 512  # nodes whose leaves are asked for by fingerprint in one message
MAX_OPLOGS = 4096  # records in one message (the frame limit usually binds first)
MAX_REASON = 200

LIST_SEGMENTS = 4  # a tree list's years, months, days and hours
WINDOW_NODES = 1 << LIST_SEGMENTS  # SyncOplogAck.list_differs: window hours in `nodes`

Key = tuple[int, bytes]
"""A leaf key: (update time, oplog ID)."""

Mark = tuple[int, bytes]
"""A listed leaf: (update time, fingerprint of its hash) (fingerprint.py)."""


class MsgType(IntEnum):
    SYNC_OPLOG = 1
    SYNC_OPLOG_ACK = 2
    SYNC_OPLOG_NEW_OPLOGS = 3
    SYNC_OPLOG_NEW_OPLOGS_ACK = 4
    FORCE_SYNC_OPLOG_BY_MERKLE = 5
    FORCE_SYNC_OPLOG_BY_MERKLE_ACK = 6
    FORCE_SYNC_OPLOG_BY_OPLOG_ACK = 7
    SYNC_PENDING_OPLOG = 8
    SYNC_PENDING_OPLOG_ACK = 9
    SYNC_OPLOG_REJECT = 10


class RejectCode(IntEnum):
    UNKNOWN_TOPIC = 1  # the receiver does not hold this topic
    BUSY = 2  # the receiver is serving too many rounds; try later
    PROTOCOL = 3  # the receiver found a protocol violation and ends the round


@dataclass(frozen=True, slots=True)
class ListNode:
    """One node of a tree list: a calendar node (depth 0); on the wire, `hash` is a fingerprint."""

    level: Level
    start: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class ChildRef:
    """A child node in an Item: its level and depth follow from the parent's."""

    start: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Item:
    """The sender's view of one node: its hash and its direct children.

    `hash` is None when the sender holds nothing in the node's range (then
    `children` is empty).  `children` are ChildRefs (the node is split into
    child nodes) or its leaves (`leaf_children`: the node is an unsplit hour
    or slice, PIP-11's "parent level is hour", or holds so few leaves that
    they are sent flat).  On the wire the hashes are fingerprints of one
    width, the length of `hash` (fingerprint.py), and leaves are their
    fingerprints (bytes); a local view holds full hashes and Leaf objects.
    """

    level: Level
    depth: int
    start: int
    hash: bytes | None
    leaf_children: bool
    children: tuple[ChildRef, ...] | tuple[Leaf, ...] | tuple[bytes, ...]

    @property
    def ref(self) -> tuple[int, int, int]:
        return (self.level, self.depth, self.start)


@dataclass(frozen=True, slots=True)
class FpWant:
    """The leaves of one node that the sender lacks, named by fingerprint.

    `fps` is the fingerprints, `width` bytes each, concatenated; the holder
    answers with the records of its leaves in the node that match.
    """

    level: Level
    depth: int
    start: int
    width: int
    fps: bytes


@dataclass(frozen=True, slots=True)
class Message:
    TYPE: ClassVar[MsgType]
    topic: bytes
    round: bytes
    seq: int


@dataclass(frozen=True, slots=True)
class SyncOplog(Message):
    """Requester -> receiver: my to-sync-time and digests of my tree list and window."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG
    to_sync_time: int
    list_digest: bytes  # the list's digest, then its years', months', days', hours' (syncview)
    window_digest: bytes
    pending: bool  # I hold pending oplogs that you may sign


@dataclass(frozen=True, slots=True)
class SyncOplogAck(Message):
    """Receiver -> requester: the parts of my tree list that differ, and my window.

    `list_differs` is a bit mask: bit i (LIST_SEGMENTS) set means segment i of
    the tree list differs and `nodes` holds my nodes of it; WINDOW_NODES set
    means my window is too dense to list and `nodes` also holds my window's
    hour nodes, to be compared and descended like the list.

    A listing chunk covers the keys in [lo, hi) (hi None: up to the end of
    time).  `more` means the listing stopped at `hi` and continues on request.
    """

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG_ACK
    list_differs: int
    nodes: tuple[ListNode, ...]
    lo: Key | None
    hi: Key | None
    leaves: tuple[Mark, ...]  # the window's leaves in [lo, hi), as marks
    more: bool
    pending: bool
    last: bool


@dataclass(frozen=True, slots=True)
class SyncOplogNewOplogs(Message):
    """Requester -> receiver: oplogs you lack, what I want (by fingerprint or range)."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG_NEW_OPLOGS
    oplogs: tuple[bytes, ...]
    want_fps: tuple[FpWant, ...]  # leaves of a node, by fingerprint, from a descent
    want_ranges: tuple[tuple[int, int, Key], ...]  # [start, end) from a key, in time order
    cont: Key | None  # continue the window listing from this key


@dataclass(frozen=True, slots=True)
class SyncOplogNewOplogsAck(Message):
    """Receiver -> requester: the oplogs asked for; `next` continues a range."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG_NEW_OPLOGS_ACK
    oplogs: tuple[bytes, ...]
    next: Key | None
    last: bool


@dataclass(frozen=True, slots=True)
class ForceSyncOplogByMerkle(Message):
    """Requester -> receiver: my children of nodes whose hashes differ."""

    TYPE: ClassVar[MsgType] = MsgType.FORCE_SYNC_OPLOG_BY_MERKLE
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class ForceSyncOplogByMerkleAck(Message):
    """Receiver -> requester: my children of the child nodes that differ, one level down."""

    TYPE: ClassVar[MsgType] = MsgType.FORCE_SYNC_OPLOG_BY_MERKLE_ACK
    items: tuple[Item, ...]
    last: bool


@dataclass(frozen=True, slots=True)
class ForceSyncOplogByOplogAck(Message):
    """Receiver -> requester, at the leaves: the oplogs you lack, and the leaves I want."""

    TYPE: ClassVar[MsgType] = MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK
    oplogs: tuple[bytes, ...]
    want_fps: tuple[FpWant, ...]
    last: bool


@dataclass(frozen=True, slots=True)
class SyncPendingOplog(Message):
    """Requester -> receiver (postsync): pending oplogs the receiver may sign."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_PENDING_OPLOG
    oplogs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SyncPendingOplogAck(Message):
    """Receiver -> requester (postsync): the receiver's pending oplogs, with its signatures."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_PENDING_OPLOG_ACK
    oplogs: tuple[bytes, ...]
    last: bool


@dataclass(frozen=True, slots=True)
class SyncOplogReject(Message):
    """Receiver -> requester: why this round will not be served (never a silent drop)."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG_REJECT
    code: RejectCode
    reason: str


MESSAGE_TYPES: dict[MsgType, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        SyncOplog, SyncOplogAck, SyncOplogNewOplogs, SyncOplogNewOplogsAck,
        ForceSyncOplogByMerkle, ForceSyncOplogByMerkleAck, ForceSyncOplogByOplogAck,
        SyncPendingOplog, SyncPendingOplogAck, SyncOplogReject,
    )
}  # fmt: skip
