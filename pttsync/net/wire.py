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
a connection's other messages come after it.  Their bytes are
wirecodec.py's: decoding is as strict as for the sync messages (only a
peer can send us a bad message, so every failure is a RemoteProtocolError).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar

from ..core.sync.messages import Message

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
    visit: bool = False  # a visit: one sync round, outside the slots (network.md, "Visits")
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


_SPACE = re.compile(r"\s")  # what str.isspace calls white space, found in C


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
    if not host or _SPACE.search(host):
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)
