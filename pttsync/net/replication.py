"""One topic on a running node: its sync sessions, its pushes and its door.

A `TopicRuntime` wraps the core objects of one topic (a `Replica`, its
`DocumentStore`, a `SyncContext`) with what only a running node has:

* **the door** (`admits`): a peer takes part in the topic only while the
  topic's governance, as this node knows it, makes it a member (or a
  device of one).  A non-member's sync requests are refused and its pushes
  dropped, so it can neither pull nor push the topic's data;
* **sync rounds** (`sync_round`, PIP-11's requester) with one peer at a
  time per peer, under a deadline, and the receiver side (`on_request`);
* **push**: every commit (a local write, a push or a sync reply) is seen
  by `after_commit`; fresh valid oplogs go over the push mesh (routing.py),
  pending ones to the peers that can sign them (lifecycle.sign_kind), or
  one hop towards the nearest master, each copy at most once per peer
  thanks to a bounded seen-cache.  The push queue is bounded; what it
  drops, anti-entropy repairs.
"""

from __future__ import annotations

import logging
import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..core.docstore import DocumentStore
from ..core.governance import (
    OP_GENESIS,
    OP_ROLE,
    Role,
    decode_role,
    is_governance_op,
)
from ..core.lifecycle import expired, sign_kind
from ..core.messages import (
    ForceSyncOplogByMerkle,
    Message,
    RejectCode,
    SyncOplog,
    SyncOplogNewOplogs,
    SyncPendingOplog,
)
from ..core.oplog import OplogStatus
from ..core.oplogcodec import decode_known, encode_oplog
from ..core.pending import not_yet_valid
from ..core.receiver import Receiver
from ..core.replica import Replica
from ..core.requester import Requester
from ..core.session import MAX_BODY, State, SyncConfig, SyncContext, pack_bodies
from ..core.wire import MAX_PUSH_OPLOGS, Push, Route
from ..errors import ConnectionLostError, InvalidOplogError, RemoteProtocolError, UsageError
from .peer import encode_any
from .routing import DEFAULT_MESH, MAX_HOPS, Routes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..core.identity import Identity
    from ..core.oplog import Oplog
    from ..core.replica import Commit
    from ..core.store import Store, TopicInfo
    from .peer import PeerLink

log = logging.getLogger(__name__)

REQUESTS = (SyncOplog, SyncOplogNewOplogs, ForceSyncOplogByMerkle, SyncPendingOplog)
MAX_RELAYED = 256  # pending oplogs routed again per anti-entropy tick


@dataclass(slots=True)
class TopicStats:
    rounds: int = 0  # rounds this node started
    rounds_completed: int = 0
    rounds_failed: int = 0  # rejected, broken or timed out
    rounds_served: int = 0
    pushed: int = 0  # oplogs sent by push
    push_received: int = 0  # oplogs received by push
    push_dropped: int = 0  # oplogs not pushed: a full queue
    refused: int = 0  # requests and pushes from non-members


class SeenCache:
    """Which peers are known to hold each oplog copy: bounded, oldest forgotten first."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._map: OrderedDict[tuple[bytes, bytes], set[bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._map)

    def forget_peer(self, peer_id: bytes) -> None:
        """A peer disconnected: what we queued for it may never have arrived."""
        for peers in self._map.values():
            peers.discard(peer_id)

    def get(self, key: tuple[bytes, bytes]) -> set[bytes] | None:
        """The known holders of a copy, if it is in the cache (no entry is made)."""
        return self._map.get(key)

    def holders(self, key: tuple[bytes, bytes]) -> set[bytes]:
        peers = self._map.get(key)
        if peers is None:
            peers = self._map[key] = set()
            while len(self._map) > self.max_entries:
                self._map.popitem(last=False)
        else:
            self._map.move_to_end(key)
        return peers


class TopicRuntime:
    """A topic served by a node."""

    def __init__(
        self,
        store: Store,
        info: TopicInfo,
        identity: Identity,
        *,
        config: SyncConfig,
        clock: Callable[[], int],
        push_queue: int = 4096,
        seen_cache: int = 16384,
        push_max_age: int = 600 * 10**9,
        push_mesh: int = DEFAULT_MESH,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.info = info
        self.topic_id = info.topic_id
        self.identity = identity
        self.clock = clock
        self.replica = Replica(store, self.topic_id, identity=identity)
        self.docs = DocumentStore(self.replica)
        self.ctx = SyncContext(store, self.topic_id, config=config, replica=self.replica)
        self.stats = TopicStats()
        self.seen = SeenCache(seen_cache)
        self.push_max_age = push_max_age
        self.requesters: dict[bytes, Requester] = {}
        self.receivers: dict[bytes, Receiver] = {}
        self._round_events: dict[bytes, trio.Event] = {}
        self._credentials: tuple[object, int, list[Oplog]] | None = None
        self._admitted_key: tuple[object, int] | None = None
        self._admitted: dict[bytes, bool] = {}
        self.routes = Routes(push_mesh, self.rng)
        self.links: Callable[[], dict[bytes, PeerLink]] = dict  # the node's links, by peer
        self.refresh_role()
        self._push_send, self._push_recv = trio.open_memory_channel[tuple["Oplog", OplogStatus]](
            push_queue
        )
        self.replica.observers.append(self)

    # -- the door -------------------------------------------------------------------

    def admits(self, peer_id: bytes, now: int | None = None) -> bool:
        """True if `peer_id` is a member (or a member's device) of this topic now.

        "Now" allows for clock skew as HandleOplogs does: a peer admitted by a
        master whose clock runs ahead of ours (its ROLE oplog dated up to
        `clock_skew` in our future) is let in too.
        """
        t = self.clock() if now is None else now
        gov = self.replica.fold.governance
        return (
            gov.user_of(peer_id, t) is not None
            or gov.user_of(peer_id, t + self.ctx.config.clock_skew) is not None
        )

    def _admits_now(self, link: PeerLink) -> bool:
        """`admits` for the push routing, remembered per governance and second."""
        key = (self.replica.fold, self.clock() // 10**9)
        if self._admitted_key != key:
            self._admitted_key, self._admitted = key, {}
        known = self._admitted.get(link.peer_id)
        if known is None:
            known = self._admitted[link.peer_id] = self.admits(link.peer_id)
        return known

    def credentials(self, limit: int) -> list[Oplog]:
        """The governance oplogs that show this node is a member (for its Hello).

        Its own ROLE and DEVICE oplogs, and every promotion to master (the
        signers' authority), newest last, at most `limit`.
        """
        fold = self.replica.fold  # it holds every stored governance oplog
        cached = self._credentials
        if cached is not None and cached[0] is fold and cached[1] == limit:
            return cached[2]
        me = self.identity.peer_id
        chosen = [
            o for o in fold.oplogs.values()
            if o.op != OP_GENESIS and (o.object_id == me or _promotes(o))
        ]  # fmt: skip
        chosen.sort(key=lambda o: (o.create_time, o.oplog_id))
        self._credentials = (fold, limit, chosen[-limit:])
        return chosen[-limit:]

    def accept_credentials(self, oplogs: Iterable[Oplog], now: int) -> None:
        """Take a peer's credentials: valid governance oplogs of this topic are stored."""
        mine = [o for o in oplogs if o.topic_id == self.topic_id and is_governance_op(o.op)]
        if mine:
            self.ctx.handler.handle_decoded(mine, now)

    # -- routes (routing.py) --------------------------------------------------------------

    def link_up(self, link: PeerLink) -> None:
        """A member peer connected (or was let into this topic)."""
        self.routes.add(link.peer_id)
        self.send_routes()

    def on_route(self, link: PeerLink, msg: Route) -> None:
        self.routes.heard(link.peer_id, msg.hops, msg.mesh)
        self.send_routes()

    def refresh_role(self) -> None:
        """After a governance change: is this node a master (distance 0) now?"""
        gov = self.replica.fold.governance
        self.routes.set_master(gov.role_at(self.identity.peer_id, self.clock()) is Role.MASTER)
        self.send_routes()

    def send_routes(self) -> None:
        """Tell each peer what changed: our distance to a master, our mesh choice."""
        links = self.links()
        for peer_id, hops, mesh in self.routes.news():
            link = links.get(peer_id)
            if link is None or not link.try_send(Route(self.topic_id, hops, mesh)):
                self.routes.untold(peer_id)

    def forget(self, peer_id: bytes) -> None:
        """Drop the per-peer session state of a peer that disconnected."""
        self.seen.forget_peer(peer_id)
        self.routes.remove(peer_id)
        self.send_routes()
        req = self.requesters.pop(peer_id, None)
        if req is not None:
            req.abort()
        self.receivers.pop(peer_id, None)
        event = self._round_events.pop(peer_id, None)
        if event is not None:
            event.set()

    # -- sync rounds (requester) ---------------------------------------------------------

    def round_running(self, peer_id: bytes) -> bool:
        req = self.requesters.get(peer_id)
        return req is not None and req.state in (State.SYNCING, State.POSTSYNC)

    async def sync_round(self, link: PeerLink, *, limit: float) -> bool:
        """Run one PIP-11 round with `link`'s peer; True if it completed.

        A round already running with that peer is not started twice.
        """
        if link.closed or self.round_running(link.peer_id) or not self.admits(link.peer_id):
            return False
        req = self.requesters.get(link.peer_id)
        if req is None:
            req = self.requesters[link.peer_id] = Requester(self.ctx, link.peer_id)
        done = self._round_events[link.peer_id] = trio.Event()
        self.stats.rounds += 1
        try:
            await link.send_all(req.start(self.clock(), self.rng.randbytes(16)))
            with trio.move_on_after(limit) as scope:
                await done.wait()
            if scope.cancelled_caught:
                log.info("%s: sync round with %s timed out after %s s", self, link.name, limit)
        except ConnectionLostError:
            pass
        finally:
            if self._round_events.get(link.peer_id) is done:
                del self._round_events[link.peer_id]
        if not req.done:
            req.abort()
        ok = req.state is State.DONE
        if ok:
            self.stats.rounds_completed += 1
        else:
            self.stats.rounds_failed += 1
            if req.reject_reason:
                log.info("%s: %s refused the round: %s", self, link.name, req.reject_reason)
        return ok

    def on_reply(self, link: PeerLink, msg: Message) -> list[Message]:
        """A reply to our round.  Raises RemoteProtocolError if it breaks the protocol."""
        req = self.requesters.get(link.peer_id)
        if req is None or not self.round_running(link.peer_id):
            return []  # a late reply to a round we gave up on: harmless
        try:
            out = req.receive(msg, self.clock())
        finally:
            if req.done:
                event = self._round_events.get(link.peer_id)
                if event is not None:
                    event.set()
        return out

    # -- sync rounds (receiver) -----------------------------------------------------------

    def on_request(self, link: PeerLink, msg: Message) -> list[Message]:
        """Answer a sync request.  Raises RemoteProtocolError if it breaks the protocol."""
        rec = self.receivers.get(link.peer_id)
        if rec is None:
            rec = self.receivers[link.peer_id] = Receiver(self.ctx, link.peer_id)
        if not self.admits(link.peer_id):
            self.stats.refused += 1
            return [rec.reject(msg, RejectCode.UNKNOWN_TOPIC, "not a member of this topic")]
        if isinstance(msg, SyncOplog):
            self.stats.rounds_served += 1
        return rec.receive(msg, self.clock())

    # -- push ----------------------------------------------------------------------------

    def on_push(self, link: PeerLink, push: Push) -> int:
        """Oplogs a peer pushed; the number refused.  RemoteProtocolError for a bad batch."""
        if not self.admits(link.peer_id):
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
        towards the nearest master (routing.py); with no way there it is
        relayed to every member peer (go-pttai dials a master here): each
        stores it and routes it on, so it reaches a signer however the peers
        are connected.
        """
        now = self.clock()
        gov = self.replica.fold.governance
        members = [ln for ln in links if self.topic_id in ln.topics and self._admits_now(ln)]
        peers: dict[bytes, PeerLink] = {}
        queued: dict[tuple[bytes, bool], list[bytes]] = {}  # (peer, pending) -> records
        for oplog, status in batch:
            holders = self.seen.holders((oplog.oplog_id, oplog.hash))
            is_pending = status is not OplogStatus.VALID
            if not is_pending:
                targets = [ln for ln in members if self.routes.in_mesh(ln.peer_id)]
            else:
                targets = [
                    ln
                    for ln in members
                    if sign_kind(oplog, status, gov, ln.peer_id, now) is not None
                ] or self._towards_master(members, holders)
                if oplog.creator == self.identity.peer_id:
                    targets += self._second_home(members, targets, holders)
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
        self, members: list[PeerLink], targets: list[PeerLink], holders: set[bytes]
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
        mesh = [ln for ln in spare if self.routes.in_mesh(ln.peer_id)]
        return [(mesh or spare)[0]]

    def _towards_master(self, members: list[PeerLink], holders: set[bytes]) -> list[PeerLink]:
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
        return [ln for ln in members if self.routes.in_mesh(ln.peer_id)]

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

    # -- housekeeping ---------------------------------------------------------------------

    def handle_failed(self) -> int:
        """HandleFailedOplogs on a timer (also run by every round this node starts)."""
        return self.ctx.handle_failed(self.clock())

    def counts(self) -> dict[str, object]:
        store = self.ctx.store
        return {
            "topic_id": self.topic_id.hex(),
            "name": self.info.name,
            "valid": store.count(self.topic_id, OplogStatus.VALID),
            "pending": store.count(self.topic_id, OplogStatus.PENDING)
            + store.count(self.topic_id, OplogStatus.INTERNAL_PENDING),
            "digest": self.ctx.view.tree.digest().hex(),
        }

    def close(self) -> None:
        if self in self.replica.observers:
            self.replica.observers.remove(self)
        self.docs.close()
        self._push_send.close()

    def __repr__(self) -> str:
        return f"<topic {self.topic_id.hex()[:12]}>"


def _promotes(oplog: Oplog) -> bool:
    if oplog.op != OP_ROLE:
        return False
    try:
        return decode_role(oplog)[1] is Role.MASTER
    except InvalidOplogError:
        return False


def check_topic_known(topics: dict[bytes, TopicRuntime], topic_id: bytes) -> TopicRuntime:
    rt = topics.get(topic_id)
    if rt is None:
        raise UsageError(f"no topic {topic_id.hex()} on this node")
    return rt
