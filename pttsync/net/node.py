"""The node: a data directory's topics served to peers over a network.

    async with pttsync.open_node("/tmp/a", listen="127.0.0.1:7400") as node:
        await node.put("greeting", "hello")

`serve_node(..., task_status)` is the same node as a task (trio's `serve_*`
convention: `task_status.started(node)` once it listens); `open_node` runs
it in a nursery for the body of an `async with`.

What runs inside (all in one nursery):

* the listener and the dialer: every connection gets a Noise XX handshake
  (transport.py), then a `Hello` each way; the door admits the peer to
  the topics whose governance makes it a member, and closes the connection
  if there are none.  Peers then exchange the addresses they know;
* one reader task per connection (connections.py): its conversation
  (conversation.py) decodes every frame and dispatches (dispatch.py)
  sync requests to the topic's Receiver, replies to its Requester, pushes
  to HandleOplogs;
* per topic: the pusher, the anti-entropy loop (a round with one random
  peer every `sync_interval`, jittered, and at once with each new peer),
  and the HandleFailedOplogs timer;
* visits: about every `visit_interval`, one round with a random known
  peer it has no link to (a master it wants, if stranded), over a
  connection of its own (connections.py);
* the control socket the CLI talks to (control.py), in the data directory.

A node is made of components, each given what it works with: a
`TopicRuntime` per topic (topicruntime.py), the `Door` (door.py), the
`Dialer` (dialer.py), the `Connections` that run each connection from its
handshake to its end (connections.py), the `Dispatcher` of each admitted
peer's messages (dispatch.py) and the application API, `NodeAPI`
(nodeapi.py), whose public methods the node offers as its own.

A peer that breaks the protocol is sent a `Bye`, disconnected and its
address backed off; the node itself never stops because of a peer.
"""

from __future__ import annotations

import functools
import logging
import random
from typing import TYPE_CHECKING, Any

import trio

from ..core.identity import peer_id_text
from ..core.timeutil import NS_PER_SECOND
from ..watching import DEFAULT_BUFFER
from .addressbook import AddressBook
from .changes import Changes, CommitWatcher
from .config import NodeConfig
from .connections import Connections
from .control import serve_control
from .controlwire import CONTROL_SOCKET
from .dialer import Dialer
from .dispatch import Dispatcher
from .door import Door
from .inbox import Verifier
from .network import Network, TcpNetwork
from .nodeapi import NodeAPI
from .peer import Direction
from .refusals import Refusals
from .timers import sleep
from .topicruntime import TopicRuntime

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path

    from ..core.documents.derive import DocState
    from ..core.documents.docstore import DocumentStore, Write
    from ..core.documents.history import History
    from ..core.identity import Identity
    from ..core.lifecycle.governance import Role
    from ..core.oplog import OplogStatus
    from ..core.store import Store
    from ..core.topic import TopicInfo
    from ..watching import Watch
    from .peer import PeerLink

log = logging.getLogger(__name__)

MAX_REFERRALS = 64  # peers named by wanted masters, dialed like them
MAX_VISIT_BACKOFF = 16
"""A visit that found nothing to move doubles the wait for the next, up to this many
`visit_interval`s; one that moved an oplog brings it back to one (Trickle, RFC 6206)."""


class Node:
    """A running pttsync node (make one with `open_node` or `serve_node`)."""

    def __init__(
        self,
        identity: Identity,
        store: Store,
        *,
        config: NodeConfig | None = None,
        network: Network | None = None,
        data_path: Path | None = None,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.store = store
        self.config = config = config or NodeConfig()
        self.network: Network = network or TcpNetwork()
        self.data_path = data_path
        self.clock = config.clock
        self.rng = random.Random(config.seed)
        self.links: dict[bytes, PeerLink] = {}
        self.topics: dict[bytes, TopicRuntime] = {}
        for info in store.topics():
            rt = TopicRuntime(
                store, info, identity, config=config.sync, clock=self.clock, links=self.links,
                push_queue=config.push_queue, seen_cache=config.seen_cache,
                push_max_age=config.push_max_age, push_mesh=config.push_mesh, rng=self.rng,
                announce_every=round(config.announce_every * NS_PER_SECOND),
            )  # fmt: skip
            self.topics[info.topic_id] = rt
        self.book = AddressBook(self.rng, base=config.backoff_base, cap=config.backoff_max)
        for address in config.join:
            self.book.add(address, pinned=True)
        self.listen_address: str | None = None
        self.started_at = 0.0
        self.refusals = Refusals()  # peers refused at the door lately (refusals.py)
        self.changes = Changes()
        scopes: dict[int, trio.CancelScope] = {}
        visits: dict[int, PeerLink] = {}
        # Visits draw from their own stream: the rest of a seeded run's choices
        # are the same whether or not it makes visits.
        self._visit_rng = random.Random(None if config.seed is None else f"{config.seed}/visits")
        self._visit_backoff = 1  # visit_interval times this between visits
        self._visit_soon = trio.Event()  # set: masters came to be wanted during a backoff
        self._visit_patient = False  # the visits wait out a backoff now
        self._nursery: trio.Nursery | None = None
        self.door = Door(
            self.peer_id, topics=self.topics, links=self.links, scopes=scopes, visits=visits,
            max_peers=config.max_peers, clock=self.clock,
            listen_address=lambda: self.listen_address,
            # The door and the dialer call into the connections, made below with them:
            drop=lambda link: self.connections.drop(link),  # noqa: PLW0108 - bound late
            peers_message=lambda link: self.connections.peers_message(link),  # noqa: PLW0108
            refusals=self.refusals,
        )  # fmt: skip
        watcher = CommitWatcher(self.changes.notify, self.door.recheck_links)
        for rt in self.topics.values():
            rt.replica.observers.append(watcher)
        self._stranded_since: float | None = None  # since when masters have been wanted
        self._masters_wanted: frozenset[bytes] = frozenset()  # what the dialer dials first
        self._referrals: dict[bytes, None] = {}  # the peers a wanted master named, in order
        self.dialer = Dialer(
            self.peer_id, book=self.book, links=self.links, config=config, network=self.network,
            listen_address=lambda: self.listen_address,
            run_link=lambda *link: self.connections.run_link(*link),  # noqa: PLW0108
            out_of_reach=lambda: self._masters_wanted.union(self._referrals),
        )  # fmt: skip
        self.dispatcher = Dispatcher(
            self.peer_id, topics=self.topics, book=self.book, book_changed=self.dialer.wake,
            referred=self._referred,
        )  # fmt: skip
        self.connections = Connections(
            identity, config=config, network=self.network, topics=self.topics,
            links=self.links, scopes=scopes, visits=visits, book=self.book, door=self.door,
            dispatcher=self.dispatcher, changes=self.changes,
            verifier=Verifier() if config.verify_ahead else None,
            wake_dialer=self.dialer.wake, start_round=self._start_round, run_round=self._round,
            visited=self._visited,
        )  # fmt: skip
        self.gate = self.connections.gate
        self.api = NodeAPI(
            self.peer_id, store, topics=self.topics, links=self.links, config=config,
            clock=self.clock, rng=self.rng, data_path=data_path, running=self,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<Node {peer_id_text(self.peer_id)[:12]} {self.listen_address or '-'}>"

    @property
    def turned_away(self) -> int:
        """Inbound connections closed unread: the gate had no place left (gate.py)."""
        return self.gate.turned_away

    @property
    def visits(self) -> dict[str, int]:
        """Visits admitted since the node started: made to peers, and taken from them;
        and of those taken, the ones displaced by a newer visit (door.py, VISIT_GRACE)."""
        done = self.connections.visited
        return {
            "made": done[Direction.OUTBOUND],
            "taken": done[Direction.INBOUND],
            "displaced": self.door.visits_displaced,
        }

    @property
    def violations(self) -> int:
        """Connections closed because the peer broke the protocol."""
        return self.connections.violations

    @property
    def internal_errors(self) -> int:
        """Connections closed by a bug of ours (each logged with its traceback)."""
        return self.connections.internal_errors

    @property
    def _book_changed(self) -> trio.Event:
        """The dialer's wake-up: set it after adding to `book` by hand."""
        return self.dialer.changed

    # -- running -----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[Node] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; `task_status.started(self)` once listening."""
        cfg = self.config
        self.started_at = trio.current_time()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if cfg.listen:
                self.listen_address = await nursery.start(
                    self.network.serve, cfg.listen, self.connections.on_inbound
                )
            for rt in self.topics.values():
                if cfg.push:
                    nursery.start_soon(
                        functools.partial(rt.run_push, self.links.values, every=cfg.push_every)
                    )
                nursery.start_soon(self._anti_entropy, rt)
                nursery.start_soon(self._housekeeping, rt)
            await nursery.start(self.dialer.run, nursery)
            if cfg.visit_interval and self.topics:
                nursery.start_soon(self._visits)
            if cfg.control and self.data_path is not None:
                await nursery.start(serve_control, self.api, self.data_path / CONTROL_SOCKET)
            log.info("node %s up: %d topics, listening on %s", self, len(self.topics),
                     self.listen_address)  # fmt: skip
            task_status.started(self)

    def close(self) -> None:
        for rt in self.topics.values():
            rt.close()

    async def next_change(self) -> None:
        """Return after the next commit, or connection change, on this node."""
        await self.changes.next()

    async def wait_for(self, predicate: Any) -> None:
        """Wait until `predicate()` is true, re-checking after every commit and link change."""
        await self.changes.until(predicate)

    # -- the application API (nodeapi.py has them and says more) ---------------------------

    def select_topic(self, text: str | None = None) -> TopicInfo:
        """A topic by hex ID or unique prefix, or the first one (UsageError if none)."""
        return self.api.select_topic(text)

    def topic(self, topic: bytes | None = None) -> TopicRuntime:
        """The runtime of `topic` (an ID), or of the first topic."""
        return self.api.topic(topic)

    def documents(self, topic: bytes | None = None) -> DocumentStore:
        return self.api.documents(topic)

    async def put(self, key: str, value: Any, *, topic: bytes | None = None) -> Write:
        """Write a document; durable on return, then pushed to peers."""
        return await self.api.put(key, value, topic=topic)

    async def delete(self, key: str, *, topic: bytes | None = None) -> Write:
        return await self.api.delete(key, topic=topic)

    async def resolve(self, key: str, value: Any, *, topic: bytes | None = None) -> Write:
        return await self.api.resolve(key, value, topic=topic)

    def get(self, key: str, *, topic: bytes | None = None) -> DocState | None:
        """The document as it shows now; None if never written.

        A deleted document is returned with `exists` False (who deleted it, and when).
        """
        return self.api.get(key, topic=topic)

    def history(self, key: str, *, topic: bytes | None = None, limit: int = 1000) -> History | None:
        """Every version of the document held here, with its conflicts and resolutions."""
        return self.api.history(key, topic=topic, limit=limit)

    def items(
        self,
        prefix: str = "",
        *,
        topic: bytes | None = None,
        after: str | None = None,
        limit: int = 100,
        deleted: bool = False,
    ) -> list[DocState]:
        return self.api.items(prefix, topic=topic, after=after, limit=limit, deleted=deleted)

    def watch(
        self, *, topic: bytes | None = None, buffer: int = DEFAULT_BUFFER
    ) -> AbstractContextManager[Watch]:
        """Changes to the topic's documents, as an async iterator (pttsync.watch)."""
        return self.api.watch(topic=topic, buffer=buffer)

    async def set_role(
        self, peer_id: bytes, role: Role, *, topic: bytes | None = None
    ) -> OplogStatus:
        """Make `peer_id` a member, a master or nobody (this node must be a master)."""
        return await self.api.set_role(peer_id, role, topic=topic)

    def members(self, *, topic: bytes | None = None) -> dict[str, Any]:
        return self.api.members(topic=topic)

    async def sync_now(self, peer_id: bytes | None = None, *, topic: bytes | None = None) -> bool:
        """Run one sync round now, with `peer_id` or a random connected member.

        True if a round ran to completion.
        """
        return await self.api.sync_now(peer_id, topic=topic)

    def peers(self) -> list[dict[str, Any]]:
        """The connected peers, JSON-ready."""
        return self.api.peers()

    def peer_view(self) -> dict[str, Any]:
        """Connected peers, other known addresses and why, refusals (`pttsync peers`)."""
        return self.api.peer_view()

    def digests(self) -> dict[bytes, bytes]:
        return self.api.digests()

    def status(self) -> dict[str, Any]:
        """The node's state, JSON-ready (`pttsync status --json`)."""
        return self.api.status()

    def pending_count(self) -> int:
        return self.api.pending_count()

    # -- timers ---------------------------------------------------------------------------

    def _want_masters(self) -> None:
        """Work out the masters the dialer dials first (`TopicRuntime.masters_wanted`:
        none reachable, or one still to sign a pending oplog stuck here), once they have
        been wanted for a sync interval; wake the dialer if there are any.  Not at once:
        a node just started knows no way to a master until its first peer's `Route`,
        and a route lost with a link is found again by the next.  Run on every
        anti-entropy tick (not on every wake of the dialer: a pending oplog's masters
        cost a scan of the pending oplogs)."""
        stuck_before = self.clock() - round(self.config.sync_interval * NS_PER_SECOND)
        masters = frozenset().union(
            *(rt.masters_wanted(self.links, stuck_before) for rt in self.topics.values())
        )
        now = trio.current_time()
        if not masters:
            self._stranded_since = None
        elif self._stranded_since is None:
            self._stranded_since = now
        since = self._stranded_since
        wanted = since is not None and now - since >= self.config.sync_interval
        self._masters_wanted = masters if wanted else frozenset()
        if self._masters_wanted:
            self.dialer.wake()
            if self._visit_patient and self._stuck():
                self._visit_soon.set()
        else:
            self._referrals.clear()

    def _referred(self, by: bytes, peers: list[bytes]) -> None:
        """`Peers` from `by`: if it is a master this node wants, the peers it named are
        dialed like it (the newest `MAX_REFERRALS`).  A master with no slot left sends
        a peer its `Peers` as it refuses it, and those peers reached the master: a
        part whose masters were all full stayed apart (the simulator, three slots a
        node: `--peers 40 --writes 20 --seed 109 --masters 2 --max-peers 3 --hot 0
        --deletes 0.3`, with no fault at all)."""
        if by not in self._masters_wanted:
            return
        for peer in peers:
            self._referrals.pop(peer, None)
            self._referrals[peer] = None
        while len(self._referrals) > MAX_REFERRALS:
            del self._referrals[next(iter(self._referrals))]

    def _start_round(self, rt: TopicRuntime, link: PeerLink) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._round, rt, link)

    async def _round(self, rt: TopicRuntime, link: PeerLink) -> bool:
        try:
            ok = await rt.sync_round(link, limit=self.config.round_timeout)
        except Exception as exc:  # a bug of ours: the round's connection fails alone
            self.connections.contain(link, exc)
            ok = False
        self.changes.notify()
        return ok

    async def _anti_entropy(self, rt: TopicRuntime) -> None:
        while True:
            await sleep(self.config.sync_interval * self.rng.uniform(0.5, 1.5))
            links = [
                ln for ln in self.links.values()
                if rt.topic_id in ln.topics and not rt.round_running(ln.peer_id)
            ]  # fmt: skip
            if links:
                link = self.rng.choice(sorted(links, key=lambda ln: ln.peer_id))
                if (news := self.connections.peers_news(link)) is not None:
                    link.try_send(news)
                self._start_round(rt, link)
            # Pending oplogs are routed on towards a signer even with push off:
            # a sync round carries them only to a signer one hop away.
            rt.pusher.relay_pending(list(self.links.values()), unreached_only=not self.config.push)
            self._want_masters()

    async def _visits(self) -> None:
        """About every `visit_interval` (jittered as the rounds are), visit a known peer
        this node has no link to, drawn at random: one round with it outside the slots
        (connections.py).  Linked peers' rounds cannot leave the part of the network
        their links form; with few slots a node, parts can stay apart for good (the
        simulator, three slots a node: `--peers 40 --writes 40 --seed 676 --masters 3
        --write-by masters --max-peers 3 --partition 20:36 --crash 1
        --masters-offline 20:43`).  A node stranded (`_want_masters`) visits the
        masters it wants, and with oplogs stuck here, without backing off and at
        once if it was: with all their slots and their referrals' in use, nothing
        else reaches them (`--peers 20 --writes 80
        --seed 927 --partition 9:26 --churn 3 --max-peers 3`)."""
        rng = self._visit_rng
        while True:
            wait = self.config.visit_interval * (1 if self._stuck() else self._visit_backoff)
            self._visit_soon, self._visit_patient = trio.Event(), wait > self.config.visit_interval
            with trio.move_on_after(wait * rng.uniform(0.5, 1.5)):
                await self._visit_soon.wait()
            if self._visit_soon.is_set():
                continue  # masters are wanted: visit within one interval, not the backoff
            mine = self.listen_address
            known = [
                e for e in self.book.entries()
                if e.address != mine and e.peer_id != self.peer_id and e.peer_id not in self.links
            ]  # fmt: skip
            # Stranded (a pending oplog stuck, or no way to a master): visit a master
            # wanted.  A visit is let in whatever the slots, and its round's postsync
            # has the master sign; a dial is refused by a master with no slot left.
            masters = [e for e in known if e.peer_id in self._masters_wanted]
            if masters or known:
                entry = rng.choice(masters or known)
                self.dialer.visit(entry.address, entry.peer_id)

    def _stuck(self) -> bool:
        """Masters are wanted (`_want_masters`) and oplogs wait here for signatures:
        visits do not back off then.  (A node merely with no way to a master, and
        nothing pending, backs off as any: a visit would bring it nothing.)"""
        return bool(self._masters_wanted) and self.api.pending_count() > 0

    def _visited(self, news: bool) -> None:
        """A visit of ours ended: sooner again if it moved an oplog, else later (up to
        MAX_VISIT_BACKOFF times `visit_interval`).  A network that converged pays
        for a visit a node every quarter hour, not every minute; a split part
        whose visits keep finding news keeps visiting every minute."""
        self._visit_backoff = 1 if news else min(2 * self._visit_backoff, MAX_VISIT_BACKOFF)

    async def _housekeeping(self, rt: TopicRuntime) -> None:
        """HandleFailedOplogs and a scrub batch (config.py) every `failed_interval`."""
        while True:
            changed = bool(self.config.scrub_batch) and rt.scrub(self.config.scrub_batch)
            if changed:
                self.changes.notify()
            await sleep(self.config.failed_interval)
            if rt.handle_failed_oplogs():
                self.changes.notify()
