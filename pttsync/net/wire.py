"""The node's own messages, beside PIP-11's sync messages on one connection.

A connection carries frames (frames.py) of canonical CBOR maps.  Types
1-31 are PIP-11's sync messages (messages.py); types 32 and up are the
node's:

* 32 `Hello`: `lis` the address the sender listens on ("" for none),
  `tps` the topics it holds, `ag` a short agent text, `cr` credentials:
  the governance oplogs that make the sender a member (its ROLE and
  DEVICE oplogs and the masters' promotions), so a peer that has not
  synced them yet can still let it in;
* 33 `Push`: `tp` topic, `ops` encoded oplogs, `pd` pending (for co-signing);
* 34 `Peers`: `ps` known peers as [peer ID, "host:port"];
* 35 `Bye`: `why` the reason the sender closes the connection;
* 36 `Route`: `tp` topic, `hop` the sender's distance in hops to the
  topic's nearest master (0..16, 16: none known), `msh` true if the sender
  put this connection in its push mesh (net/routing.py);
* 37 `IHave`: `tp` topic, `ids` IDs of valid oplogs the sender holds and
  announces instead of pushing them (net/lazypush.py);
* 38 `IWant`: `tp` topic, `ids` the announced oplogs the sender wants; it
  also makes the link eager again (a graft);
* 39 `Prune`: `tp` topic: the sender got a copy it held over this link, so
  the link becomes lazy (announcements only) on both ends.

`Hello` is the first message each side sends after the secure handshake;
a connection's other messages come after it.  Decoding is as strict as
for the sync messages: only a peer can send us a bad message, so every
failure is a RemoteProtocolError.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar

from ..core import codec
from ..core.identity import PEER_ID_SIZE
from ..core.oplog import MAX_OPLOG_SIZE, OPLOG_ID_SIZE, TOPIC_ID_SIZE
from ..core.sync.frames import MAX_FRAME_SIZE
from ..core.sync.messages import PROTOCOL_VERSION, Message
from ..core.sync.msgcodec import decode_message
from ..errors import RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_TOPICS = 64  # topics listed in one Hello
MAX_CREDENTIALS = 64  # governance oplogs in one Hello
MAX_PEERS_LISTED = 64  # addresses in one Peers message
MAX_PUSH_OPLOGS = 256  # oplogs in one Push (the frame limit binds too)
MAX_IDS = 256  # oplog IDs in one IHave or IWant
MAX_ADDRESS = 300  # "host:port"
MAX_AGENT = 64
MAX_REASON = 200
NODE_TYPES_START = 32


class NodeMsgType(IntEnum):
    HELLO = 32
    PUSH = 33
    PEERS = 34
    BYE = 35
    ROUTE = 36
    IHAVE = 37
    IWANT = 38
    PRUNE = 39


@dataclass(frozen=True, slots=True)
class NodeMessage:
    TYPE: ClassVar[NodeMsgType]


@dataclass(frozen=True, slots=True)
class Hello(NodeMessage):
    listen: str
    topics: tuple[bytes, ...]
    agent: str = ""
    credentials: tuple[bytes, ...] = ()
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.HELLO


@dataclass(frozen=True, slots=True)
class Push(NodeMessage):
    topic: bytes
    oplogs: tuple[bytes, ...]
    pending: bool = False
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.PUSH


@dataclass(frozen=True, slots=True)
class Peers(NodeMessage):
    peers: tuple[tuple[bytes, str], ...]
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.PEERS


@dataclass(frozen=True, slots=True)
class Bye(NodeMessage):
    reason: str
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.BYE


@dataclass(frozen=True, slots=True)
class Route(NodeMessage):
    topic: bytes
    hops: int
    mesh: bool
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.ROUTE


@dataclass(frozen=True, slots=True)
class IHave(NodeMessage):
    topic: bytes
    ids: tuple[bytes, ...]
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.IHAVE


@dataclass(frozen=True, slots=True)
class IWant(NodeMessage):
    topic: bytes
    ids: tuple[bytes, ...]
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.IWANT


@dataclass(frozen=True, slots=True)
class Prune(NodeMessage):
    topic: bytes
    TYPE: ClassVar[NodeMsgType] = NodeMsgType.PRUNE


MAX_HOPS = 16


def id_chunks(ids: list[bytes]) -> Iterator[tuple[bytes, ...]]:
    """`ids` in runs of at most MAX_IDS: the `ids` of successive IHave or IWant messages."""
    for i in range(0, len(ids), MAX_IDS):
        yield tuple(ids[i : i + MAX_IDS])


AnyMessage = Message | NodeMessage


def encode_node_message(msg: NodeMessage) -> bytes:
    m: dict[str, object] = {"v": PROTOCOL_VERSION, "t": int(msg.TYPE)}
    match msg:
        case Hello():
            m.update(lis=msg.listen, tps=list(msg.topics), ag=msg.agent, cr=list(msg.credentials))
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
    return codec.dumps_text_keyed(m)  # built here, of text keys and plain values


def _text(m: dict[str, Any], key: str, limit: int) -> str:
    v = m[key]
    if type(v) is not str or len(v) > limit or not v.isprintable():
        raise codec.CBORFormatError(
            f"must be printable text of at most {limit} characters", field=key
        )
    return v


def check_address(text: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 as "[::1]:7400").

    Raises:
        ValueError: not a host and a port in 1..65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _decode_node(m: dict[str, Any], kind: NodeMsgType) -> NodeMessage:
    match kind:
        case NodeMsgType.HELLO:
            codec.check_keys(m, frozenset({"v", "t", "lis", "tps", "ag", "cr"}), "Hello")
            listen = _text(m, "lis", MAX_ADDRESS)
            if listen:
                try:
                    check_address(listen)
                except ValueError as exc:
                    raise codec.CBORFormatError(str(exc), field="lis") from None
            topics = codec.get_list(m, "tps", max_items=MAX_TOPICS)
            creds = codec.get_list(m, "cr", max_items=MAX_CREDENTIALS)
            return Hello(
                listen,
                tuple(codec.as_bytes(t, "tps", size=TOPIC_ID_SIZE) for t in topics),
                _text(m, "ag", MAX_AGENT),
                tuple(codec.as_bytes(o, "cr", max_size=MAX_OPLOG_SIZE) for o in creds),
            )
        case NodeMsgType.PUSH:
            codec.check_keys(m, frozenset({"v", "t", "tp", "ops", "pd"}), "Push")
            ops = codec.get_list(m, "ops", max_items=MAX_PUSH_OPLOGS)
            if not ops:
                raise codec.CBORFormatError("a push carries at least one oplog", field="ops")
            if type(m["pd"]) is not bool:
                raise codec.CBORFormatError("must be a boolean", field="pd")
            return Push(
                codec.get_bytes(m, "tp", size=TOPIC_ID_SIZE),
                tuple(codec.as_bytes(o, "ops", max_size=MAX_OPLOG_SIZE) for o in ops),
                m["pd"],
            )
        case NodeMsgType.PEERS:
            codec.check_keys(m, frozenset({"v", "t", "ps"}), "Peers")
            out = []
            for p in codec.get_list(m, "ps", max_items=MAX_PEERS_LISTED):
                if type(p) is not list or len(p) != 2:
                    raise codec.CBORFormatError("a peer is [peer ID, address]", field="ps")
                address = _text({"ps": p[1]}, "ps", MAX_ADDRESS)
                try:
                    check_address(address)
                except ValueError as exc:
                    raise codec.CBORFormatError(str(exc), field="ps") from None
                out.append((codec.as_bytes(p[0], "ps", size=PEER_ID_SIZE), address))
            return Peers(tuple(out))
        case NodeMsgType.BYE:
            codec.check_keys(m, frozenset({"v", "t", "why"}), "Bye")
            return Bye(_text(m, "why", MAX_REASON))
        case NodeMsgType.ROUTE:
            codec.check_keys(m, frozenset({"v", "t", "tp", "hop", "msh"}), "Route")
            if type(m["msh"]) is not bool:
                raise codec.CBORFormatError("must be a boolean", field="msh")
            return Route(
                codec.get_bytes(m, "tp", size=TOPIC_ID_SIZE),
                codec.get_int(m, "hop", 0, MAX_HOPS),
                m["msh"],
            )
        case NodeMsgType.IHAVE | NodeMsgType.IWANT:
            codec.check_keys(m, frozenset({"v", "t", "tp", "ids"}), kind.name.title())
            ids = codec.get_list(m, "ids", max_items=MAX_IDS)
            if not ids:
                raise codec.CBORFormatError("at least one oplog ID", field="ids")
            cls = IHave if kind is NodeMsgType.IHAVE else IWant
            return cls(
                codec.get_bytes(m, "tp", size=TOPIC_ID_SIZE),
                tuple(codec.as_bytes(i, "ids", size=OPLOG_ID_SIZE) for i in ids),
            )
        case NodeMsgType.PRUNE:
            codec.check_keys(m, frozenset({"v", "t", "tp"}), "Prune")
            return Prune(codec.get_bytes(m, "tp", size=TOPIC_ID_SIZE))
    raise AssertionError(kind)  # pragma: no cover


def decode_any(data: bytes) -> AnyMessage:
    """Decode one frame: a sync message or a node message, strictly.

    Raises:
        RemoteProtocolError: anything malformed, non-canonical or unknown.
    """
    try:
        m = codec.loads(data, max_size=MAX_FRAME_SIZE)
        if not isinstance(m, dict):
            raise codec.CBORFormatError("a message must be a CBOR map")
        raw_type = m.get("t")
        if type(raw_type) is not int or raw_type < NODE_TYPES_START:
            return decode_message(data)
        version = m.get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise RemoteProtocolError(f"unsupported protocol version {codec._short(version)}")
        try:
            kind = NodeMsgType(raw_type)
        except ValueError:
            raise RemoteProtocolError(f"unknown message type {raw_type}") from None
        return _decode_node(m, kind)
    except codec.CBORFormatError as exc:
        raise RemoteProtocolError(f"malformed message: {exc}") from None
