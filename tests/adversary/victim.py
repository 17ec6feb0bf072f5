"""The victim of the stateful adversary: a node's real parts for one topic, with no socket.

`VictimNode` builds what `Node` builds for a topic (a `TopicRuntime`, the
`Door`, the `Dispatcher`, an address book and the commit watcher that
re-checks links after a governance change) and serves one connection at a
time through the node's own sans-I/O `Conversation` (net/conversation.py).
Its `PeerLink` runs over a `FrameSink`: what the victim sends is kept, and
the test reads it back (`receive` and `begin_round` return it, decoded).

The node's reader task does nothing else with a frame than hand it to the
conversation and send the replies; the only parts of a running node left
out are the tasks (writer, pusher, timers) and trio itself.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from pttsync.net.addressbook import AddressBook
from pttsync.net.changes import CommitWatcher
from pttsync.net.conversation import Conversation, Verdict
from pttsync.net.dispatch import Dispatcher
from pttsync.net.door import Door
from pttsync.net.peer import Direction, PeerLink
from pttsync.net.refusals import Refusals
from pttsync.net.topicruntime import TopicRuntime
from pttsync.net.wire import AnyMessage, Peers
from pttsync.net.wirecodec import decode_any

from ..synchelpers import TOPIC

if TYPE_CHECKING:
    from collections.abc import Callable

    from pttsync.core.identity import Identity
    from pttsync.core.store import Store
    from pttsync.core.sync.session import SyncConfig

LISTEN = "127.0.0.1:7000"
BOOK_SIZE = 128  # the address book's bound (a node's default is 1,024)
REFUSALS = 16  # peers refused at the door remembered (a node's default is 256)
PUSH_QUEUE = 512
SEEN_CACHE = 1024


class FrameSink:
    """The victim's end of a connection: every frame it sends is kept for the test."""

    def __init__(self, remote_id: bytes) -> None:
        self.remote_id = remote_id
        self.frames: list[bytes] = []

    def send_frame_nowait(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True

    async def send_frame(self, payload: bytes) -> None:
        self.frames.append(payload)

    async def receive_frame(self) -> bytes | None:
        raise AssertionError("the test hands the victim's conversation its frames")

    async def aclose(self) -> None:
        pass


class VictimNode:
    """One topic of a node, served to one peer at a time (see the module text)."""

    def __init__(
        self, store: Store, identity: Identity, *, clock: Callable[[], int], config: SyncConfig
    ) -> None:
        self.me = identity.peer_id
        self.clock = clock
        self.links: dict[bytes, PeerLink] = {}
        self.rt = TopicRuntime(
            store, TOPIC, identity, config=config, clock=clock, links=self.links,
            push_queue=PUSH_QUEUE, seen_cache=SEEN_CACHE, rng=random.Random(0),
        )  # fmt: skip
        topics = {TOPIC.topic_id: self.rt}
        self.book = AddressBook(random.Random(0), max_entries=BOOK_SIZE)
        self.refusals = Refusals(max_entries=REFUSALS)
        self.door = Door(
            self.me, topics=topics, links=self.links, scopes={}, visits={}, max_peers=8,
            clock=clock,
            listen_address=lambda: LISTEN, drop=self._drop, peers_message=lambda _: Peers(()),
            refusals=self.refusals,
        )  # fmt: skip
        self.dispatcher = Dispatcher(
            self.me, topics=topics, book=self.book, book_changed=lambda: None
        )
        self.rt.replica.observers.append(CommitWatcher(lambda: None, self.door.recheck_links))
        self.link: PeerLink | None = None
        self.conv: Conversation | None = None

    @property
    def connected(self) -> bool:
        """A connection is up and its peer admitted."""
        return self.conv is not None and self.conv.admitted and self.conv.ended is None

    def connect(self, peer_id: bytes, hello: bytes) -> list[AnyMessage]:
        """A new connection from `peer_id`, whose first frame is `hello`."""
        self.close("a new connection")
        link = PeerLink(
            FrameSink(peer_id), direction=Direction.INBOUND, address="127.0.0.1:50000",
            local_id=self.me,
        )  # fmt: skip
        self.link, self.conv = link, Conversation(link, door=self.door, dispatcher=self.dispatcher)
        link.try_send(self.door.hello())
        return self.receive(hello)

    def receive(self, frame: bytes | None) -> list[AnyMessage]:
        """The peer's next frame (None: it closed); what the victim sent it meanwhile."""
        conv, link = self.conv, self.link
        assert conv is not None and link is not None and conv.ended is None
        was_admitted = conv.admitted
        replies = conv.receive(frame, self.clock() / 1e9)
        if conv.ended is None and conv.admitted and not was_admitted:
            self._register(link)
        for m in replies:  # the node awaits room in the queue; a sink always has room
            link.try_send(m)
        self.check_link()
        return self._sent(link)

    def check_link(self) -> None:
        """End the conversation if its link was closed under it (the door, after a
        governance change, as the node cancels the link's reader), or it ended."""
        conv, link = self.conv, self.link
        if conv is None or link is None:
            return
        if conv.ended is None and link.closed:
            conv.ended = Verdict(0, link.close_reason)
        if conv.ended is not None:
            self.close(conv.ended.reason)

    def begin_round(self) -> list[AnyMessage]:
        """The victim starts a sync round with its peer, as its anti-entropy tick does."""
        link = self.link
        assert link is not None and self.connected
        for m in self.rt.begin_round(link.peer_id) or []:
            link.try_send(m)
        return self._sent(link)

    def close(self, reason: str) -> None:
        if self.link is not None:
            self.link.close(reason)
            self._drop(self.link)
        self.link = self.conv = None

    def _register(self, link: PeerLink) -> None:
        """As Node._register: the link is the peer's, and each of its topics hears of it."""
        self.links[link.peer_id] = link
        for topic_id in link.topics:
            self.dispatcher.topics[topic_id].link_up(link)

    def _drop(self, link: PeerLink) -> None:
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            self.rt.forget(link.peer_id)

    def _sent(self, link: PeerLink) -> list[AnyMessage]:
        sink = link.channel
        assert isinstance(sink, FrameSink)
        frames, sink.frames = sink.frames, []
        return [decode_any(f) for f in frames]  # the victim only sends what decodes
