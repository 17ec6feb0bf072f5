"""Push: a topic's new oplogs sent to peers as they are committed, and taken in from them.

Two components of a `TopicRuntime` (topicruntime.py), which builds them
and hands each what it works with:

* the `Pusher`: the handling of oplogs a peer pushed, the queue every
  commit feeds, the pusher task that paces batches, and the pending
  oplogs routed again on each anti-entropy tick.  Each batch leaves
  through the `route` it is given (the runtime's `push_batch`);
* the `PushRouter`: where each oplog of a batch goes (valid oplogs over the
  push mesh, pending ones to their signers, downhill to the nearest master,
  or to a second home) and the frames that carry them.

Both share the topic's seen-cache (seen.py), so a copy goes to a peer at
most once.  network.md describes the rules.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import operator
from typing import TYPE_CHECKING, Protocol, TypeAlias

import trio

from ..core.lifecycle.pending import not_yet_valid
from ..core.lifecycle.rules import expired, master_signed, sign_kind
from ..core.oplog import OplogStatus
from ..core.oplogcodec import decode_known, encode_oplog
from ..core.sync.session import MAX_BODY, pack_bodies, remote_input
from . import timers
from .routing import MAX_HOPS
from .wire import MAX_PUSH_OPLOGS, IHave, Prune, Push, id_chunks

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from ..core.lifecycle.governance import Governance
    from ..core.lifecycle.replica import Commit, Replica
    from ..core.oplog import Oplog
    from ..core.sync.session import SyncContext
    from .lazypush import LazyPush
    from .peer import PeerLink
    from .routing import Routes
    from .seen import Holders, SeenCache

    Batch: TypeAlias = list[tuple[Oplog, OplogStatus]]
    # members, mesh, eager, lazy (PushRouter._split)
    Split: TypeAlias = tuple[list[PeerLink], list[PeerLink], list[PeerLink], list[PeerLink]]

log = logging.getLogger(__name__)

MAX_RELAYED = 256  # pending oplogs routed again per anti-entropy tick

_topics_of = operator.attrgetter("topics")


class PushStats(Protocol):
    """The counters push keeps (topicruntime.TopicStats has them)."""

    pushed: int  # oplogs sent by push
    push_received: int  # oplogs received by push
    push_dropped: int  # oplogs not pushed: a full queue
    refused: int  # pushes from non-members
    announced: int  # oplog IDs announced instead of pushed (lazypush.py)


class Pusher:
    """A topic's pushes: what comes in, what is queued, when it goes (see the module text).

    `ctx` is the topic's sync context (its handler stores what peers push);
    `admits(peer)` says whether a peer is a member now; `route(batch, links)`
    sends a batch where it should go; `me` is this node's peer ID.
    """

    def __init__(
        self,
        me: bytes,
        *,
        ctx: SyncContext,
        seen: SeenCache,
        stats: PushStats,
        admits: Callable[[bytes, int], bool],
        route: Callable[[Batch, list[PeerLink]], None],
        clock: Callable[[], int],
        lazy: LazyPush,
        queue: int = 4096,
        max_age: int = 600 * 10**9,
    ) -> None:
        self.me = me
        self.lazy = lazy
        self.source: bytes | None = None  # the peer whose sync messages are being handled
        self._answering = False  # ... and they are a request this node answers
        self.ctx = ctx
        self.replica = ctx.replica
        self.seen = seen
        self.stats = stats
        self.max_age = max_age  # older oplogs arriving by sync are left to anti-entropy
        self._admits = admits
        self._route = route
        self._clock = clock
        self._queue: collections.deque[tuple[Oplog, OplogStatus]] = collections.deque()
        self._limit = queue
        self._closed = False
        self._alarm = timers.Alarm()  # the pusher's wake-up: its pacing, or a commit
        self._links: Callable[[], Iterable[PeerLink]] = tuple
        self._every = 0.0
        self._last = -math.inf  # when the last batch went (trio time)

    def __repr__(self) -> str:
        return f"<topic {self.ctx.topic_id.hex()[:12]}>"

    def queued(self) -> int:
        """Oplogs waiting in the push queue."""
        return len(self._queue)

    def close(self) -> None:
        """No more commits to queue: the pusher task ends once the queue is drained."""
        self._closed = True
        self._alarm.ring()

    # -- what peers push ---------------------------------------------------------------

    def on_push(self, link: PeerLink, push: Push) -> int:
        """Oplogs a peer pushed; the number refused.  RemoteProtocolError for a bad batch."""
        now = self._clock()
        if not self._admits(link.peer_id, now):
            self.stats.refused += 1
            return 0
        self.stats.push_received += len(push.oplogs)
        me, sender = self.me, link.peer_id
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
            self._duplicate(link, push)
            return 0
        with remote_input(penalty=5):  # the session's boundary: a foreign record is its fault
            if push.pending:
                result = self.ctx.handler.handle_pending_oplogs(fresh, now)
            else:
                result = self.ctx.handler.handle_oplogs(fresh, now)
        if not result.stored and not result.rejected and not result.waiting:
            self._duplicate(link, push)
        better = {o.oplog_id for o in result.improved}  # we hold a better copy than it sent
        for o in result.stored:
            if o.oplog_id not in better:
                self.seen.holders((o.oplog_id, o.hash)).add(link.peer_id)
        if result.rejected:
            log.debug(
                "%s: %d pushed oplogs refused: %s", self, len(result.rejected), result.rejected[0]
            )
        return len(result.rejected)

    @contextlib.contextmanager
    def storing_from(self, peer_id: bytes, *, answering: bool = False) -> Iterator[None]:
        """Within: what is stored came in a sync message from `peer_id`, so it holds the
        copies it sent.  `answering` its request: the answer takes it the copies bettered
        here too (receiver.py: a peer's better copies go back in the same round)."""
        self.source, self._answering = peer_id, answering
        try:
            yield
        finally:
            self.source, self._answering = None, False

    def _duplicate(self, link: PeerLink, push: Push) -> None:
        """A push of valid oplogs this node held already: the link leaves the tree."""
        if not push.pending and self.lazy.prune(link.peer_id):
            link.try_send(Prune(push.topic))

    # -- what commits queue (a replica observer) ------------------------------------------

    def before_commit(self, commit: Commit) -> None:
        pass

    def after_commit(self, commit: Commit) -> None:
        """Queue what a commit stored for pushing (never blocks: drops when full)."""
        horizon = self._clock() - self.max_age
        me, source, received = self.me, self.source, commit.received
        queue, idle = self._queue, not self._queue
        # Only a valid copy is what an announcement promises (a pending one is not).
        # Its announcers hold it, valid: they need no announcement of it.
        announcers = self.lazy.arrived(
            [o.oplog_id for o, _, new in commit.stored if new is OplogStatus.VALID]
        )
        for oplog, old, new in commit.stored:
            holders = self.seen.holders((oplog.oplog_id, oplog.hash))
            holders.add(me)
            if new is OplogStatus.VALID:
                holders.mark_valid()
                for peer_id in announcers.get(oplog.oplog_id, ()):
                    holders.add(peer_id)
            if (
                source is not None
                and (sent := received.get(oplog.oplog_id)) is not None
                and (sent == oplog.hash or self._answering)
            ):
                holders.add(source)  # it has this copy, or gets it in our answer
            if new is OplogStatus.VALID and old is OplogStatus.VALID:
                continue  # a better copy of a valid oplog: sync spreads it
            if oplog.update_time < horizon and new is OplogStatus.VALID:
                continue  # old history arriving by sync: anti-entropy spreads it
            if len(queue) < self._limit and not self._closed:
                queue.append((oplog, new))
            else:
                self.stats.push_dropped += 1
        if idle and queue:
            self._alarm.ring()  # the pusher waits for a first oplog: here it is

    # -- what goes out --------------------------------------------------------------------

    async def run(self, links: Callable[[], Iterable[PeerLink]], *, every: float = 0.0) -> None:
        """Send queued oplogs to the peers that should get them (run as a task).

        At most one batch goes out every `every` seconds: the first oplog after
        a quiet spell goes at once, and under a stream of oplogs each batch
        carries whatever arrived meanwhile (Nagle's idea: many oplogs to a
        message when it matters, no delay when it does not).  Each batch is a
        step of `timers.serve`: in the simulator, not a wake-up of this task.
        """
        self._links, self._every = links, every
        await timers.serve(self._alarm, self._step)

    def _step(self) -> float | None:
        """Send a batch if one is due.  The trio time of the next (math.inf: when a
        commit comes); None once closed and drained."""
        queue = self._queue
        if not queue:
            return None if self._closed else math.inf
        now = trio.current_time()
        if self._last + self._every > now:
            return self._last + self._every
        self._last = now
        n = min(len(queue), MAX_PUSH_OPLOGS)
        batch = [queue.popleft() for _ in range(n)]
        self._route(batch, list(self._links()))
        return now + self._every if queue else math.inf

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
        now = self._clock()
        gov = self.replica.fold.governance
        batch = [(o, s) for o, s in not_yet_valid(self.replica)[:limit] if not expired(o, gov, now)]
        if unreached_only:
            batch = [
                (o, s) for o, s in batch
                if not any(sign_kind(o, s, gov, ln.peer_id, now) for ln in links)
            ]  # fmt: skip
        before = self.stats.pushed
        if batch:
            self._route(batch, links)
        return self.stats.pushed - before


class PushRouter:
    """Where each oplog of a batch goes, and the frames that take it there.

    `routes` is the topic's push mesh and master distances (routing.py);
    `replica` gives the governance that says who signs a pending oplog.
    """

    def __init__(
        self,
        topic_id: bytes,
        me: bytes,
        *,
        replica: Replica,
        routes: Routes,
        seen: SeenCache,
        stats: PushStats,
        admits: Callable[[bytes, int], bool],
        clock: Callable[[], int],
        lazy: LazyPush,
    ) -> None:
        self.topic_id = topic_id
        self.me = me
        self.lazy = lazy
        self.replica = replica
        self.routes = routes
        self.seen = seen
        self.stats = stats
        self._admits = admits
        self._clock = clock
        self._split_key: tuple[object, ...] = ()
        self._split_links: Split = ([], [], [], [])

    def push_batch(self, batch: Batch, links: list[PeerLink]) -> None:
        """Route a batch: valid oplogs over the push mesh, pending ones to their signers.

        A pending oplog none of whose signers is connected goes one hop
        towards the nearest master (routing.py; go-pttai dials a master here),
        each peer on the way storing it and routing it on (`_towards_master`).
        """
        now = self._clock()
        gov = self.replica.fold.governance
        members, mesh, eager, lazy = self._split(links, now)
        peers: dict[bytes, PeerLink] = {}
        queued: dict[tuple[bytes, bool], list[tuple[bytes, Holders]]] = {}  # -> (record, holders)
        # Each lazy peer's bit in the seen-cache's masks, looked up once a batch, not
        # once an oplog: its slot stays (a slot is given, and the masks renumbered,
        # only to a peer that has none, and every member link has one from here on).
        slot = self.seen.slot
        for link in members:
            slot(link.peer_id)
        lazy_bits = [(link.peer_id, 1 << slot(link.peer_id)) for link in lazy]
        announce: dict[bytes, list[tuple[bytes, bytes]]] = {}  # -> the copies, in order
        for oplog, status in batch:
            holders = self.seen.holders((oplog.oplog_id, oplog.hash))
            is_pending = status is not OplogStatus.VALID
            if not is_pending:
                targets = eager
                held = holders.mask
                for peer_id, bit in lazy_bits:
                    if not held & bit:
                        announce.setdefault(peer_id, []).append((oplog.oplog_id, oplog.hash))
            else:
                targets = [
                    ln
                    for ln in members
                    if sign_kind(oplog, status, gov, ln.peer_id, now) is not None
                ] or self._towards_master(members, mesh, holders, oplog, gov)
                if oplog.creator == self.me:
                    targets = targets + self._second_home(members, mesh, targets, holders)
            body = b""
            for link in targets:
                if link.peer_id in holders:
                    continue
                holders.add(link.peer_id)
                body = body or encode_oplog(oplog)
                peers[link.peer_id] = link
                queued.setdefault((link.peer_id, is_pending), []).append((body, holders))
        frames: dict[tuple[bool, tuple[bytes, ...]], bytes] = {}  # one encoding per content
        for (peer_id, is_pending), items in queued.items():
            link = peers[peer_id]
            held_by = dict(items)
            for chunk in pack_bodies(list(held_by), MAX_BODY):
                key = (is_pending, tuple(chunk))
                frame = frames.get(key)
                if frame is None:
                    frame = frames[key] = link.encode(Push(self.topic_id, key[1], is_pending))
                if link.try_send_frame(frame):
                    self.stats.pushed += len(chunk)
                else:
                    self.stats.push_dropped += len(chunk)
                    for body in chunk:  # not sent: the next relay may try again
                        held_by[body].discard(peer_id)
        for peer_id, keys in announce.items():
            self.lazy.announce_all(peer_id, keys)
        self.send_announcements(links, now)

    def _split(self, links: list[PeerLink], now: int) -> Split:
        """The member links, the mesh links among them, and those eager and lazy.

        Worked out once and kept until something it depends on changes: the
        links, a link's topics, the governance, the second (membership is
        judged by the second: `admits_now`), the mesh or a link's eagerness.
        A batch goes out every push interval and the links rarely change
        between two, so a batch no longer asks all four questions of every link.
        """
        key = (
            self.replica.fold, now // 10**9, self.routes.version, self.lazy.version,
            *links, *map(_topics_of, links),
        )  # fmt: skip
        if key == self._split_key:
            return self._split_links
        tid, admits = self.topic_id, self._admits
        members: list[PeerLink] = []
        mesh: list[PeerLink] = []
        eager: list[PeerLink] = []
        lazy: list[PeerLink] = []
        in_mesh, is_eager = self.routes.in_mesh, self.lazy.eager
        for ln in links:
            if tid in ln.topics and admits(ln.peer_id, now):
                members.append(ln)
                if in_mesh(ln.peer_id):
                    mesh.append(ln)
                    (eager if is_eager(ln.peer_id) else lazy).append(ln)
        self._split_key, self._split_links = key, (members, mesh, eager, lazy)
        return self._split_links

    def send_announcements(self, links: Iterable[PeerLink], now: int | None = None) -> None:
        """Send the queued announcements (lazypush.py) if they are due, leaving out
        the oplogs each peer is known to hold by now (`now`: the clock, if read)."""
        now = self._clock() if now is None else now
        out = self.lazy.take_outbox(now)
        if not out:
            return
        by_id = {ln.peer_id: ln for ln in links}
        for peer_id, keys in out.items():
            link = by_id.get(peer_id)
            if link is None or not self._admits(peer_id, now):
                continue
            ids = self.seen.not_held_by(peer_id, keys)
            for run in id_chunks(ids):
                if link.try_send(IHave(self.topic_id, run)):
                    self.stats.announced += len(run)

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
        self,
        members: list[PeerLink],
        mesh: list[PeerLink],
        holders: Holders,
        oplog: Oplog,
        gov: Governance,
    ) -> list[PeerLink]:
        """Where a pending oplog with no signer connected goes.

        The nearest peer downhill that does not hold it yet; none if all of
        them do (it is on its way).  With no way down: nowhere if no master is
        reachable at all (a partition, the masters offline: it waits here and
        on its second home, and `relay_pending` routes it once a way opens);
        over the push mesh otherwise (a master that signed it and needs another
        master's signature: the mesh reaches them all).

        A copy a master signed already (or wrote) and that needs another
        master's signature goes over the mesh too, from every peer: the way
        down leads to the nearest master, which may be the one that signed,
        and that way it stopped one hop from it, for good (the simulator:
        two masters back from offline, not linked to each other).  Each peer
        relays it once; the first peer linked to a master that has not signed
        pushes it there.
        """
        if master_signed(oplog, gov):
            return [] if self.routes.hops() >= MAX_HOPS else mesh
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
