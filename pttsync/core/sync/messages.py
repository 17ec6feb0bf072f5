"""The PIP-11 sync messages: frozen dataclasses with a versioned, canonical CBOR form.

Every message is one CBOR map in one frame (frames.py):

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

from dataclasses import dataclass, fields
from enum import IntEnum
from typing import Any, ClassVar

from ...errors import RemoteProtocolError, UsageError
from .. import codec
from ..merkle import Leaf, Level
from ..oplog import HASH_SIZE, MAX_OPLOG_SIZE, OPLOG_ID_SIZE, TOPIC_ID_SIZE
from ..timeutil import MAX_TIME
from .frames import MAX_FRAME_SIZE

PROTOCOL_VERSION = 1
ROUND_ID_SIZE = 16

# Per-message limits; the frame limit bounds the total as well.
MAX_LIST_NODES = 512  # a tree list: ~300 years, 11 months, 30 days, 23 hours at most
MAX_ITEMS = 512  # nodes compared in one ForceSyncOplogByMerkle(Ack)
MAX_ITEM_CHILDREN = 64  # a node has at most 31 children; slices 16
MAX_ITEM_LEAVES = 2048  # an unsplit bucket lists <= 32 leaves, more only within 16 ns
MAX_LEAVES = 2048  # leaves in one SyncOplogAck chunk
MAX_WANT = 4096  # oplog IDs asked for in one message
MAX_WANT_RANGES = 256  # time ranges asked for in one message
MAX_OPLOGS = 4096  # records in one message (the frame limit usually binds first)
MAX_REASON = 200

LIST_SEGMENTS = 4  # a tree list's years, months, days and hours
WINDOW_NODES = 1 << LIST_SEGMENTS  # SyncOplogAck.list_differs: window hours in `nodes`

Key = tuple[int, bytes]
"""A leaf key: (update time, oplog ID)."""


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
    """One node of a tree list: a calendar node (depth 0)."""

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
    child nodes) or Leaves (`leaf_children`: the node is an unsplit hour or
    slice, PIP-11's "parent level is hour").
    """

    level: Level
    depth: int
    start: int
    hash: bytes | None
    leaf_children: bool
    children: tuple[ChildRef, ...] | tuple[Leaf, ...]

    @property
    def ref(self) -> tuple[int, int, int]:
        return (self.level, self.depth, self.start)


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
    list_digest: bytes  # four digests: the list's years, months, days, hours (syncview.py)
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
    leaves: tuple[Leaf, ...]
    more: bool
    pending: bool
    last: bool


@dataclass(frozen=True, slots=True)
class SyncOplogNewOplogs(Message):
    """Requester -> receiver: oplogs you lack, the IDs I want, a range I want, more listing."""

    TYPE: ClassVar[MsgType] = MsgType.SYNC_OPLOG_NEW_OPLOGS
    oplogs: tuple[bytes, ...]
    want: tuple[bytes, ...]
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
    """Receiver -> requester, at the leaves: the oplogs you lack, and the IDs I want."""

    TYPE: ClassVar[MsgType] = MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK
    oplogs: tuple[bytes, ...]
    want: tuple[bytes, ...]
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

# Wire keys of each field; the value codecs are chosen by field name below.
_WIRE = {
    "topic": "tp", "round": "r", "seq": "s", "to_sync_time": "T", "list_digest": "ld",
    "window_digest": "wd", "pending": "p", "list_differs": "ldf", "nodes": "n", "lo": "lo",
    "hi": "hi", "leaves": "lv", "more": "m", "last": "z", "oplogs": "o", "want": "w",
    "want_ranges": "wr", "cont": "c", "next": "nx", "items": "i", "code": "cd", "reason": "why",
}  # fmt: skip


# ---------------------------------------------------------------------------
# Encoding.


def _enc_key(k: Key | None) -> object:
    return None if k is None else [k[0], k[1]]


def _enc_leaf(leaf: Leaf) -> list[object]:
    return [leaf.time, leaf.oplog_id, leaf.hash]


def _enc_item(it: Item) -> list[object]:
    kids: list[object] = [
        _enc_leaf(c) if isinstance(c, Leaf) else [c.start, c.hash] for c in it.children
    ]
    return [int(it.level), it.depth, it.start, it.hash, it.leaf_children, kids]


def _enc_value(name: str, v: Any) -> object:
    if name in ("oplogs", "want"):
        return list(v)
    if name == "leaves":
        return [_enc_leaf(leaf) for leaf in v]
    if name == "nodes":
        return [[int(n.level), n.start, n.hash] for n in v]
    if name == "items":
        return [_enc_item(it) for it in v]
    if name in ("lo", "hi", "cont", "next"):
        return _enc_key(v)
    if name == "want_ranges":
        return [[r[0], r[1], _enc_key(r[2])] for r in v]
    if name == "code":
        return int(v)
    return v


def encode_message(msg: Message) -> bytes:
    """The canonical CBOR form of a message (the payload of one frame).

    Raises:
        UsageError: the encoding is over MAX_FRAME_SIZE (callers chunk first).
    """
    m: dict[str, object] = {"v": PROTOCOL_VERSION, "t": int(msg.TYPE)}
    for f in fields(msg):
        m[_WIRE[f.name]] = _enc_value(f.name, getattr(msg, f.name))
    data = codec.dumps(m)
    if len(data) > MAX_FRAME_SIZE:
        raise UsageError(f"{type(msg).__name__} encodes to {len(data)} bytes, over the frame limit")
    return data


# ---------------------------------------------------------------------------
# Decoding.


def _dec_key(v: object, field: str) -> Key | None:
    if v is None:
        return None
    if type(v) is not list or len(v) != 2:
        raise codec.CBORFormatError("a key is [time, oplog ID]", field=field)
    return (
        codec.get_int({field: v[0]}, field, 0, MAX_TIME),
        codec.as_bytes(v[1], field, max_size=OPLOG_ID_SIZE),
    )


def _dec_leaf(v: object, field: str) -> Leaf:
    if type(v) is not list or len(v) != 3:
        raise codec.CBORFormatError("a leaf is [time, oplog ID, hash]", field=field)
    return Leaf(
        codec.get_int({field: v[0]}, field, 0, MAX_TIME),
        codec.as_bytes(v[1], field, size=OPLOG_ID_SIZE),
        codec.as_bytes(v[2], field, size=HASH_SIZE),
    )


def _dec_level(v: object, field: str, lo: Level) -> Level:
    return Level(codec.get_int({field: v}, field, lo, Level.YEAR))


def _dec_item(v: object) -> Item:
    f = "i"
    if type(v) is not list or len(v) != 6:
        raise codec.CBORFormatError(
            "an item is [level, depth, start, hash, leaf?, children]", field=f
        )
    level = _dec_level(v[0], f, Level.SLICE)
    depth = codec.get_int({f: v[1]}, f, 0, 16)
    start = codec.get_int({f: v[2]}, f, 0, MAX_TIME)
    h = None if v[3] is None else codec.as_bytes(v[3], f, size=HASH_SIZE)
    if type(v[4]) is not bool:
        raise codec.CBORFormatError("leaf flag must be a boolean", field=f)
    limit = MAX_ITEM_LEAVES if v[4] else MAX_ITEM_CHILDREN
    kids = codec.get_list({f: v[5]}, f, max_items=limit)
    children: tuple[ChildRef, ...] | tuple[Leaf, ...]
    if v[4]:
        children = tuple(_dec_leaf(k, f) for k in kids)
    else:
        refs = []
        for k in kids:
            if type(k) is not list or len(k) != 2:
                raise codec.CBORFormatError("a child is [start, hash]", field=f)
            refs.append(
                ChildRef(
                    codec.get_int({f: k[0]}, f, 0, MAX_TIME),
                    codec.as_bytes(k[1], f, size=HASH_SIZE),
                )
            )
        children = tuple(refs)
    if h is None and children:
        raise codec.CBORFormatError("an absent node has no children", field=f)
    return Item(level, depth, start, h, v[4], children)


def _dec_oplogs(v: object, field: str) -> tuple[bytes, ...]:
    items = codec.get_list({field: v}, field, max_items=MAX_OPLOGS)
    return tuple(codec.as_bytes(x, field, max_size=MAX_OPLOG_SIZE) for x in items)


def _dec_value(name: str, v: Any, w: str) -> object:
    d = {w: v}
    match name:
        case "topic":
            return codec.get_bytes(d, w, size=TOPIC_ID_SIZE)
        case "round":
            return codec.get_bytes(d, w, size=ROUND_ID_SIZE)
        case "seq":
            return codec.get_int(d, w, 0, 2**63 - 1)
        case "to_sync_time":
            return codec.get_int(d, w, 0, MAX_TIME)
        case "list_digest":
            return codec.get_bytes(d, w, size=HASH_SIZE * LIST_SEGMENTS)
        case "window_digest":
            return codec.get_bytes(d, w, size=HASH_SIZE)
        case "list_differs":
            return codec.get_int(d, w, 0, (WINDOW_NODES << 1) - 1)
        case "pending" | "more" | "last":
            if type(v) is not bool:
                raise codec.CBORFormatError("must be a boolean", field=w)
            return v
        case "nodes":
            out = []
            for n in codec.get_list(d, w, max_items=MAX_LIST_NODES):
                if type(n) is not list or len(n) != 3:
                    raise codec.CBORFormatError("a list node is [level, start, hash]", field=w)
                out.append(
                    ListNode(
                        _dec_level(n[0], w, Level.HOUR),
                        codec.get_int({w: n[1]}, w, 0, MAX_TIME),
                        codec.as_bytes(n[2], w, size=HASH_SIZE),
                    )
                )
            return tuple(out)
        case "leaves":
            return tuple(_dec_leaf(x, w) for x in codec.get_list(d, w, max_items=MAX_LEAVES))
        case "lo" | "hi" | "cont" | "next":
            return _dec_key(v, w)
        case "oplogs":
            return _dec_oplogs(v, w)
        case "want":
            items = codec.get_list(d, w, max_items=MAX_WANT)
            return tuple(codec.as_bytes(x, w, size=OPLOG_ID_SIZE) for x in items)
        case "want_ranges":
            ranges: list[tuple[int, int, Key]] = []
            for r in codec.get_list(d, w, max_items=MAX_WANT_RANGES):
                if type(r) is not list or len(r) != 3 or r[2] is None:
                    raise codec.CBORFormatError("a range is [start, end, from key]", field=w)
                start = codec.get_int({w: r[0]}, w, 0, MAX_TIME)
                end = codec.get_int({w: r[1]}, w, start, MAX_TIME + 1)
                lo = _dec_key(r[2], w)
                assert lo is not None
                if not (start, b"") <= lo:
                    raise codec.CBORFormatError("a range starts before its start", field=w)
                if ranges and start < ranges[-1][1]:
                    raise codec.CBORFormatError("ranges overlap or are out of order", field=w)
                ranges.append((start, end, lo))
            return tuple(ranges)
        case "items":
            return tuple(_dec_item(x) for x in codec.get_list(d, w, max_items=MAX_ITEMS))
        case "code":
            return RejectCode(codec.get_int(d, w, min(RejectCode), max(RejectCode)))
        case "reason":
            if type(v) is not str or len(v) > MAX_REASON:
                raise codec.CBORFormatError("must be a short text", field=w)
            return v
    raise AssertionError(name)  # pragma: no cover


def decode_message(data: bytes) -> Message:
    """Decode one frame's payload strictly.

    Raises:
        RemoteProtocolError: malformed or non-canonical CBOR, an unknown
            version or message type, or any field out of shape or limits.
    """
    try:
        m = codec.loads(data, max_size=MAX_FRAME_SIZE)
        if not isinstance(m, dict):
            raise codec.CBORFormatError("a message must be a CBOR map")
        version = m.get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:  # not true, not 1.0
            raise RemoteProtocolError(f"unsupported protocol version {codec._short(version)}")
        raw_type = m.get("t")
        try:
            if type(raw_type) is not int:  # MsgType(True) and MsgType(1.0) would succeed
                raise TypeError
            cls = MESSAGE_TYPES[MsgType(raw_type)]
        except (ValueError, TypeError, KeyError):
            raise RemoteProtocolError(f"unknown message type {codec._short(raw_type)}") from None
        names = [f.name for f in fields(cls)]
        wire = frozenset(["v", "t", *(_WIRE[n] for n in names)])
        codec.check_keys(m, wire, cls.__name__)
        values = {n: _dec_value(n, m[_WIRE[n]], _WIRE[n]) for n in names}
    except codec.CBORFormatError as exc:
        raise RemoteProtocolError(f"malformed message: {exc}") from None
    return cls(**values)  # type: ignore[arg-type]
