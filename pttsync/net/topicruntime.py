"""One topic on a running node: its sync sessions, its pushes and its door.

A `TopicRuntime` wraps the core objects of one topic (a `Replica`, its
`DocumentStore`, a `SyncContext`) with what only a running node has:

* **the door** (`admits`): a peer takes part in the topic only while the
  topic's governance, as this node knows it, makes it a member (or a
  device of one).  A non-member's sync requests are refused and its pushes
  dropped, so it can neither pull nor push the topic's data;
* **sync rounds** (`sync_round`, PIP-11's requester) with one peer at a
  time per peer, under a deadline, and the receiver side (`on_request`);
* **push** (push.py): every commit (a local write, a push or a sync reply)
  is queued by the runtime's `Pusher`; its `PushRouter` sends fresh valid
  oplogs over the push mesh (routing.py), pending ones to the peers that
  can sign them (lifecycle.sign_kind), or one hop towards the nearest
  master, each copy at most once per peer thanks to a bounded seen-cache
  (seen.py).  The push queue is bounded; what it drops, anti-entropy
  repairs.

The runtime builds its push components and hands each what it works with:
both share the topic's seen-cache and counters and ask the runtime's
`admits_now` whether a peer is a member; the pusher stores what peers push
through the topic's sync context and sends each batch through the
runtime's `push_batch`, which the router carries out with the topic's
`Routes` (routing.py).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..core.documents.docstore import DocumentStore
from ..core.lifecycle.governance import Role, is_governance_op
from ..core.lifecycle.pending import not_yet_valid
from ..core.lifecycle.replica import Replica
from ..core.lifecycle.rules import expired, masters_to_sign
from ..core.oplog import OplogStatus
from ..core.store.integrity import Scrubber
from ..core.sync.messages import Message, RejectCode, SyncOplog
from ..core.sync.receiver import Receiver
from ..core.sync.requester import Requester
from ..core.sync.session import MAX_BODY, State, SyncConfig, SyncContext, pack_bodies
from ..errors import ConnectionLostError
from . import timers
from .histogram import Histogram
from .lazypush import DEFAULT_ANNOUNCE_EVERY, DEFAULT_LAZY_TIMEOUT, LazyPush
from .push import Pusher, PushRouter
from .routing import DEFAULT_MESH, MAX_HOPS, Routes
from .seen import SeenCache
from .wire import IWant, Push, Route, id_chunks

if TYPE_CHECKING:
    from collections.abc import Callable, Container, Iterable, Mapping

    from ..core.identity import Identity
    from ..core.oplog import Oplog
    from ..core.store import Store
    from ..core.topic import TopicInfo
    from .peer import PeerLink
    from .push import Batch
    from .wire import IHave

log = logging.getLogger(__name__)


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
    announced: int = 0  # oplog IDs announced instead of pushed (lazypush.py)


class TopicRuntime:
    """A topic served by a node.

    `links` is the node's connected peers by peer ID (it reads them, never
    changes them); `rng` its random source.
    """

    def __init__(
        self,
        store: Store,
        info: TopicInfo,
        identity: Identity,
        *,
        config: SyncConfig,
        clock: Callable[[], int],
        links: Mapping[bytes, PeerLink],
        push_queue: int = 4096,
        seen_cache: int = 16384,
        push_max_age: int = 600 * 10**9,
        push_mesh: int = DEFAULT_MESH,
        lazy_timeout: int = DEFAULT_LAZY_TIMEOUT,
        announce_every: int = DEFAULT_ANNOUNCE_EVERY,
        rng: random.Random | None = None,
    ) -> None:
        self.rng = rng or random.Random()
        self.info = info
        self.topic_id = info.topic_id
        self.identity = identity
        self.clock = clock
        self.replica = Replica(store, self.topic_id, identity=identity)
        self.docs = DocumentStore(self.replica)
        self.scrubber = Scrubber(store, self.topic_id)
        self.ctx = SyncContext(store, self.topic_id, config=config, replica=self.replica)
        self.stats = TopicStats()
        self.round_times = Histogram()  # seconds, of the rounds this node started
        self.seen = SeenCache(seen_cache)
        self.requesters: dict[bytes, Requester] = {}
        self.receivers: dict[bytes, Receiver] = {}
        self._round_events: dict[bytes, trio.Event] = {}
        self._credentials: tuple[object, int, list[Oplog]] | None = None
        self._admitted_fold: object = None  # what `_admitted` was judged by
        self._admitted_second = -1
        self._admitted: dict[bytes, bool] = {}
        self.routes = Routes(push_mesh, self.rng)
        self.links = links
        me = identity.peer_id
        self.lazy = LazyPush(
            self._holds_valid, timeout=lazy_timeout,  # on_ihave asks the seen-cache first
            announce_every=announce_every,
        )  # fmt: skip
        self._alarm = timers.Alarm()  # the lazy timer's wake-up (timers.py)
        self._timer_wake: int | None = None  # what the lazy timer sleeps until (None: news)
        self.router = PushRouter(
            self.topic_id, me, replica=self.replica, routes=self.routes, seen=self.seen,
            stats=self.stats, admits=self.admits_now, clock=clock, lazy=self.lazy,
        )  # fmt: skip
        self.pusher = Pusher(
            me, ctx=self.ctx, seen=self.seen, stats=self.stats, admits=self.admits_now,
            route=self.push_batch, clock=clock, lazy=self.lazy, queue=push_queue,
            max_age=push_max_age,
        )  # fmt: skip
        self.refresh_role()
        self.replica.observers.append(self.pusher)

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

    def admits_now(self, peer_id: bytes, now: int | None = None) -> bool:
        """`admits` for push, remembered per governance and second (`now`, in ns, if
        the caller has read the clock already: once a batch, not once a link)."""
        fold, second = self.replica.fold, (self.clock() if now is None else now) // 10**9
        if fold is not self._admitted_fold or second != self._admitted_second:
            self._admitted_fold, self._admitted_second, self._admitted = fold, second, {}
        known = self._admitted.get(peer_id)
        if known is None:
            known = self._admitted[peer_id] = self.admits(peer_id)
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
        chosen = fold.credentials(self.identity.peer_id)
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

    def masters_wanted(self, linked: Container[bytes], stuck_before: int) -> frozenset[bytes]:
        """The keys (and devices) of the masters to dial (dialer.py), less those linked:
        every master if no way to one is known here; else those yet to sign a pending
        oplog created before `stuck_before` (ns) that has not expired.

        The links can split the network into parts that routing cannot cross, and a
        part may hold no master, or too few for a quorum (the simulator: masters back
        from offline, with three slots a node)."""
        gov, now = self.replica.fold.governance, self.clock()
        if self.routes.hops() >= MAX_HOPS:
            users: set[bytes] | frozenset[bytes] = gov.masters_at(now)
        elif not self.ctx.has_pending():
            return frozenset()
        else:
            users = set()
            for oplog, status in not_yet_valid(self.replica):
                stuck = status is OplogStatus.PENDING and oplog.create_time < stuck_before
                if stuck and not expired(oplog, gov, now):
                    users |= masters_to_sign(oplog, gov)
        keys = {key for m in users for key in gov.devices_of(m, now)}
        return frozenset(key for key in keys if key not in linked)

    def send_routes(self) -> None:
        """Tell each peer what changed: our distance to a master, our mesh choice."""
        links = self.links
        for peer_id, hops, mesh in self.routes.news():
            link = links.get(peer_id)
            if link is None or not link.try_send(Route(self.topic_id, hops, mesh)):
                self.routes.untold(peer_id)

    def forget(self, peer_id: bytes) -> None:
        """Drop the per-peer session state of a peer that disconnected."""
        self.seen.forget_peer(peer_id)
        self.lazy.forget(peer_id)
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

    def begin_round(self, peer_id: bytes) -> list[Message] | None:
        """Start a round with `peer_id`: the messages to send it, or None if a round
        with it is running already or it is not a member.  (`sync_round` waits for
        its end; the replies come through `on_reply`.)"""
        if self.round_running(peer_id) or not self.admits(peer_id):
            return None
        req = self.requesters.get(peer_id)
        if req is None:
            req = self.requesters[peer_id] = Requester(self.ctx, peer_id)
        self.stats.rounds += 1
        return req.start(self.clock(), self.rng.randbytes(16))

    async def sync_round(self, link: PeerLink, *, limit: float) -> bool:
        """Run one PIP-11 round with `link`'s peer; True if it completed.

        A round already running with that peer is not started twice.
        """
        if link.closed:
            return False
        first = self.begin_round(link.peer_id)
        if first is None:
            return False
        req = self.requesters[link.peer_id]
        started = trio.current_time()
        done = self._round_events[link.peer_id] = trio.Event()
        try:
            await link.send_all(first)
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
        self.round_times.observe(trio.current_time() - started)
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
            with self.pusher.storing_from(link.peer_id):
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
        with self.pusher.storing_from(link.peer_id, answering=True):
            return rec.receive(msg, self.clock())

    # -- push (push.py) -------------------------------------------------------------------

    def on_push(self, link: PeerLink, push: Push) -> int:
        """Oplogs a peer pushed (see `Pusher.on_push`); the number refused."""
        return self.pusher.on_push(link, push)

    def on_ihave(self, link: PeerLink, msg: IHave) -> None:
        """A peer announced oplogs (lazypush.py): wait for the ones this node lacks."""
        peer, now = link.peer_id, self.clock()
        if not self.admits_now(peer, now):
            return
        # What arrived lately needs no waiting for, only noting that the peer holds it
        # (no need to announce it back): one look at the seen-cache each.
        lacking = self.seen.lacking(peer, msg.ids)
        if lacking:
            held_by = self.seen.held_by
            for oplog_id in self.lazy.announced(peer, lacking, now):
                held_by(oplog_id, peer)
            self._wake_timer_if_sooner()

    def on_iwant(self, link: PeerLink, msg: IWant) -> None:
        """A peer asks for announced oplogs: send them, and push to it eagerly again."""
        if not self.admits_now(link.peer_id):
            return
        self.lazy.graft(link.peer_id)
        bodies = list(self.ctx.store.bodies(self.topic_id, msg.ids).values())
        for chunk in pack_bodies(bodies, MAX_BODY):
            if link.try_send(Push(self.topic_id, tuple(chunk))):
                self.stats.pushed += len(chunk)

    def _holds_valid(self, oplog_ids: list[bytes]) -> set[bytes]:
        """Which of these oplogs this node holds as valid (a pending copy is not enough:
        the valid one, co-signed, is what was announced)."""
        found = self.ctx.store.existing(self.topic_id, oplog_ids)
        return {oid for oid, s in found.items() if s.status is OplogStatus.VALID}

    def on_prune(self, link: PeerLink) -> None:
        """A peer got a copy it held from us: it only hears announcements from now on."""
        self.lazy.prune(link.peer_id)

    async def run_push(self, links: Callable[[], Iterable[PeerLink]], *, every: float) -> None:
        """The pusher (push.py), and beside it the lazy-push timer; both end with the pusher."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._lazy_timer, links)
            await self.pusher.run(links, every=every)
            nursery.cancel_scope.cancel()

    async def _lazy_timer(self, links: Callable[[], Iterable[PeerLink]]) -> None:
        """Ask for what an announcement promised and the tree did not bring in time,
        and send the announcements that waited for their turn (each a step of
        `timers.serve`: in the simulator, not a wake-up of this task)."""

        def step() -> float:
            now_linked, now = list(links()), self.clock()
            self.router.send_announcements(now_linked, now)
            due = self.lazy.due(now)
            if due:
                by_id = {ln.peer_id: ln for ln in now_linked}
                for peer_id, ids in due.items():
                    link = by_id.get(peer_id)
                    if link is not None:
                        for chunk in id_chunks(ids):
                            link.try_send(IWant(self.topic_id, chunk))
            wake = self._timer_wake = self.lazy.next_wake()
            return math.inf if wake is None else self._trio_at(wake)

        await timers.serve(self._alarm, step)

    def _trio_at(self, t: int) -> float:
        """The trio time at which this node's clock reads `t` (ns)."""
        return trio.current_time() + max(0, t - self.clock()) / 10**9

    def push_batch(self, batch: Batch, links: list[PeerLink]) -> None:
        """Send a batch where it should go (see `PushRouter.push_batch`).

        Every batch the pusher sends leaves through here: it is the pusher's `route`.
        """
        self.router.push_batch(batch, links)
        self._wake_timer_if_sooner()  # announcements may wait for their turn

    def _wake_timer_if_sooner(self) -> None:
        """Wake the lazy timer if it has something to do before the time it sleeps until
        (one wake-up per change of plan, not one per announcement)."""
        wake = self.lazy.next_wake()
        if wake is not None and (self._timer_wake is None or wake < self._timer_wake):
            self._timer_wake = wake
            self._alarm.ring()

    # -- housekeeping ---------------------------------------------------------------------

    def handle_failed_oplogs(self) -> int:
        """HandleFailedOplogs on a timer (also run by every round this node starts).

        Returns how many expired oplogs were rolled back.
        """
        return len(self.ctx.handler.handle_failed_oplogs(self.clock()).failed)

    def scrub(self, limit: int) -> bool:
        """Read the next `limit` stored records (a damaged one is quarantined); whether
        the tree changed, i.e. something was quarantined."""
        before = self.ctx.view.tree.digest()
        self.scrubber.step(limit)
        return self.ctx.view.tree.digest() != before

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
        if self.pusher in self.replica.observers:
            self.replica.observers.remove(self.pusher)
        self.docs.close()
        self.pusher.close()

    def __repr__(self) -> str:
        return f"<topic {self.topic_id.hex()[:12]}>"
