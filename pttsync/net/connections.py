"""A node's connections: each one's life, from the handshake to its end.

`Connections` runs every connection of a node (node.py), inbound (through
the gate, gate.py) or dialed (dialer.py): the Noise handshake, then the
reader (`_converse`: every frame to the connection's conversation,
conversation.py) and the writer, until either ends.  On the way it
registers an admitted peer (its addresses in the book, a `Peers` message,
its topics told), and at the end it forgets the peer and settles the
address's account in the book: a clean end, a refusal, a violation
(counted), or a bug of ours (`contain`: logged with its traceback, counted,
and that connection alone closed).

A **visit** (network.md, "Visits") is a connection for one sync round
outside the slots: the node dials one now and then (node.py), and takes at
most `door.MAX_VISITS` at once.  A visit is not a link: it is kept in
`visits`, not `links`, so nothing pushes over it, routes through it or
counts it as a slot; the visitor runs one round per shared topic and then
closes it, and either side closes it after `round_timeout`.  Its end settles
nothing in the book but a violation.

It keeps the counters the node shows: `violations`, `internal_errors`,
the gate's `turned_away`, the connections `opened` by direction and the
traffic of those that have ended (`closed_traffic`).  What it works with
is given: the node's topics, links, book, door, dispatcher and change
event, and three things of the node's as calls: how to wake the dialer,
how to start a sync round, and the verifier of frames read ahead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..errors import (
    ConnectionLostError,
    HandshakeError,
    HandshakeTimeoutError,
    RemoteProtocolError,
    SelfConnectionError,
)
from .conversation import Conversation
from .gate import InboundGate
from .inbox import feed
from .peer import Direction, LinkStats, PeerLink
from .wire import MAX_PEERS_LISTED, Bye, Peers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from ..core.identity import Identity
    from .addressbook import AddressBook
    from .changes import Changes
    from .config import NodeConfig
    from .dispatch import Dispatcher
    from .door import Door
    from .inbox import Verifier
    from .network import Network
    from .topicruntime import TopicRuntime

log = logging.getLogger(__name__)

INTERNAL_ERROR = "pttsync_internal_error"
"""Set (True) on the log record of an exception the node contained: a bug of ours."""
# A link's peer is told this node's addresses again at a tick after this many
# seconds without news: Bitcoin's nodes answer one getaddr a connection and
# re-announce once a day; a peer here also gets them at every link's start.
PEERS_REFRESH = 3600.0


class Connections:
    """Every connection of one node (see the module text).

    `links` is the node's connected peers by peer ID (this is where they are
    added and removed), `scopes` each live link's reader scope by `id(link)`
    (the door reads it), `visits` the links on a visit by `id(link)` (kept
    here, read by the door), `start_round(rt, link)` starts a sync round and
    `run_round(rt, link)` runs one to its end (a visit's), and `visited(news)`
    hears how each visit of ours went.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        config: NodeConfig,
        network: Network,
        topics: Mapping[bytes, TopicRuntime],
        links: dict[bytes, PeerLink],
        scopes: dict[int, trio.CancelScope],
        visits: dict[int, PeerLink],
        book: AddressBook,
        door: Door,
        dispatcher: Dispatcher,
        changes: Changes,
        verifier: Verifier | None,
        wake_dialer: Callable[[], None],
        start_round: Callable[[TopicRuntime, PeerLink], None],
        run_round: Callable[[TopicRuntime, PeerLink], Awaitable[bool]],
        visited: Callable[[bool], None] = lambda news: None,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.config = config
        self.network = network
        self.topics = topics
        self.links = links
        self.scopes = scopes
        self.visits = visits
        self.book = book
        self.door = door
        self.dispatcher = dispatcher
        self.changes = changes
        self.verifier = verifier
        self._wake_dialer = wake_dialer
        self._start_round = start_round
        self._run_round = run_round
        self._visited = visited
        self.gate = InboundGate(config.max_handshakes, config.max_handshakes_per_host)
        self.violations = 0  # connections closed for breaking the protocol
        self.internal_errors = 0  # connections closed by a bug of ours (logged with traceback)
        self.closed_traffic = LinkStats()  # the counters of connections that have ended
        self.opened = dict.fromkeys(Direction, 0)  # connections admitted, by direction
        self.visited = dict.fromkeys(Direction, 0)  # visits admitted: made, and taken
        self._verdicts: dict[int, tuple[int, str]] = {}  # a contained link's (penalty, reason)
        self._visit_ready: dict[int, trio.Event] = {}  # a visit of ours: admitted, or over

    async def on_inbound(self, stream: trio.abc.Stream, remote: str) -> None:
        """An inbound connection, if the gate (gate.py) has a place for one more."""
        release = self.gate.enter(remote.rpartition(":")[0] or remote)
        if release is None:
            log.info("turned away %s: too many connections not yet admitted", remote)
            await trio.aclose_forcefully(stream)
            return
        try:
            await self.run_link(stream, remote, Direction.INBOUND, None, admitted=release)
        finally:
            release()

    async def run_link(
        self,
        stream: trio.abc.Stream,
        address: str,
        direction: Direction,
        expect: bytes | None,
        visit: bool = False,
        *,
        admitted: Callable[[], None] | None = None,
    ) -> None:
        """Run one connection to its end; `admitted()` is called once the door lets it in.

        `visit`: the node dialed for a visit (one round, then closed)."""
        cfg = self.config
        outbound = direction is Direction.OUTBOUND
        try:
            channel = await self.network.secure(
                stream, self.identity, initiator=outbound, expect=expect,
                timeout=cfg.handshake_timeout,
            )  # fmt: skip
        except SelfConnectionError:
            log.info("%s is this node's own address: not dialed again", address)
            self.book.own(address, self.peer_id)
            self.changes.notify()
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        except (HandshakeError, ConnectionLostError) as exc:
            penalty = 3 if isinstance(exc, HandshakeError) else 1
            if isinstance(exc, HandshakeError) and not isinstance(exc, HandshakeTimeoutError):
                self.violations += 1  # a timeout is backed off, but blames nobody
            log.info("handshake with %s failed: %s", address, exc)
            if outbound:
                reason = f"handshake failed: {exc}"
                self.book.failed(address, trio.current_time(), penalty=penalty, reason=reason)
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        link = PeerLink(
            channel, direction=direction, address=address, local_id=self.peer_id,
            queue_size=cfg.send_queue, send_timeout=cfg.send_timeout, started=trio.current_time(),
        )  # fmt: skip
        link.visit = visit
        penalty, reason, violation = 0, "closed", False
        ready = trio.Event()  # a visit admitted, or the reader done: its rounds may go on
        if visit:
            self._visit_ready[id(link)] = ready
        try:
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as scope:
                    self.scopes[id(link)] = scope
                    nursery.start_soon(self._write, link, scope)
                    if visit:
                        nursery.start_soon(self._visit, link, scope, ready)
                    penalty, reason = await self._converse(link, admitted)
                ready.set()
                penalty, reason = self._verdicts.pop(id(link), (penalty, reason))
                violation = penalty > 0 and not link.refused
                link.close(reason)
                nursery.cancel_scope.deadline = trio.current_time() + 1  # flush a Bye, briefly
        finally:
            self.scopes.pop(id(link), None)
            self._verdicts.pop(id(link), None)
            self._visit_ready.pop(id(link), None)
            self.drop(link)
            await link.aclose()
            self._settle(link, penalty, reason, violation=violation)

    def _settle(self, link: PeerLink, penalty: int, reason: str, *, violation: bool) -> None:
        """A connection ended: its traffic kept, its end logged and the book told."""
        self.closed_traffic.add(link.stats)
        now = trio.current_time()
        # A peer refused at the door (not a member here, yet) is backed off
        # like a violator but not counted as one: its admission may simply
        # not have reached this node.
        if violation:
            self.violations += 1
            log.warning("closed %r: %s", link, reason)
        else:
            log.info("%s %r: %s", "refused" if penalty else "disconnected", link, reason)
        if violation or not link.visit:  # a visit's end tells nothing of the address
            outbound = link.direction is Direction.OUTBOUND
            self.book.ended(
                link.address if outbound else link.listen, now, lasted=now - link.started,
                penalty=penalty, reason=reason, sent_away=link.peer_bye is not None,
            )  # fmt: skip
        self.changes.notify()

    async def _write(self, link: PeerLink, reader: trio.CancelScope) -> None:
        """The link's writer; if the peer stopped taking data, its reader ends too."""
        await link.run_writer()
        if link.stalled:
            link.refused = True  # backed off, not a violation: a dead network looks the same
            self._verdicts.setdefault(id(link), (3, link.close_reason))
            reader.cancel()

    async def _converse(
        self, link: PeerLink, admitted: Callable[[], None] | None = None
    ) -> tuple[int, str]:
        """The reader: every frame to the link's conversation.  (penalty, why it ended)."""
        conv = Conversation(link, door=self.door, dispatcher=self.dispatcher)
        try:
            await link.send(self.door.hello(visit=link.visit))
            with trio.fail_after(self.config.handshake_timeout):
                frame = await link.receive_frame()
            replies = await feed(
                conv, link, frame, self.verifier, lambda: self._admit(link, admitted)
            )
        except RemoteProtocolError as exc:  # the channel's framing
            replies = conv.violated(exc)
        except ConnectionLostError as exc:
            return 0, str(exc)
        except trio.TooSlowError:
            link.refused = True  # silence: a dead network as likely as a bad peer
            return 3, "no Hello within the handshake timeout"
        except Exception as exc:  # a bug of ours: this connection fails, the node goes on
            return self.contain(link, exc)
        assert conv.ended is not None
        for m in replies:  # a Bye: never wait on a peer that does not read
            link.try_send(m)
        return conv.ended.penalty, conv.ended.reason

    def contain(self, link: PeerLink, exc: Exception) -> tuple[int, str]:
        """An unexpected exception while serving `link`: that connection's failure alone.

        It is logged with its traceback (marked INTERNAL_ERROR, which the test
        suite fails on), counted, and the link is closed and backed off
        without blaming the peer.  Returns the link's (penalty, reason).
        """
        self.internal_errors += 1
        log.error(
            "internal error while serving %r; that connection is closed, the node goes on",
            link, exc_info=exc, extra={INTERNAL_ERROR: True},
        )  # fmt: skip
        link.refused = True  # backed off, but the peer broke nothing
        link.try_send(Bye("internal error"))
        verdict = (1, f"internal error: {type(exc).__name__}: {exc}")
        scope = self.scopes.get(id(link))
        if scope is not None:  # the link is still served: its reader ends with this verdict
            self._verdicts[id(link)] = verdict
            scope.cancel()
        return verdict

    def _admit(self, link: PeerLink, admitted: Callable[[], None] | None) -> None:
        """The door let `link` in: register it, tell the dialer, start the first rounds."""
        if admitted is not None:
            admitted()
        if link.visit:
            self._welcome(link)
            return
        self._register(link)
        # A round carries news both ways, so the dialing side starts it alone
        # (both did: two rounds for one new connection).
        if link.direction is Direction.OUTBOUND:
            for rt in self.topics.values():
                if rt.topic_id in link.topics:
                    self._start_round(rt, link)

    def _welcome(self, link: PeerLink) -> None:
        """A visit let in: its addresses learnt, and its time bounded.  No `Peers` either
        way (they were two thirds of a visit's bytes): a visit is for one round."""
        self.visits[id(link)] = link
        self.visited[link.direction] += 1
        self._learn(link, reached=False)
        scope = self.scopes.get(id(link))
        if scope is not None:
            scope.deadline = trio.current_time() + self.config.round_timeout
        ready = self._visit_ready.get(id(link))
        if ready is not None:
            ready.set()
        log.info("%r on a visit (%d topics)", link, len(link.topics))

    async def _visit(self, link: PeerLink, reader: trio.CancelScope, ready: trio.Event) -> None:
        """The visitor's side: once admitted, one round per shared topic, then the end;
        `visited(news)` says whether the rounds moved any oplog either way.  `ready`
        is set when the door lets the visit in, or the reader stops first (refused,
        or the peer left)."""
        await ready.wait()
        if id(link) not in self.visits:
            return
        moved = 0
        for rt in self.topics.values():
            if rt.topic_id in link.topics and not link.closed:
                await self._run_round(rt, link)
                req = rt.requesters.get(link.peer_id)  # made for this visit: no other link
                if req is not None:
                    moved += req.stats.oplogs_sent + req.stats.oplogs_received
        if not link.closed:
            self._visited(moved > 0)
        self._verdicts.setdefault(id(link), (0, "visit over"))
        reader.cancel()

    def _learn(self, link: PeerLink, *, reached: bool = True) -> None:
        """The peer's addresses into the book, as reached (passed on in `Peers`) unless
        on a visit: visited addresses passed on grew every `Peers` message a node
        sends, on every anti-entropy tick (1,000 idle peers: 44 MB more in 20
        virtual minutes)."""
        now = trio.current_time()
        for address in (link.address if link.direction is Direction.OUTBOUND else "", link.listen):
            if address:
                self.book.add(address, link.peer_id, now=now)
                if reached:
                    self.book.connected(address, link.peer_id)

    def _register(self, link: PeerLink) -> None:
        self.links[link.peer_id] = link
        self._learn(link)
        link.try_send(self.peers_message(link))
        self.opened[link.direction] += 1
        for topic_id in link.topics:
            self.topics[topic_id].link_up(link)
        log.info("connected %r (%d topics)", link, len(link.topics))
        self.changes.notify()

    def drop(self, link: PeerLink) -> None:
        if self.visits.get(id(link)) is link:
            del self.visits[id(link)]
            for rt in self.topics.values():  # the round's state, unless the peer is linked
                if rt.topic_id in link.topics and link.peer_id not in self.links:
                    rt.forget(link.peer_id)
            return
        if self.links.get(link.peer_id) is link:
            del self.links[link.peer_id]
            for rt in self.topics.values():
                rt.forget(link.peer_id)
            self._wake_dialer()
            self.changes.notify()

    def peers_message(self, link: PeerLink) -> Peers:
        """Where else peers are: up to MAX_PEERS_LISTED addresses this node reached,
        drawn at random, for `link`'s peer (which is told them now)."""
        link.told = (self.book.news, trio.current_time())
        known = [(p, a) for p, a in self.book.known(MAX_PEERS_LISTED + 1) if p != link.peer_id]
        return Peers(tuple(known[:MAX_PEERS_LISTED]))

    def peers_news(self, link: PeerLink) -> Peers | None:
        """The `Peers` message for an anti-entropy tick on `link`, if there is news for
        its peer: an address this node reached since it last told it (the book's
        `news` moved), or none told for PEERS_REFRESH (a new draw, where the node
        knows more than one message holds).  Else None: a converged network's
        ticks carried the same addresses every time, 614 bytes a tick, more than
        the sync round itself (network.md, "Join and peer exchange")."""
        told = link.told
        if (
            told is not None
            and told[0] == self.book.news
            and trio.current_time() - told[1] < PEERS_REFRESH
        ):
            return None
        return self.peers_message(link)
