"""The requester: the side that starts a sync round and drives it to the end.

One round (docs/pip-11/sync.md has the sequence diagrams):

1. **SyncOplog**: my to-sync-time T and digests of my tree list (everything
   before hour(T)) and of my window (every leaf from hour(T) on).
2. The receiver's **SyncOplogAck** carries its tree list if the list
   digests differ, and its window leaves in chunks if the window digests
   differ.  Both parts run in the same round (go-pttai skipped the window
   while the trees differed, §8.2).
3. Window: I diff each chunk against my leaves (key and hash) and send
   **SyncOplogNewOplogs** with the oplogs the receiver lacks and the IDs I
   want; the **SyncOplogNewOplogsAck** brings them.
4. Tree: for every node that differs I send my children of it
   (**ForceSyncOplogByMerkle**); the receiver answers with its children of
   the child nodes that differ, one level further down
   (**ForceSyncOplogByMerkleAck**), or, where I sent leaves (my unsplit
   hours and slices, whatever its own shape there), with the oplogs I lack
   and the IDs it wants (**ForceSyncOplogByOplogAck**).
   A node one side lacks entirely is not descended: its whole range is
   pushed or fetched.  Both directions are repaired in the same round.
5. When nothing is outstanding, the round's data is stored, so the peer's
   sync time moves forward; then **postsync** runs once.

Everything queued is bounded by SyncConfig.max_queued, and at most
SyncConfig.pipeline requests are in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError, UsageError
from ..timeutil import DAY_NS, MAX_TIME
from .compare import Findings, Range, split_rest
from .fingerprint import (
    FULL,
    fingerprinted,
    resolve,
    want_range,
)
from .messages import (
    MAX_ITEM_LEAVES,
    MAX_ITEMS,
    MAX_WANT_RANGES,
    ForceSyncOplogByMerkle,
    ForceSyncOplogByMerkleAck,
    ForceSyncOplogByOplogAck,
    Item,
    Key,
    Message,
    MsgType,
    SyncOplog,
    SyncOplogAck,
    SyncOplogNewOplogs,
    SyncOplogNewOplogsAck,
    SyncOplogReject,
    SyncPendingOplog,
    SyncPendingOplogAck,
)
from .session import (
    MAX_BODY,
    RANGE_COST,
    REPLY_TYPES,
    Role,
    State,
    SyncStats,
    check_accepts,
    item_size,
    read_range,
    record_cost,
    remote_input,
    want_cost,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..lifecycle.handle import HandleResult
    from .session import SyncContext
    from .syncview import Ref

log = logging.getLogger(__name__)

_END = MAX_TIME + 1


@dataclass(slots=True)
class _Request:
    """A request in flight: what was asked, to check the replies against it."""

    type: MsgType
    refs: tuple[Ref, ...] = ()
    claims: dict[Ref, bytes] = field(default_factory=dict)
    want_ranges: tuple[Range, ...] = ()


def _bulk(r: Range) -> bool:
    """True for a range over a day: likely more than one reply's worth."""
    return r[1] - r[0] > DAY_NS


class Requester:
    """Drives sync rounds with one peer on one topic."""

    role = Role.REQUESTER

    def __init__(self, ctx: SyncContext, peer: bytes) -> None:
        self.ctx = ctx
        self.peer = peer
        self.state = State.IDLE
        self.stats = SyncStats()
        self.round = b""
        self.reject_reason: str | None = None
        self._reset()

    def _reset(self) -> None:
        self._seq = 0
        self._out: dict[int, _Request] = {}
        self._f = Findings(self.ctx, self.stats, 0)
        self._remote_pending = False
        self._clean = True

    # -- public ------------------------------------------------------------------

    def to_sync_time(self, now: int) -> int:
        """PIP-11's to-sync-time: the peer's sync time less the offset, within the window."""
        cfg = self.ctx.config
        synced = min(self.ctx.store.sync_time(self.ctx.topic_id, self.peer), now)
        return max(0, max(synced, now - cfg.max_window) - cfg.sync_offset)

    def start(self, now: int, round_id: bytes) -> list[Message]:
        """Start a round; returns the SyncOplog to send."""
        if self.state in (State.SYNCING, State.POSTSYNC):
            raise UsageError("a sync round with this peer is already running")
        if len(round_id) != 16 or round_id == self.round:
            raise UsageError("a round needs a fresh 16-byte round ID")
        self._reset()
        self.round, self.reject_reason = round_id, None
        self.state = State.SYNCING
        self.stats.rounds += 1
        self._started = now
        t = self.to_sync_time(now)
        self._f = Findings(self.ctx, self.stats, t)
        basis = self.ctx.view.basis(t)
        msg = SyncOplog(
            self.ctx.topic_id, round_id, self._next_seq(), t,
            basis.list_digest, basis.window_digest, self.ctx.has_pending(),
        )  # fmt: skip
        self._out[msg.seq] = _Request(msg.TYPE)
        return self._sent([msg])

    def abort(self) -> None:
        """The link was lost: drop the round.  What was stored stays stored."""
        if self.state in (State.SYNCING, State.POSTSYNC):
            self.state = State.FAILED

    @property
    def done(self) -> bool:
        return self.state in (State.DONE, State.FAILED)

    def receive(self, msg: Message, now: int) -> list[Message]:
        """Handle one message from the receiver; returns the messages to send.

        Raises:
            RemoteProtocolError: the message breaks the protocol (the round
                is then FAILED and the peer should be closed or penalised).
        """
        self.stats.messages_received += 1
        try:
            with remote_input():
                check_accepts(self.role, self.state, msg)
                if msg.topic != self.ctx.topic_id or msg.round != self.round:
                    raise RemoteProtocolError(
                        f"{type(msg).__name__} is not for this round (replayed?)"
                    )
                request = self._out.get(msg.seq)
                if request is None or msg.TYPE not in REPLY_TYPES[request.type]:
                    raise RemoteProtocolError(
                        f"{type(msg).__name__} answers no request in flight (seq {msg.seq})"
                    )
                self._dispatch(msg, request, now)
        except RemoteProtocolError:
            if self.state in (State.SYNCING, State.POSTSYNC):
                self.state = State.FAILED  # a finished round stays as it ended
            raise
        if getattr(msg, "last", True):
            del self._out[msg.seq]
        if self.state is State.FAILED:
            return []
        return self._sent(self._pump(now))

    # -- replies -----------------------------------------------------------------

    def _dispatch(self, msg: Message, request: _Request, now: int) -> None:
        match msg:
            case SyncOplogReject():
                self.reject_reason = f"{msg.code.name}: {msg.reason}"
                log.info("peer rejected the sync round: %s", self.reject_reason)
                self.state = State.FAILED
            case SyncOplogAck():
                self._remote_pending |= msg.pending
                self._f.sync_ack(msg)
            case SyncOplogNewOplogsAck():
                # Check the whole message before storing any of it.
                rest = () if msg.next is None else self._rest(request.want_ranges, msg.next)
                self._handle(msg.oplogs, now)
                self._f.want_ranges.extendleft(reversed(split_rest(rest)))
            case ForceSyncOplogByMerkleAck():
                for item in msg.items:
                    self._f.item(item, request.refs, request.claims)
            case ForceSyncOplogByOplogAck():
                store, topic = self.ctx.store, self.ctx.topic_id
                for want in msg.want_fps:
                    start, end = want_range(want)
                    mine = store.leaves_from(topic, (start, b""), end, MAX_ITEM_LEAVES)
                    for oid in resolve(mine, want):
                        self._f.queue(self._f.push_ids, oid)
                self._handle(msg.oplogs, now)
            case SyncPendingOplogAck():
                result = self.ctx.handler.handle_pending_oplogs(msg.oplogs, now)
                self.stats.count_handled(len(msg.oplogs), result)
                if msg.last:
                    self.state = State.DONE

    def _handle(self, oplogs: Sequence[bytes], now: int) -> None:
        if not oplogs:
            return
        result: HandleResult = self.ctx.handler.handle_oplogs(oplogs, now)
        self.stats.count_handled(len(oplogs), result)
        if result.rejected or result.waiting:
            self._clean = False

    def _rest(self, asked: Sequence[Range], nxt: Key) -> list[Range]:
        """What to ask again when the receiver had no room: every key from `nxt` on."""
        rest = [(s, e, max(lo, nxt)) for s, e, lo in asked if (e, b"") > nxt]
        if not rest or rest == list(asked):
            raise RemoteProtocolError("a range continuation that makes no progress")
        return rest

    # -- requests ----------------------------------------------------------------

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _sent(self, msgs: list[Message]) -> list[Message]:
        self.stats.count_sent(msgs)
        return msgs

    def _pump(self, now: int) -> list[Message]:
        """Send what is queued, up to the pipeline; finish the round when all is done."""
        out: list[Message] = []
        while self.state is State.SYNCING and len(self._out) < self.ctx.config.pipeline:
            msg = self._next_request()
            if msg is None:
                break
            out.append(msg)
        if self.state is State.SYNCING and not self._out:
            out += self._finish_sync(now)
        return out

    def _next_request(self) -> Message | None:
        topic, rnd, f = self.ctx.topic_id, self.round, self._f
        if f.items:
            items: list[Item] = []
            claims: dict[Ref, bytes] = {}
            size = 0
            cfg, view = self.ctx.config, self.ctx.view
            while f.items and len(items) < MAX_ITEMS:
                ref = f.items[0]
                full = ref in f.full
                item = fingerprinted(
                    view.item(ref, 0 if full or ref in f.mine else cfg.flat_max),
                    FULL if full else cfg.fingerprint,
                )
                if items and size + item_size(item) > MAX_BODY:
                    break
                f.items.popleft()
                items.append(item)
                size += item_size(item)
                if ref in f.claims:
                    claims[ref] = f.claims.pop(ref)
            msg: Message = ForceSyncOplogByMerkle(topic, rnd, self._next_seq(), tuple(items))
            refs = tuple((i.level, i.depth, i.start) for i in items)
            self._out[msg.seq] = _Request(msg.TYPE, refs=refs, claims=claims)
            return msg
        if not f.requests_left:
            return None
        fps = f.take_wants(self.ctx.config.want_per_request, MAX_BODY // 2)
        ranges: list[Range] = []
        while f.want_ranges and len(ranges) < MAX_WANT_RANGES:
            if ranges and f.want_ranges[0][0] < ranges[-1][1]:
                break  # keep each request's ranges in order and apart
            if ranges and (_bulk(f.want_ranges[0]) or _bulk(ranges[-1])):
                break  # a range over a day gets a request of its own: they run side by side
            ranges.append(f.want_ranges.popleft())
        cont, f.cont = f.cont, None
        # The records fill what the wants and ranges leave of the frame.
        room = MAX_BODY - RANGE_COST * (len(ranges) + 1) - sum(want_cost(x) for x in fps)
        msg = SyncOplogNewOplogs(
            topic, rnd, self._next_seq(), tuple(self._take_pushes(room)), tuple(fps),
            tuple(ranges), cont,
        )  # fmt: skip
        self._out[msg.seq] = _Request(msg.TYPE, want_ranges=tuple(ranges))
        return msg

    def _take_pushes(self, room: int) -> list[bytes]:
        """Records for one message, up to `room` bytes: queued IDs first, then queued ranges."""
        store, topic, f = self.ctx.store, self.ctx.topic_id, self._f
        out: list[bytes] = []
        size = 0
        while f.push_ids and size < room:
            ids = [f.push_ids.popleft() for _ in range(min(256, len(f.push_ids)))]
            bodies = store.bodies(topic, ids)
            for i, oid in enumerate(ids):
                body = bodies.get(oid)
                if body is None:
                    continue  # replaced or deleted since: the tree will show it next round
                if out and size + record_cost(body) > room:
                    f.push_ids.extendleft(reversed(ids[i:]))
                    return out
                out.append(body)
                size += record_cost(body)
        while f.push_ranges and size < room:
            start, end, lo = f.push_ranges[0]
            got, used, nxt = read_range(store, topic, lo, end, room - size, take_one=not out)
            out += got
            size += used
            if nxt is not None:
                f.push_ranges[0] = (start, end, nxt)
                break
            f.push_ranges.popleft()
        return out

    def _finish_sync(self, now: int) -> list[Message]:
        """Everything is stored: move the sync time, then run postsync once."""
        if self._clean:
            self.ctx.store.set_sync_time(self.ctx.topic_id, self.peer, self._started)
        self.ctx.handler.handle_failed_oplogs(now)
        if not (self._remote_pending or self.ctx.has_pending()):
            self.state = State.DONE
            return []
        self.state = State.POSTSYNC
        offer = self.ctx.pending_for_peer(self.peer, now)
        msg = SyncPendingOplog(self.ctx.topic_id, self.round, self._next_seq(), tuple(offer))
        self._out[msg.seq] = _Request(msg.TYPE)
        return [msg]
