"""Where each message of an admitted peer goes.

Once the door (door.py) has let a peer in, the connection's conversation
(conversation.py) hands every message to the node's `Dispatcher`:
the addresses of a `Peers` message go to the address book; a topic's
`Route` and `Push` messages, its sync requests (the topic's Receiver
answers them) and the replies to its rounds (its Requester takes them) go
to that topic's runtime (topicruntime.py).

A second `Hello`, or a message for a topic this node never listed, breaks
the protocol (RemoteProtocolError: the conversation ends and the node
closes the connection); so does a stream of pushed oplogs the topic
refuses.  A request for a topic the peer is not let into is answered with
a rejection.  Sans I/O: `handle` returns the replies to send, and the
time (trio's, for the address book) is passed in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.sync.messages import (
    ForceSyncOplogByMerkle,
    Message,
    RejectCode,
    SyncOplog,
    SyncOplogNewOplogs,
    SyncOplogReject,
    SyncPendingOplog,
)
from ..errors import RemoteProtocolError
from .wire import Hello, IHave, IWant, Peers, Prune, Push, Route

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .addressbook import AddressBook
    from .peer import PeerLink
    from .topicruntime import TopicRuntime
    from .wire import AnyMessage

REQUESTS = (SyncOplog, SyncOplogNewOplogs, ForceSyncOplogByMerkle, SyncPendingOplog)
"""The sync messages that open or continue a round a peer runs (the rest are replies)."""

MAX_REFUSED_PUSHED = 64
"""Pushed oplogs a connection may have refused before it counts as a violation.

One refusal is not a fault (the sender may know a governance change that
has not reached us yet), but a stream of them is garbage or an attack."""


class Dispatcher:
    """A node's messages from admitted peers, each to where it goes (see the module text).

    `topics` are the node's runtimes by topic ID, and `book` its address
    book; `book_changed()` is called when a peer told of a new address.
    """

    def __init__(
        self,
        peer_id: bytes,
        *,
        topics: Mapping[bytes, TopicRuntime],
        book: AddressBook,
        book_changed: Callable[[], None],
        referred: Callable[[bytes, list[bytes]], None] = lambda by, peers: None,
    ) -> None:
        self.peer_id = peer_id
        self.topics = topics
        self.book = book
        self.book_changed = book_changed
        self.referred = referred  # a peer's `Peers`, by its sender (node.py: referrals)

    def handle(self, link: PeerLink, msg: AnyMessage, now: float) -> list[Message]:
        """Handle one message of `link`'s peer; the replies to send it.

        Raises:
            RemoteProtocolError: the message breaks the protocol.
        """
        match msg:
            case Hello():
                raise RemoteProtocolError("a second Hello")
            case Peers():
                for peer_id, address in msg.peers:
                    if peer_id != self.peer_id and self.book.add(address, peer_id, now=now):
                        self.book_changed()
                self.referred(link.peer_id, [p for p, _ in msg.peers if p != self.peer_id])
            case Route():
                if (rt := self._runtime(link, msg.topic, "a route")) is not None:
                    rt.on_route(link, msg)
            case IHave():
                if (rt := self._runtime(link, msg.topic, "an IHave")) is not None:
                    rt.on_ihave(link, msg)
            case IWant():
                if (rt := self._runtime(link, msg.topic, "an IWant")) is not None:
                    rt.on_iwant(link, msg)
            case Prune():
                if (rt := self._runtime(link, msg.topic, "a Prune")) is not None:
                    rt.on_prune(link)
            case Push():
                if (rt := self._runtime(link, msg.topic, "a push")) is not None:
                    link.stats.refused += rt.on_push(link, msg)
                    if link.stats.refused > MAX_REFUSED_PUSHED:
                        raise RemoteProtocolError(
                            f"{link.stats.refused} pushed oplogs refused", penalty=3
                        )
            case Message():
                return self._on_sync(link, msg)
        return []

    def _runtime(self, link: PeerLink, topic: bytes, what: str) -> TopicRuntime | None:
        """The runtime a topic's node message goes to; None if the peer is not in that
        topic (a removal it has not heard of yet).

        Raises:
            RemoteProtocolError: a topic this node never listed.
        """
        rt = self.topics.get(topic)
        if rt is None:
            raise RemoteProtocolError(f"{what} for a topic this node never listed")
        return rt if topic in link.topics else None

    def _on_sync(self, link: PeerLink, msg: Message) -> list[Message]:
        rt = self.topics.get(msg.topic)
        if isinstance(msg, REQUESTS):
            if rt is None or msg.topic not in link.topics:
                why = "unknown topic" if rt is None else "not a member of this topic"
                return [
                    SyncOplogReject(msg.topic, msg.round, msg.seq, RejectCode.UNKNOWN_TOPIC, why)
                ]
            return rt.on_request(link, msg)
        if rt is None:
            raise RemoteProtocolError(f"{type(msg).__name__} for a topic this node never asked")
        return rt.on_reply(link, msg)
