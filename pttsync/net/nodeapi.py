"""What an application (and the control socket) asks of a running node.

A `Node` (node.py) owns one `NodeAPI` (`node.api`) and offers its public
methods too; they are here so the connection machinery and the
application API each stay one module.  Every write is durable when its
call returns: the store commits it with fsync (SQLite `synchronous=FULL`)
before the write is acknowledged, and the push to peers happens after.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..core.identity import peer_id_text
from ..core.oplog import OplogStatus
from ..datadir import select_topic
from ..errors import UsageError
from ..watching import DEFAULT_BUFFER, watch
from .peerview import known_json, refused_json, unconnected

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Mapping
    from contextlib import AbstractContextManager
    from pathlib import Path

    from ..core.documents.derive import DocState
    from ..core.documents.docstore import DocumentStore, Write
    from ..core.documents.history import History
    from ..core.lifecycle.governance import Role
    from ..core.store import Store
    from ..core.topic import TopicInfo
    from ..watching import Watch
    from .addressbook import AddressBook
    from .config import NodeConfig
    from .peer import PeerLink
    from .refusals import Refusals
    from .topicruntime import TopicRuntime


class RunState(Protocol):
    """What the status report shows of a node that changes as it runs (Node has it)."""

    @property
    def listen_address(self) -> str | None: ...

    @property
    def started_at(self) -> float: ...

    @property
    def violations(self) -> int: ...

    @property
    def internal_errors(self) -> int: ...

    @property
    def turned_away(self) -> int: ...

    @property
    def visits(self) -> dict[str, int]: ...

    @property
    def book(self) -> AddressBook: ...

    @property
    def refusals(self) -> Refusals: ...


class NodeAPI:
    """The application side of a node (see the module text).

    `topics` and `links` are the node's (by topic and by peer ID): the API
    reads them, never changes them.  `rng` is the node's random source (the
    peer `sync_now` picks), `running` what changes as the node runs.
    """

    def __init__(
        self,
        peer_id: bytes,
        store: Store,
        *,
        topics: Mapping[bytes, TopicRuntime],
        links: Mapping[bytes, PeerLink],
        config: NodeConfig,
        clock: Callable[[], int],
        rng: random.Random,
        data_path: Path | None,
        running: RunState,
    ) -> None:
        self.peer_id = peer_id
        self.store = store
        self.topics = topics
        self.links = links
        self.config = config
        self.clock = clock
        self.rng = rng
        self.data_path = data_path
        self.running = running

    # -- topics ----------------------------------------------------------------------------

    def select_topic(self, text: str | None = None) -> TopicInfo:
        """A topic by hex ID or unique prefix, or the first one (UsageError if none)."""
        return select_topic(self.store, text)

    def topic(self, topic: bytes | None = None) -> TopicRuntime:
        """The runtime of `topic` (an ID), or of the first topic."""
        if topic is None:
            if not self.topics:
                raise UsageError("this node holds no topic")
            return next(iter(self.topics.values()))
        rt = self.topics.get(topic)
        if rt is None:
            raise UsageError(f"this node holds no topic {topic.hex()}")
        return rt

    def documents(self, topic: bytes | None = None) -> DocumentStore:
        return self.topic(topic).docs

    # -- documents ---------------------------------------------------------------------------

    def _writable(self, topic: bytes | None) -> TopicRuntime:
        """The topic, if this peer may write in it now (else a UsageError that says why)."""
        rt = self.topic(topic)
        if not rt.admits(self.peer_id):
            raise UsageError(
                f"this peer is not a member of topic {rt.topic_id.hex()[:16]}… (yet): a master"
                f" admits it with `pttsync member add --data DIR {peer_id_text(self.peer_id)}`,"
                " then this peer learns it by syncing with a peer that knows"
            )
        return rt

    async def put(self, key: str, value: Any, *, topic: bytes | None = None) -> Write:
        """Write a document; durable on return, then pushed to peers."""
        write = self._writable(topic).docs.put(key, value, now=self.clock())
        await trio.lowlevel.checkpoint()
        return write

    async def delete(self, key: str, *, topic: bytes | None = None) -> Write:
        write = self._writable(topic).docs.delete(key, now=self.clock())
        await trio.lowlevel.checkpoint()
        return write

    async def resolve(self, key: str, value: Any, *, topic: bytes | None = None) -> Write:
        write = self._writable(topic).docs.resolve(key, value, now=self.clock())
        await trio.lowlevel.checkpoint()
        return write

    def get(self, key: str, *, topic: bytes | None = None) -> DocState | None:
        """The document as it shows now; None if never written.

        A deleted document is returned with `exists` False (who deleted it, and when).
        """
        return self.topic(topic).docs.get(key)

    def items(
        self,
        prefix: str = "",
        *,
        topic: bytes | None = None,
        after: str | None = None,
        limit: int = 100,
        deleted: bool = False,
    ) -> list[DocState]:
        return self.topic(topic).docs.items(
            prefix=prefix, after=after or "", limit=limit, deleted=deleted
        )

    def history(self, key: str, *, topic: bytes | None = None, limit: int = 1000) -> History | None:
        """Every version of the document held here, oldest first: the newest `limit`
        (1..10,000), with their conflicts and resolutions; None if never written here."""
        return self.topic(topic).docs.history(key, limit=limit)

    def watch(
        self, *, topic: bytes | None = None, buffer: int = DEFAULT_BUFFER
    ) -> AbstractContextManager[Watch]:
        """Changes to the topic's documents, as an async iterator (pttsync.watch)."""
        return watch(self.topic(topic).docs, buffer=buffer)

    # -- governance ---------------------------------------------------------------------------

    async def set_role(
        self, peer_id: bytes, role: Role, *, topic: bytes | None = None
    ) -> OplogStatus:
        """Make `peer_id` a member, a master or nobody (this node must be a master)."""
        _oplog, status = self.topic(topic).replica.set_role(peer_id, role, now=self.clock())
        await trio.lowlevel.checkpoint()
        return status

    def members(self, *, topic: bytes | None = None) -> dict[str, Any]:
        """The topic's members and masters now, by its governance, JSON-ready.

        `{"topic", "members": [{"peer_id", "role": "master" | "member"}], "masters"}`,
        in peer ID order; `masters` are the peer IDs of the members that are masters.
        """
        rt = self.topic(topic)
        roles = rt.replica.fold.governance.members(self.clock())
        members = [
            {"peer_id": peer_id_text(p), "role": roles[p].name.lower()} for p in sorted(roles)
        ]
        return {
            "topic": rt.topic_id.hex(),
            "members": members,
            "masters": [m["peer_id"] for m in members if m["role"] == "master"],
        }

    # -- sync ---------------------------------------------------------------------------------

    async def sync_now(self, peer_id: bytes | None = None, *, topic: bytes | None = None) -> bool:
        """Run one sync round now, with `peer_id` or a random connected member.

        True if a round ran to completion.
        """
        rt = self.topic(topic)
        links = [ln for ln in self.links.values() if rt.topic_id in ln.topics]
        if peer_id is not None:
            links = [ln for ln in links if ln.peer_id == peer_id]
        if not links:
            return False
        link = self.rng.choice(sorted(links, key=lambda ln: ln.peer_id))
        return await rt.sync_round(link, limit=self.config.round_timeout)

    # -- reporting ------------------------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        """The connected peers, JSON-ready."""
        return [
            self._peer_json(ln) for ln in sorted(self.links.values(), key=lambda ln: ln.peer_id)
        ]

    def _peer_json(self, link: PeerLink) -> dict[str, Any]:
        return {
            "peer_id": peer_id_text(link.peer_id),
            "address": link.address,
            "listen": link.listen,
            "direction": link.direction.value,
            "agent": link.agent,
            "topics": sorted(t.hex() for t in link.topics),
            "connected_s": round(trio.current_time() - link.started, 3),
            "messages_sent": link.stats.messages_sent,
            "messages_received": link.stats.messages_received,
            "bytes_sent": link.stats.bytes_sent,
            "bytes_received": link.stats.bytes_received,
            "pushes_dropped": link.stats.dropped,
        }

    def peer_view(self) -> dict[str, Any]:
        """Connected peers, known addresses not connected and why, and the peers
        refused at the door in the last hour (peerview.py), JSON-ready."""
        book = self.running.book
        rest = unconnected(book, self.links, self.peer_id, self.running.listen_address)
        wall = self.clock()
        return {
            "connected": self.peers(),
            "known": known_json(rest, trio.current_time(), wall),
            "refused": refused_json(self.running.refusals, wall),
        }

    def digests(self) -> dict[bytes, bytes]:
        return {t: rt.ctx.view.tree.digest() for t, rt in self.topics.items()}

    def status(self) -> dict[str, Any]:
        """The node's state, JSON-ready (`pttsync status --json`)."""
        topics = []
        for rt in self.topics.values():
            entry = rt.counts()
            stats = rt.stats
            entry.update(
                role=rt.replica.fold.governance.role_at(self.peer_id, self.clock()).name.lower(),
                members=len(rt.replica.fold.governance.members(self.clock())),
                rounds=stats.rounds,
                rounds_completed=stats.rounds_completed,
                rounds_failed=stats.rounds_failed,
                rounds_served=stats.rounds_served,
                pushed=stats.pushed,
                push_received=stats.push_received,
                push_dropped=stats.push_dropped,
                refused=stats.refused,
            )
            topics.append(entry)
        running = self.running
        rest = unconnected(running.book, self.links, self.peer_id, running.listen_address)
        return {
            "peer_id": peer_id_text(self.peer_id),
            "listen": running.listen_address,
            "data": None if self.data_path is None else str(self.data_path),
            "uptime_s": round(trio.current_time() - running.started_at, 3),
            "restarts": self.config.restarts,
            "peers": self.peers(),
            "connected": len(self.links),
            "known_not_connected": len(rest),
            "failing": sum(1 for e in rest if e.failures),
            "refused_last_hour": len(running.refusals.recent(self.clock())),
            "violations": running.violations,
            "internal_errors": running.internal_errors,
            "turned_away": running.turned_away,
            "visits": running.visits,
            "push": self.config.push,
            "sync_interval_s": self.config.sync_interval,
            "topics": topics,
        }

    def pending_count(self) -> int:
        return sum(
            self.store.count(t, s)
            for t in self.topics
            for s in (OplogStatus.PENDING, OplogStatus.INTERNAL_PENDING)
        )
