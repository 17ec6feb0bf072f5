"""Push: where a topic's new oplogs go, as they are committed.

`PushRouting` is the push half of a `TopicRuntime` (replication.py), kept
apart so each stays one concept: the seen-cache of who holds which copy,
the handling of oplogs a peer pushed, the queue every commit feeds, the
pusher task that paces batches, and the routing of each batch (valid
oplogs over the push mesh, pending ones to their signers, downhill to the
nearest master, or to a second home).  network.md describes the rules.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from typing import TYPE_CHECKING

import trio

from ..core.lifecycle.pending import not_yet_valid
from ..core.lifecycle.rules import expired, sign_kind
from ..core.oplog import OplogStatus
from ..core.oplogcodec import decode_known, encode_oplog
from ..core.sync.session import MAX_BODY, pack_bodies
from ..errors import InvalidOplogError, RemoteProtocolError
from .peer import encode_any
from .routing import MAX_HOPS
from .wire import MAX_PUSH_OPLOGS, Push

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..core.identity import Identity
    from ..core.lifecycle.replica import Commit, Replica
    from ..core.oplog import Oplog
    from ..core.sync.session import SyncContext
    from .peer import PeerLink
    from .replication import TopicStats
    from .routing import Routes

log = logging.getLogger(__name__)

MAX_RELAYED = 256  # pending oplogs routed again per anti-entropy tick


class Holders:
    """The peers known to hold one copy (a set: `in`, `add`), minus peers forgotten since."""

    __slots__ = ("_cache", "_peers")

    def __init__(self, cache: SeenCache) -> None:
        self._cache = cache
        self._peers: dict[bytes, int] = {}  # peer -> its epoch when it was added

    def __contains__(self, peer_id: object) -> bool:
        epoch = self._peers.get(peer_id)  # type: ignore[call-overload]
        return epoch is not None and epoch == self._cache._epochs.get(peer_id, 0)  # type: ignore[call-overload]

    def add(self, peer_id: bytes) -> None:
        self._peers[peer_id] = self._cache._epochs.get(peer_id, 0)


class SeenCache:
    """Which peers are known to hold each oplog copy: bounded, oldest forgotten first.

    Forgetting a peer is O(1): each peer has an epoch, bumped when it is
    forgotten, and a holder counts only if it was added in its current epoch.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._map: OrderedDict[tuple[bytes, bytes], Holders] = OrderedDict()
        self._epochs: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._map)

    def forget_peer(self, peer_id: bytes) -> None:
        """A peer disconnected: what we queued for it may never have arrived."""
        self._epochs[peer_id] = self._epochs.get(peer_id, 0) + 1

    def get(self, key: tuple[bytes, bytes]) -> Holders | None:
        """The known holders of a copy, if it is in the cache (no entry is made)."""
        return self._map.get(key)

    def holders(self, key: tuple[bytes, bytes]) -> Holders:
        peers = self._map.get(key)
        if peers is None:
            peers = self._map[key] = Holders(self)
            while len(self._map) > self.max_entries:
                self._map.popitem(last=False)
        else:
            self._map.move_to_end(key)
        return peers


class PushRouting:
    """The push half of a topic runtime (see the module text)."""

    topic_id: bytes
    identity: Identity
    clock: Callable[[], int]
    replica: Replica
    ctx: SyncContext
    stats: TopicStats
    seen: SeenCache
    routes: Routes
    push_max_age: int
    _push_send: trio.MemorySendChannel[tuple[Oplog, OplogStatus]]
    _push_recv: trio.MemoryReceiveChannel[tuple[Oplog, OplogStatus]]
    _admitted_key: tuple[object, int] | None
    _admitted: dict[bytes, bool]

    def admits(self, peer_id: bytes, now: int | None = None) -> bool:
        raise NotImplementedError

    def _admits_now(self, link: PeerLink) -> bool:
        """`admits` for the push routing, remembered per governance and second."""
        key = (self.replica.fold, self.clock() // 10**9)
        if self._admitted_key != key:
            self._admitted_key, self._admitted = key, {}
        known = self._admitted.get(link.peer_id)
        if known is None:
            known = self._admitted[link.peer_id] = self.admits(link.peer_id)
        return known

    # -- push ----------------------------------------------------------------------------

    def on_push(self, link: PeerLink, push: Push) -> int:
        """Oplogs a peer pushed; the number refused.  RemoteProtocolError for a bad batch."""
        if not self._admits_now(link):
            self.stats.refused += 1
            return 0
        now = self.clock()
        self.stats.push_received += len(push.oplogs)
        me, sender = self.identity.peer_id, link.peer_id
        fresh = []
        for body in push.oplogs:
            # A copy this node holds (and has verified: decoding it again is a table
            # lookup) needs no handling: only note that the sender holds it too.
            known = decode_known(body)
            holders = None if known is None else self.seen.get((known.oplog_id, known.hash))
            if holders is not None and me in holders:
                holders.add(sender)
            else:
                fresh.append(body)
        if not fresh:
            return 0
        try:
            if push.pending:
                result = self.ctx.handle_pending(fresh, now)
            else:
                result = self.ctx.handler.handle(fresh, now)
        except InvalidOplogError as exc:
            raise RemoteProtocolError(f"pushed a bad batch: {exc}", penalty=5) from exc
        better = {o.oplog_id for o in result.improved}  # we hold a better copy than it sent
        for o in result.stored:
            if o.oplog_id not in better:
                self.seen.holders((o.oplog_id, o.hash)).add(link.peer_id)
        if result.rejected:
            log.debug(
                "%s: %d pushed oplogs refused: %s", self, len(result.rejected), result.rejected[0]
            )
        return len(result.rejected)

    def before_commit(self, commit: Commit) -> None:
        pass

    def after_commit(self, commit: Commit) -> None:
        """Queue what a commit stored for pushing (never blocks: drops when full)."""
        horizon = self.clock() - self.push_max_age
        me = self.identity.peer_id
        for oplog, old, new in commit.stored:
            self.seen.holders((oplog.oplog_id, oplog.hash)).add(me)
            if new is OplogStatus.VALID and old is OplogStatus.VALID:
                continue  # a better copy of a valid oplog: sync spreads it
            if oplog.update_time < horizon and new is OplogStatus.VALID:
                continue  # old history arriving by sync: anti-entropy spreads it
            try:
                self._push_send.send_nowait((oplog, new))
            except trio.WouldBlock:
                self.stats.push_dropped += 1

    async def run_pusher(
        self, links: Callable[[], Iterable[PeerLink]], *, every: float = 0.0
    ) -> None:
        """Send queued oplogs to the peers that should get them (run as a task).

        At most one batch goes out every `every` seconds: the first oplog after
        a quiet spell goes at once, and under a stream of oplogs each batch
        carries whatever arrived meanwhile (Nagle's idea: many oplogs to a
        message when it matters, no delay when it does not).
        """
        last = -math.inf
        async for first in self._push_recv:
            wait = last + every - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            last = trio.current_time()
            batch = [first]
            while len(batch) < MAX_PUSH_OPLOGS:
                try:
                    batch.append(self._push_recv.receive_nowait())
                except trio.WouldBlock:
                    break
            self.push_batch(batch, list(links()))
            await trio.lowlevel.checkpoint()

    def push_batch(self, batch: list[tuple[Oplog, OplogStatus]], links: list[PeerLink]) -> None:
        """Route a batch: valid oplogs over the push mesh, pending ones to their signers.

        A pending oplog none of whose signers is connected goes one hop
        towards the nearest master (routing.py; go-pttai dials a master here),
        each peer on the way storing it and routing it on (`_towards_master`).
        """
        now = self.clock()
        gov = self.replica.fold.governance
        members = [ln for ln in links if self.topic_id in ln.topics and self._admits_now(ln)]
        mesh = [ln for ln in members if self.routes.in_mesh(ln.peer_id)]
        peers: dict[bytes, PeerLink] = {}
        queued: dict[tuple[bytes, bool], list[bytes]] = {}  # (peer, pending) -> records
        for oplog, status in batch:
            holders = self.seen.holders((oplog.oplog_id, oplog.hash))
            is_pending = status is not OplogStatus.VALID
            if not is_pending:
                targets = mesh
            else:
                targets = [
                    ln
                    for ln in members
                    if sign_kind(oplog, status, gov, ln.peer_id, now) is not None
                ] or self._towards_master(members, mesh, holders)
                if oplog.creator == self.identity.peer_id:
                    targets = targets + self._second_home(members, mesh, targets, holders)
            body = b""
            for link in targets:
                if link.peer_id in holders:
                    continue
                holders.add(link.peer_id)
                body = body or encode_oplog(oplog)
                peers[link.peer_id] = link
                queued.setdefault((link.peer_id, is_pending), []).append(body)
        frames: dict[tuple[bool, tuple[bytes, ...]], bytes] = {}  # one encoding per content
        for (peer_id, is_pending), bodies in queued.items():
            link = peers[peer_id]
            for chunk in pack_bodies(bodies, MAX_BODY):
                key = (is_pending, tuple(chunk))
                frame = frames.get(key)
                if frame is None:
                    frame = frames[key] = encode_any(Push(self.topic_id, key[1], is_pending))
                if link.try_send_frame(frame):
                    self.stats.pushed += len(chunk)
                else:
                    self.stats.push_dropped += len(chunk)

    def _second_home(
        self,
        members: list[PeerLink],
        mesh: list[PeerLink],
        targets: list[PeerLink],
        holders: Holders,
    ) -> list[PeerLink]:
        """One more peer for a pending write of this node's own, if none holds it yet.

        Until a master signs it, a member's write may live on its writer alone,
        and a signer's link can look alive while a partition cuts it.  A copy on
        a mesh peer lets the write outlive its writer going away.
        """
        chosen = {ln.peer_id for ln in targets}
        spare = [ln for ln in members if ln.peer_id not in chosen]
        if not spare or any(ln.peer_id in holders for ln in spare):
            return []
        spare_mesh = [ln for ln in mesh if ln.peer_id not in chosen]
        return [(spare_mesh or spare)[0]]

    def _towards_master(
        self, members: list[PeerLink], mesh: list[PeerLink], holders: Holders
    ) -> list[PeerLink]:
        """Where a pending oplog with no signer connected goes.

        The nearest peer downhill that does not hold it yet; none if all of
        them do (it is on its way).  With no way down: nowhere if no master is
        reachable at all (a partition, the masters offline: it waits here and
        on its second home, and `relay_pending` routes it once a way opens);
        over the push mesh otherwise (a master that signed it and needs another
        master's signature: the mesh reaches them all).
        """
        down = self.routes.downhill()
        by_id = {ln.peer_id: ln for ln in members}
        for peer_id in down:
            if peer_id not in holders and peer_id in by_id:
                return [by_id[peer_id]]
        if down and any(p in holders for p in down):
            return []
        if self.routes.hops() >= MAX_HOPS:
            return []
        return mesh

    def relay_pending(
        self, links: list[PeerLink], *, unreached_only: bool = False, limit: int = MAX_RELAYED
    ) -> int:
        """Route this node's unexpired not-yet-valid oplogs again; the number sent.

        A pending oplog is pushed once, when it is stored.  If no signer could
        be reached then (a partition, the masters offline, a relay that ended
        on this side) it would wait here until it expired.  So on every
        anti-entropy tick the pending oplogs go through the push routing again:
        to a connected signer if there is one, else on to member peers that are
        not known to hold them.  The seen-cache keeps it from repeating itself.
        With `unreached_only` (push off: postsync reaches the signers connected
        here), only the oplogs no connected peer can sign are relayed.
        """
        if not self.ctx.has_pending():
            return 0
        now = self.clock()
        gov = self.replica.fold.governance
        batch = [(o, s) for o, s in not_yet_valid(self.replica)[:limit] if not expired(o, gov, now)]
        if unreached_only:
            batch = [
                (o, s) for o, s in batch
                if not any(sign_kind(o, s, gov, ln.peer_id, now) for ln in links)
            ]  # fmt: skip
        before = self.stats.pushed
        if batch:
            self.push_batch(batch, links)
        return self.stats.pushed - before
