"""The PIP-11 sync messages' wire form: versioned, canonical CBOR, decoded strictly.

Every message is one CBOR map in one frame (frames.py), its fields under
the short keys of `_WIRE` (docs/pip-11/sync.md has the table).  Decoding
is strict: an unknown type or field, a wrong type, an out-of-range value, a
list over its limit or a non-canonical encoding raises RemoteProtocolError,
since only a peer can send us a bad message.  The dataclasses themselves
are messages.py's.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ...errors import RemoteProtocolError, UsageError
from .. import codec
from ..merkle import Level
from ..oplog import HASH_SIZE, MAX_OPLOG_SIZE, OPLOG_ID_SIZE, TOPIC_ID_SIZE
from ..timeutil import MAX_TIME
from .fingerprint import decode_children, encode_children, split_fps, width_of
from .frames import MAX_FRAME_SIZE
from .messages import (
    MAX_ITEM_CHILDREN,
    MAX_ITEM_LEAVES,
    MAX_ITEMS,
    MAX_LEAVES,
    MAX_LIST_NODES,
    MAX_OPLOGS,
    MAX_REASON,
    MAX_WANT_NODES,
    MAX_WANT_RANGES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    ROUND_ID_SIZE,
    WINDOW_NODES,
    ChildRef,
    FpWant,
    Item,
    Key,
    ListNode,
    Mark,
    Message,
    MsgType,
    RejectCode,
)
from .syncview import LIST_DIGEST_SIZE

# Wire keys of each field; the value codecs are chosen by field name below.
_WIRE = {
    "topic": "tp", "round": "r", "seq": "s", "to_sync_time": "T", "list_digest": "ld",
    "window_digest": "wd", "pending": "p", "list_differs": "ldf", "nodes": "n", "lo": "lo",
    "hi": "hi", "leaves": "lv", "more": "m", "last": "z", "oplogs": "o",
    "want_ranges": "wr", "cont": "c", "next": "nx", "items": "i", "code": "cd", "reason": "why",
    "want_fps": "wf",
}  # fmt: skip


def _layout(cls: type[Message]) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    """`cls`'s (field, wire key) pairs, and its map's keys."""
    pairs = tuple((f.name, _WIRE[f.name]) for f in fields(cls))
    return pairs, frozenset(["v", "t", *(wire for _, wire in pairs)])


# Worked out once per type: `dataclasses.fields` walks the class each time it is asked.
_LAYOUT = {cls: _layout(cls) for cls in MESSAGE_TYPES.values()}


# ---------------------------------------------------------------------------
# Encoding.


def _enc_key(k: Key | None) -> object:
    return None if k is None else [k[0], k[1]]


def _enc_item(it: Item) -> list[object]:
    """`[level, depth, start, fingerprint | null, leaf?, children]` (fingerprint.py)."""
    w = width_of(it)
    if w is not None and any(len(c if isinstance(c, bytes) else c.hash) != w for c in it.children):
        raise UsageError("an item's children must have its fingerprint width (fingerprinted)")
    kids = encode_children(it)
    return [int(it.level), it.depth, it.start, it.hash, it.leaf_children, kids]


def _enc_value(name: str, v: Any) -> object:
    if name == "oplogs":
        return list(v)
    if name == "leaves":
        return [[t, fp] for t, fp in v]
    if name == "nodes":
        return [[int(n.level), n.start, n.hash] for n in v]
    if name == "items":
        return [_enc_item(it) for it in v]
    if name == "want_fps":
        return [[int(x.level), x.depth, x.start, x.width, x.fps] for x in v]
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
    for name, wire in _LAYOUT[type(msg)][0]:
        m[wire] = _enc_value(name, getattr(msg, name))
    # Our own map: text keys, and values of null, booleans, integers under 2**63,
    # text, bytes and lists of them (`_enc_value`), which cbor2's canonical encoder
    # writes as `codec.dumps` would, without `dumps`'s walk to check it may.
    data = codec.dumps_text_keyed(m)
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


def _dec_mark(v: object, field: str) -> Mark:
    if type(v) is not list or len(v) != 2:
        raise codec.CBORFormatError("a listed leaf is [time, fingerprint]", field=field)
    return (codec.get_int({field: v[0]}, field, 0, MAX_TIME), _dec_fp(v[1], field))


def _dec_fp(v: object, field: str) -> bytes:
    """A fingerprint: 1 to 32 bytes of a hash (fingerprint.py)."""
    fp = codec.as_bytes(v, field, max_size=HASH_SIZE)
    if not fp:
        raise codec.CBORFormatError("a fingerprint has at least one byte", field=field)
    return fp


def _dec_level(v: object, field: str, lo: Level) -> Level:
    return Level(codec.get_int({field: v}, field, lo, Level.YEAR))


def _dec_ref(v: list[object], f: str) -> tuple[Level, int, int]:
    """A node's (level, depth, start); whether it names a node is checked where it is used."""
    level = _dec_level(v[0], f, Level.SLICE)
    depth = codec.get_int({f: v[1]}, f, 0, 16)
    start = codec.get_int({f: v[2]}, f, 0, MAX_TIME)
    return level, depth, start


def _dec_item(v: object) -> Item:
    f = "i"
    if type(v) is not list or len(v) != 6:
        raise codec.CBORFormatError(
            "an item is [level, depth, start, fingerprint, leaf?, children]", field=f
        )
    level, depth, start = _dec_ref(v, f)
    h = None if v[3] is None else _dec_fp(v[3], f)
    if type(v[4]) is not bool:
        raise codec.CBORFormatError("leaf flag must be a boolean", field=f)
    w = len(h) if h is not None else HASH_SIZE
    children: tuple[ChildRef, ...] | tuple[bytes, ...]
    try:
        if v[4]:
            fps = codec.as_bytes(v[5], f, max_size=MAX_ITEM_LEAVES * w)
            children = split_fps(fps, w, "leaves")
        else:
            if type(v[5]) is not list or len(v[5]) != 2:
                raise codec.CBORFormatError("children are [bitmap, fingerprints]", field=f)
            bitmap = codec.get_int({f: v[5][0]}, f, 0, 2**MAX_ITEM_CHILDREN - 1)
            fps = codec.as_bytes(v[5][1], f, max_size=MAX_ITEM_CHILDREN * w)
            children = decode_children(level, depth, start, w, bitmap, fps)
    except ValueError as exc:
        raise codec.CBORFormatError(str(exc), field=f) from None
    if h is None and children:
        raise codec.CBORFormatError("an absent node has no children", field=f)
    return Item(level, depth, start, h, v[4], children)


def _dec_fp_want(v: object, f: str) -> FpWant:
    if type(v) is not list or len(v) != 5:
        raise codec.CBORFormatError("a want is [level, depth, start, width, fingerprints]", field=f)
    level, depth, start = _dec_ref(v, f)
    width = codec.get_int({f: v[3]}, f, 1, HASH_SIZE)
    fps = codec.as_bytes(v[4], f, max_size=MAX_ITEM_LEAVES * width)
    if not fps or len(fps) % width:
        raise codec.CBORFormatError("a want's fingerprints are not whole", field=f)
    return FpWant(level, depth, start, width, fps)


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
            return codec.get_bytes(d, w, size=LIST_DIGEST_SIZE)
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
                        _dec_fp(n[2], w),
                    )
                )
            return tuple(out)
        case "leaves":
            return tuple(_dec_mark(x, w) for x in codec.get_list(d, w, max_items=MAX_LEAVES))
        case "lo" | "hi" | "cont" | "next":
            return _dec_key(v, w)
        case "oplogs":
            return _dec_oplogs(v, w)
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
        case "want_fps":
            wants = codec.get_list(d, w, max_items=MAX_WANT_NODES)
            return tuple(_dec_fp_want(x, w) for x in wants)
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
        layout, wire = _LAYOUT[cls]
        codec.check_keys(m, wire, cls.__name__)
        values = {n: _dec_value(n, m[w], w) for n, w in layout}
    except codec.CBORFormatError as exc:
        raise RemoteProtocolError(f"malformed message: {exc}") from None
    return cls(**values)  # type: ignore[arg-type]
