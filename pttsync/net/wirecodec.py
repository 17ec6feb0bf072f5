"""The node messages' bytes (wire.py): canonical CBOR, written and read by their shapes.

Every frame a node takes is decoded here, and most are the node's own
messages (`Push`, `IHave`...): in a simulated network of a thousand peers,
encoding and decoding them through the general codec was a tenth of the
run (simulation.md).  So the frequent node messages skip it both ways:

* **Encoding** writes a message's canonical bytes directly: the keys of
  each type in RFC 8949's order (fixed per type, worked out once here) and
  shortest heads.  tests/test_wirecodec.py compares every type, for
  generated messages, with `codec.dumps` of its map.
* **Decoding** reads the map with cbor2, checks its keys against the type's
  canonical order and every field's type and bounds, and then checks that
  the frame is exactly as long as the canonical encoding of what it read.
  A value has one canonical encoding and every other encoding of it is
  longer (a longer head, a tag around an item, bytes left over), so that
  length proves the frame canonical without encoding anything again or
  walking the value.  The rare types (`Hello`, `Peers`, `Bye`) are checked
  by re-encoding the map, which the key order check makes exact.  The test
  holds the decoder to the strict general check on mutated frames.

PIP-11's sync messages (types below 32) go to their own decoder
(core/sync/msgcodec.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import cbor2

from ..core import codec
from ..core.identity import PEER_ID_SIZE
from ..core.oplog import MAX_OPLOG_SIZE, OPLOG_ID_SIZE, TOPIC_ID_SIZE
from ..core.sync.frames import MAX_FRAME_SIZE
from ..core.sync.messages import PROTOCOL_VERSION
from ..core.sync.msgcodec import decode_message
from ..errors import RemoteProtocolError
from .wire import (
    MAX_ADDRESS,
    MAX_AGENT,
    MAX_CREDENTIALS,
    MAX_HOPS,
    MAX_IDS,
    MAX_PEERS_LISTED,
    MAX_PUSH_OPLOGS,
    MAX_REASON,
    MAX_TOPICS,
    NODE_TYPES_START,
    Bye,
    Hello,
    IHave,
    IWant,
    NodeMessage,
    NodeMsgType,
    Peers,
    Prune,
    Push,
    Route,
    check_address,
)

if TYPE_CHECKING:
    from .wire import AnyMessage

__all__ = ["as_map", "decode_any", "encode_node_message"]

_KEYS: dict[NodeMsgType, tuple[str, ...]] = {
    NodeMsgType.HELLO: ("v", "t", "lis", "tps", "ag", "cr", "vis"),
    NodeMsgType.PUSH: ("v", "t", "tp", "ops", "pd"),
    NodeMsgType.PEERS: ("v", "t", "ps"),
    NodeMsgType.BYE: ("v", "t", "why"),
    NodeMsgType.ROUTE: ("v", "t", "tp", "hop", "msh"),
    NodeMsgType.IHAVE: ("v", "t", "tp", "ids"),
    NodeMsgType.IWANT: ("v", "t", "tp", "ids"),
    NodeMsgType.PRUNE: ("v", "t", "tp"),
}
# Each type's keys in canonical order: by the bytes of their encodings (RFC 8949).
_ORDER = {kind: tuple(sorted(keys, key=codec.dumps)) for kind, keys in _KEYS.items()}
# "t" and "v" come first in every type (the other keys are longer), so each
# message starts with the same bytes for its type.
_PREFIX = {
    kind: codec.head(5, len(order))
    + codec.tstr("t")
    + codec.uint(kind)
    + codec.tstr("v")
    + codec.uint(PROTOCOL_VERSION)
    for kind, order in _ORDER.items()
}
assert all(order[:2] == ("t", "v") for order in _ORDER.values())

_TP, _OPS, _PD, _IDS = codec.tstr("tp"), codec.tstr("ops"), codec.tstr("pd"), codec.tstr("ids")
_HOP, _MSH = codec.tstr("hop"), codec.tstr("msh")
_BOOL = (b"\xf4", b"\xf5")
_TOPIC_LEN = len(_TP) + len(codec.bstr(b"\x00" * TOPIC_ID_SIZE))  # "tp" and its value
_ID_LEN = len(codec.bstr(b"\x00" * OPLOG_ID_SIZE))  # an oplog ID in an array


def _hl(n: int) -> int:
    """The length of the shortest head whose argument is `n` (n >= 0)."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 2**32 else 9


_BSTR_HEADS = [codec.head(2, n) for n in range(256)]
_ARRAY_HEADS = [codec.head(4, n) for n in range(256)]


def _bstr_array(parts: list[bytes], items: tuple[bytes, ...]) -> list[bytes]:
    """`parts` and then an array of byte strings, as the pieces of its encoding."""
    n = len(items)
    parts.append(_ARRAY_HEADS[n] if n < 256 else codec.head(4, n))
    heads = _BSTR_HEADS
    for x in items:
        n = len(x)
        parts.append(heads[n] if n < 256 else codec.head(2, n))
        parts.append(x)
    return parts


# -- encoding ---------------------------------------------------------------------------


def as_map(msg: NodeMessage) -> dict[str, object]:
    """A node message as the plain map its canonical encoding encodes."""
    m: dict[str, object] = {"v": PROTOCOL_VERSION, "t": int(msg.TYPE)}
    match msg:
        case Hello():
            m.update(
                lis=msg.listen,
                tps=list(msg.topics),
                ag=msg.agent,
                cr=list(msg.credentials),
                vis=msg.visit,
            )
        case Push():
            m.update(tp=msg.topic, ops=list(msg.oplogs), pd=msg.pending)
        case Peers():
            m.update(ps=[[p, a] for p, a in msg.peers])
        case Bye():
            m.update(why=msg.reason)
        case Route():
            m.update(tp=msg.topic, hop=msg.hops, msh=msg.mesh)
        case IHave() | IWant():
            m.update(tp=msg.topic, ids=list(msg.ids))
        case Prune():
            m.update(tp=msg.topic)
    return m


def encode_node_message(msg: NodeMessage) -> bytes:
    """A node message's canonical CBOR (the same bytes as `codec.dumps(as_map(msg))`)."""
    kind = type(msg)
    if kind is IHave or kind is IWant:
        assert isinstance(msg, IHave | IWant)
        parts = [_PREFIX[msg.TYPE], _TP, codec.bstr(msg.topic), _IDS]
        return b"".join(_bstr_array(parts, msg.ids))
    if kind is Push:
        assert isinstance(msg, Push)
        parts = [
            _PREFIX[NodeMsgType.PUSH], _PD, _BOOL[msg.pending], _TP, codec.bstr(msg.topic), _OPS,
        ]  # fmt: skip
        return b"".join(_bstr_array(parts, msg.oplogs))
    if kind is Prune:
        assert isinstance(msg, Prune)
        return _PREFIX[NodeMsgType.PRUNE] + _TP + codec.bstr(msg.topic)
    if kind is Route:
        assert isinstance(msg, Route)
        return b"".join(
            (
                _PREFIX[NodeMsgType.ROUTE], _TP, codec.bstr(msg.topic), _HOP, codec.uint(msg.hops),
                _MSH, _BOOL[msg.mesh],
            )
        )  # fmt: skip
    return codec.dumps_text_keyed(as_map(msg))  # Hello, Peers, Bye: rare


# -- decoding ---------------------------------------------------------------------------


def _fail(field: str, message: str, *, oversize: bool = False) -> Any:
    raise codec.CBORFormatError(message, field=field, oversize=oversize)


def _topic(m: dict[str, Any]) -> bytes:
    v = m["tp"]
    if type(v) is not bytes or len(v) != TOPIC_ID_SIZE:
        return codec.as_bytes(v, "tp", size=TOPIC_ID_SIZE)  # raises, saying what is wrong
    return v


def _text(m: dict[str, Any], key: str, limit: int) -> str:
    v = m[key]
    if type(v) is not str or len(v) > limit or not v.isprintable():
        _fail(key, f"must be printable text of at most {limit} characters")
    return v  # type: ignore[no-any-return]


def _checked_address(text: str, field: str) -> str:
    try:
        check_address(text)
    except ValueError as exc:
        _fail(field, str(exc))
    return text


# A decoder returns the message and the length of its canonical encoding (None:
# compare with the map encoded again).


def _push(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    topic = _topic(m)
    ops = codec.get_list(m, "ops", max_items=MAX_PUSH_OPLOGS)
    if not ops:
        _fail("ops", "a push carries at least one oplog")
    pending = m["pd"]
    if type(pending) is not bool:
        _fail("pd", "must be a boolean")
    size = len(_PREFIX[NodeMsgType.PUSH]) + len(_PD) + 1 + _TOPIC_LEN + len(_OPS) + _hl(len(ops))
    for body in ops:
        if type(body) is not bytes or len(body) > MAX_OPLOG_SIZE:
            codec.as_bytes(body, "ops", max_size=MAX_OPLOG_SIZE)  # raises
        n = len(body)
        size += n + _hl(n)
    return Push(topic, tuple(ops), pending), size


def _ids(kind: NodeMsgType) -> Callable[[dict[str, Any]], tuple[NodeMessage, int | None]]:
    cls = IHave if kind is NodeMsgType.IHAVE else IWant
    fixed = len(_PREFIX[kind]) + _TOPIC_LEN + len(_IDS)

    def decode(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
        topic = _topic(m)
        ids = codec.get_list(m, "ids", max_items=MAX_IDS)
        if not ids:
            _fail("ids", "at least one oplog ID")
        for oid in ids:
            if type(oid) is not bytes or len(oid) != OPLOG_ID_SIZE:
                codec.as_bytes(oid, "ids", size=OPLOG_ID_SIZE)  # raises
        return cls(topic, tuple(ids)), fixed + _hl(len(ids)) + _ID_LEN * len(ids)

    return decode


def _prune(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    return Prune(_topic(m)), len(_PREFIX[NodeMsgType.PRUNE]) + _TOPIC_LEN


def _route(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    topic = _topic(m)
    hops = codec.get_int(m, "hop", 0, MAX_HOPS)
    if type(m["msh"]) is not bool:
        _fail("msh", "must be a boolean")
    size = len(_PREFIX[NodeMsgType.ROUTE]) + _TOPIC_LEN + len(_HOP) + _hl(hops) + len(_MSH) + 1
    return Route(topic, hops, m["msh"]), size


def _hello(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    listen = _text(m, "lis", MAX_ADDRESS)
    if listen:
        _checked_address(listen, "lis")
    topics = codec.get_list(m, "tps", max_items=MAX_TOPICS)
    creds = codec.get_list(m, "cr", max_items=MAX_CREDENTIALS)
    if type(m["vis"]) is not bool:
        _fail("vis", "must be a boolean")
    return Hello(
        listen,
        tuple(codec.as_bytes(t, "tps", size=TOPIC_ID_SIZE) for t in topics),
        _text(m, "ag", MAX_AGENT),
        tuple(codec.as_bytes(o, "cr", max_size=MAX_OPLOG_SIZE) for o in creds),
        m["vis"],
    ), None


def _peers(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    out = []
    for p in codec.get_list(m, "ps", max_items=MAX_PEERS_LISTED):
        if type(p) is not list or len(p) != 2:
            _fail("ps", "a peer is [peer ID, address]")
        address = _checked_address(_text({"ps": p[1]}, "ps", MAX_ADDRESS), "ps")
        out.append((codec.as_bytes(p[0], "ps", size=PEER_ID_SIZE), address))
    return Peers(tuple(out)), None


def _bye(m: dict[str, Any]) -> tuple[NodeMessage, int | None]:
    return Bye(_text(m, "why", MAX_REASON)), None


_Decoder = Callable[[dict[str, Any]], tuple[NodeMessage, int | None]]
_BY_TYPE: dict[NodeMsgType, _Decoder] = {
    NodeMsgType.HELLO: _hello,
    NodeMsgType.PUSH: _push,
    NodeMsgType.PEERS: _peers,
    NodeMsgType.BYE: _bye,
    NodeMsgType.ROUTE: _route,
    NodeMsgType.IHAVE: _ids(NodeMsgType.IHAVE),
    NodeMsgType.IWANT: _ids(NodeMsgType.IWANT),
    NodeMsgType.PRUNE: _prune,
}
# type number -> (its name in errors, its keys in canonical order, its decoder)
_DECODERS: dict[int, tuple[str, tuple[str, ...], _Decoder]] = {
    int(kind): (kind.name.title(), _ORDER[kind], decode) for kind, decode in _BY_TYPE.items()
}


def decode_any(data: bytes) -> AnyMessage:
    """Decode one frame: a sync message or a node message, strictly.

    Raises:
        RemoteProtocolError: anything malformed, non-canonical or unknown.
    """
    try:
        m = codec.loads_unchecked(data, max_size=MAX_FRAME_SIZE)
        if type(m) is not dict:
            raise codec.CBORFormatError("a message must be a CBOR map")
        raw_type = m.get("t")
        if type(raw_type) is not int or raw_type < NODE_TYPES_START:
            return decode_message(data)
        version = m.get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported protocol version {codec._short(version)}")
        spec = _DECODERS.get(raw_type)
        if spec is None:
            raise RemoteProtocolError(f"unknown message type {codec._short(raw_type)}")
        name, order, decode = spec
        if tuple(m) != order:
            codec.check_keys(m, frozenset(order), name)  # unknown, missing
            _fail("", "not in canonical (RFC 8949 deterministic) form")  # keys out of order
        msg, size = decode(m)
        if (len(data) != size) if size is not None else (cbor2.dumps(m) != data):
            _fail("", "not in canonical (RFC 8949 deterministic) form")
        return msg
    except codec.CBORFormatError as exc:
        raise RemoteProtocolError(f"malformed message: {exc}") from None
