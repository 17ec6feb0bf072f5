"""The door: who a connection is let in for, and what a node shows at it.

After the secure handshake each side sends a `Hello` (its listen address,
its topics, its agent, and its credentials: the governance oplogs that make
it a member); the door then keeps only the topics whose governance makes
the other side a member now (taking the credentials first if it does not
know them), breaks ties between duplicate connections, and refuses a peer
for lack of room after telling it where else to go.  Every refusal is
recorded (refusals.py), for `pttsync peers` and the metrics.  After a governance
change `recheck_links` drops each peer from the topics it left.
network.md, "Membership at the door", gives the rules and their reasons.

A `Node` (node.py) owns one `Door` and gives it what it works with: the
node's topics, its links and their reader scopes (to close a replaced
connection), and three things of the node's: its listen address (it
changes), how to drop a link, and the `Peers` message for a refused peer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from ..core.oplogcodec import decode_oplog, encode_oplog
from ..errors import InvalidOplogError, RemoteProtocolError
from .peer import Direction
from .refusals import NO_ROOM, NOT_MEMBER
from .wire import MAX_CREDENTIALS, Hello, Peers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..core.oplog import Oplog
    from .peer import PeerLink
    from .refusals import Refusals
    from .topicruntime import TopicRuntime

log = logging.getLogger(__name__)

AGENT = "pttsync/0.1"
MAX_VISITS = 2
"""Visits a node takes at once (network.md, "Visits"): each is a connection for one
sync round, outside `max_peers`, so a full node still answers one; bounded, so
visits cannot take what the slots bound."""
VISIT_GRACE = 10.0
"""Seconds an inbound visit holds its place against newer ones (from its connection's
start).  With every place taken, a new visit displaces the oldest visit past this:
a visitor that stalls (a hostile member, or a peer gone quiet) holds a place only
until somebody else comes, not for its round's whole `round_timeout`.  An honest
visit is a handshake and one round, a round trip or a few; ten seconds is the
handshake's own timeout."""


class Door:
    """The door of a node (see the module text).

    `topics` and `links` are the node's (by topic and by peer ID), and
    `scopes` the cancel scope of each link's reader, by `id(link)`: the door
    reads them, never changes them.  `listen_address()` is the node's listen
    address now; `drop(link)` forgets a link that was replaced;
    `peers_message(link)` is the `Peers` message for a peer refused for lack
    of room.  `visits` are the links on a visit now, by `id(link)` (both ways).
    """

    def __init__(
        self,
        peer_id: bytes,
        *,
        topics: Mapping[bytes, TopicRuntime],
        links: Mapping[bytes, PeerLink],
        scopes: Mapping[int, trio.CancelScope],
        visits: Mapping[int, PeerLink],
        max_peers: int,
        clock: Callable[[], int],
        listen_address: Callable[[], str | None],
        drop: Callable[[PeerLink], None],
        peers_message: Callable[[PeerLink], Peers],
        refusals: Refusals,
        monotonic: Callable[[], float] = trio.current_time,
    ) -> None:
        self.peer_id = peer_id
        self.topics = topics
        self.links = links
        self.scopes = scopes
        self.visits = visits
        self.max_peers = max_peers
        self.clock = clock
        self.listen_address = listen_address
        self._drop = drop
        self._peers_message = peers_message
        self.refusals = refusals
        self._monotonic = monotonic
        self.visits_displaced = 0

    def hello(self, *, visit: bool = False) -> Hello:
        """This node's Hello: its listen address, its topics and its credentials (and
        whether it comes on a visit)."""
        creds: list[bytes] = []
        for rt in self.topics.values():
            room = MAX_CREDENTIALS - len(creds)
            creds += [encode_oplog(o) for o in rt.credentials(room)] if room > 0 else []
        return Hello(self.listen_address() or "", tuple(self.topics), AGENT, tuple(creds), visit)

    def admit(self, link: PeerLink, hello: Hello) -> tuple[int, str] | None:
        """None if the link may stay, else (penalty, reason)."""
        link.listen, link.agent = self._listen_of(link, hello.listen), hello.agent
        link.visit = link.visit or hello.visit  # ours (we dialed for one), or the peer's
        now = self.clock()
        if hello.credentials and not all(
            self.topics[t].admits(link.peer_id, now) for t in hello.topics if t in self.topics
        ):
            self._take_credentials(hello.credentials, now)
        link.topics = frozenset(
            t for t in hello.topics if t in self.topics and self.topics[t].admits(link.peer_id, now)
        )
        if not link.topics:
            for rt in self.topics.values():
                rt.stats.refused += 1
            link.refused = True
            reason = "not a member of any topic this node serves"
            self.refusals.add(link.peer_id, self._where(link), NOT_MEMBER, reason, now)
            return 3, reason
        existing = self.links.get(link.peer_id)
        # One connection a peer, visits included: a peer's round state is kept by its
        # ID, and a connection's end forgets it.
        visiting = any(v.peer_id == link.peer_id for v in self.visits.values())
        if link.visit:
            return self._admit_visit(link, existing is not None or visiting, now)
        if visiting:
            return 0, "already connected (on a visit)"
        if existing is not None:
            preferred = min(self.peer_id, link.peer_id)
            if link.initiator == preferred and existing.initiator != preferred:
                self._end(existing, "replaced by the connection its peer dialed")
                self._drop(existing)
            else:
                return 0, "already connected"
        if len(self.links) >= self.max_peers:
            link.try_send(self._peers_message(link))  # where else to go (as gossipsub's PX)
            reason = f"too many peers (at most {self.max_peers})"
            self.refusals.add(link.peer_id, self._where(link), NO_ROOM, reason, now)
            return 0, reason
        self.refusals.forget(link.peer_id)
        return None

    def _admit_visit(self, link: PeerLink, linked: bool, now: int) -> tuple[int, str] | None:
        """A visit: let in whatever the slots, unless the peer is connected already (a
        visit never replaces a link) or `MAX_VISITS` peers visit us now, each for
        less than `VISIT_GRACE` (else the oldest of them makes room)."""
        if linked:
            return 0, "already connected"
        if link.direction is not Direction.INBOUND:
            return None
        inbound = [v for v in self.visits.values() if v.direction is Direction.INBOUND]
        if len(inbound) < MAX_VISITS:
            return None
        oldest = min(inbound, key=lambda v: v.started)
        lasted = self._monotonic() - oldest.started
        if lasted >= VISIT_GRACE:
            self._displace(oldest, lasted)
            return None
        link.try_send(self._peers_message(link))
        reason = f"too many visits (at most {MAX_VISITS})"
        self.refusals.add(link.peer_id, self._where(link), NO_ROOM, reason, now)
        return 0, reason

    def _displace(self, visit: PeerLink, lasted: float) -> None:
        """Close a visit that held its place past `VISIT_GRACE`, for a newer one (not a
        violation: a slow honest visitor is displaced too, and visits again later)."""
        self.visits_displaced += 1
        log.info("%r displaced: on a visit for %.1f s, and another came", visit, lasted)
        self._end(visit, f"a visit of {lasted:.0f} s displaced by a newer one")
        self._drop(visit)

    def _end(self, link: PeerLink, reason: str) -> None:
        """Close `link` and stop its reader (its connection then ends as any does)."""
        link.close(reason)
        scope = self.scopes.get(id(link))
        if scope is not None:
            scope.cancel()

    @staticmethod
    def _where(link: PeerLink) -> str:
        """Where a refused peer can be found: where it listens, else where it came from."""
        return link.listen or link.address

    def _take_credentials(self, raw: tuple[bytes, ...], now: int) -> None:
        """Store the valid governance oplogs a peer showed (verified like any other)."""
        by_topic: dict[bytes, list[Oplog]] = {}
        for body in raw:
            try:
                oplog = decode_oplog(body)
            except InvalidOplogError as exc:
                raise RemoteProtocolError(f"bad credentials in Hello: {exc}") from exc
            if oplog.topic_id in self.topics:
                by_topic.setdefault(oplog.topic_id, []).append(oplog)
        for topic_id, oplogs in by_topic.items():
            self.topics[topic_id].accept_credentials(oplogs, now)

    def recheck_links(self) -> None:
        """After a governance change: drop each peer from the topics it left, and
        close the connection of a peer left with none."""
        now = self.clock()
        for rt in self.topics.values():
            rt.refresh_role()
        for link in list(self.links.values()):
            kept = frozenset(t for t in link.topics if self.topics[t].admits(link.peer_id, now))
            for t in link.topics - kept:
                self.topics[t].forget(link.peer_id)
            link.topics = kept
            if not link.topics:
                self._end(link, "no longer a member of any topic here")

    def _listen_of(self, link: PeerLink, listen: str) -> str:
        """The peer's listen address, its wildcard host replaced by where it came from."""
        if not listen:
            return ""
        host, _, port = listen.rpartition(":")
        if host in ("0.0.0.0", "[::]") and link.direction is Direction.INBOUND:
            seen = link.address.rpartition(":")[0]
            return f"{seen}:{port}" if seen else listen
        return listen
