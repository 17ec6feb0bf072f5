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
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError, UsageError
from ..merkle import Level
from ..timeutil import MAX_TIME, hour_start
from .messages import (
    MAX_ITEMS,
    MAX_WANT_RANGES,
    WINDOW_NODES,
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
    WANT_COST,
    Role,
    State,
    SyncStats,
    check_accepts,
    item_size,
    read_range,
    record_cost,
    remote_input,
)
from .syncview import (
    Ref,
    child_ref,
    diff_children,
    diff_leaves,
    expected_list_level,
    in_segments,
    is_within,
    list_digest,
    node_range,
    verify_item,
    window_digest,
    window_end,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..lifecycle.handle import HandleResult
    from .session import SyncContext

log = logging.getLogger(__name__)

_END = MAX_TIME + 1
Range = tuple[int, int, Key]  # [start, end) from key


@dataclass(slots=True)
class _Request:
    """A request in flight: what was asked, to check the replies against it."""

    type: MsgType
    refs: tuple[Ref, ...] = ()
    claims: dict[Ref, bytes] = field(default_factory=dict)
    want_ranges: tuple[Range, ...] = ()


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
        self._items: deque[Ref] = deque()
        self._claims: dict[Ref, bytes] = {}
        self._push_ids: deque[bytes] = deque()
        self._push_ranges: deque[Range] = deque()
        self._want_ids: deque[bytes] = deque()
        self._want_ranges: deque[Range] = deque()
        self._cont: Key | None = None
        self._queued = 0
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
        t = self._t = self.to_sync_time(now)
        view = self.ctx.view
        window = view.leaves(hour_start(t), window_end(t))
        msg = SyncOplog(
            self.ctx.topic_id, round_id, self._next_seq(), t,
            list_digest(view.tree_list(t)), window_digest(window), self.ctx.has_pending(),
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
                self._on_sync_ack(msg)
            case SyncOplogNewOplogsAck():
                # Check the whole message before storing any of it.
                rest = () if msg.next is None else self._rest(request.want_ranges, msg.next)
                self._handle(msg.oplogs, now)
                self._want_ranges.extendleft(reversed(rest))
            case ForceSyncOplogByMerkleAck():
                for item in msg.items:
                    self._on_item(item, request)
            case ForceSyncOplogByOplogAck():
                for oid in msg.want:
                    self._queue(self._push_ids, oid)
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

    def _on_sync_ack(self, msg: SyncOplogAck) -> None:
        self._remote_pending |= msg.pending
        if msg.list_differs:
            self._compare_lists(msg)
        if msg.lo is None:
            if msg.leaves or msg.more:
                raise RemoteProtocolError("SyncOplogAck has leaves but no chunk bounds")
            return
        end = window_end(self._t)
        lo, hi = msg.lo, msg.hi if msg.hi is not None else (end, b"")
        if lo < (hour_start(self._t), b"") or not lo <= hi or hi > (end, b""):
            raise RemoteProtocolError("SyncOplogAck chunk is outside the window")
        keys = [leaf.key for leaf in msg.leaves]
        if keys != sorted(set(keys)) or any(not lo <= k < hi for k in keys):
            raise RemoteProtocolError("SyncOplogAck leaves are out of order or outside the chunk")
        mine = [x for x in self.ctx.view.leaves(lo[0], hi[0] + 1) if lo <= x.key < hi]
        self._queue_diff(*diff_leaves(mine, msg.leaves))
        if msg.more:
            if msg.hi is None:
                raise RemoteProtocolError("SyncOplogAck says more but gives no continuation")
            self._cont = msg.hi

    def _compare_lists(self, msg: SyncOplogAck) -> None:
        starts = [n.start for n in msg.nodes]
        if starts != sorted(set(starts)):
            raise RemoteProtocolError("the tree list is out of order")
        mask, hs, end = msg.list_differs, hour_start(self._t), window_end(self._t)
        theirs = {}
        for n in msg.nodes:
            if n.start >= hs:  # a dense window's hours
                if not mask & WINDOW_NODES or n.level != Level.HOUR or n.start >= end:
                    raise RemoteProtocolError(
                        f"a {n.level.name} node at {n.start} is not asked for"
                    )
            elif expected_list_level(self._t, n.start) != n.level or not in_segments(n.level, mask):
                raise RemoteProtocolError(f"a {n.level.name} node at {n.start} is not in the list")
            try:
                node_range(n.level, 0, n.start)
            except ValueError as exc:
                raise RemoteProtocolError(f"the tree list names no node: {exc}") from None
            theirs[(int(n.level), 0, n.start)] = n.hash
        view = self.ctx.view
        nodes = [n for n in view.tree_list(self._t) if in_segments(n.level, mask)]
        if mask & WINDOW_NODES:
            nodes += view.window_hours(hs, end)
        mine = {(int(n.level), 0, n.start): n.hash for n in nodes}
        for ref in sorted(mine.keys() | theirs.keys(), key=lambda r: r[2]):
            self._compare_node(ref, mine.get(ref), theirs.get(ref))

    def _compare_node(self, ref: Ref, mine: bytes | None, theirs: bytes | None) -> None:
        """Act on one node whose hashes may differ: descend, push or fetch it."""
        if mine == theirs:
            return
        start, end = node_range(*ref)
        if theirs is None:
            self._queue(self._push_ranges, (start, end, (start, b"")))
        elif mine is None:
            self._queue(self._want_ranges, (start, end, (start, b"")))
        else:
            self._claims[ref] = theirs
            self._queue(self._items, ref)

    def _on_item(self, item: Item, request: _Request) -> None:
        """The receiver's view of a node under one I asked about."""
        ref: Ref = (item.level, item.depth, item.start)
        if not any(is_within(parent, ref) for parent in request.refs):
            raise RemoteProtocolError(f"{item.level.name} node at {item.start} was not asked about")
        verify_item(item, request.claims.get(ref))
        view = self.ctx.view
        mine = view.item(ref)
        if item.hash is None or mine.hash is None:
            self._compare_node(ref, mine.hash, item.hash)
        elif item.hash == mine.hash:
            return
        elif item.leaf_children:
            start, end = node_range(*ref)
            self._queue_diff(*diff_leaves(view.leaves(start, end), item.children))  # type: ignore[arg-type]
        else:
            calendar = item.level > Level.HOUR
            kids = mine.children if calendar else view.slice_view(ref)
            for start, my_hash, their_hash in diff_children(kids, item.children):  # type: ignore[arg-type]
                self._compare_node(child_ref(ref, start), my_hash, their_hash)

    def _queue_diff(self, send: Sequence[bytes], want: Sequence[bytes]) -> None:
        """Queue the IDs of a leaf diff: mine to push, theirs to fetch."""
        for oid in send:
            self._queue(self._push_ids, oid)
        for oid in want:
            self._queue(self._want_ids, oid)

    def _queue(self, queue: deque[Ref] | deque[bytes] | deque[Range], value: object) -> None:
        self._queued += 1
        if self._queued > self.ctx.config.max_queued:
            raise RemoteProtocolError("the round's differences exceed this session's bounds")
        queue.append(value)  # type: ignore[arg-type]

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
        topic, rnd = self.ctx.topic_id, self.round
        if self._items:
            items: list[Item] = []
            claims: dict[Ref, bytes] = {}
            size = 0
            while self._items and len(items) < MAX_ITEMS:
                item = self.ctx.view.item(self._items[0])
                if items and size + item_size(item) > MAX_BODY:
                    break
                ref = self._items.popleft()
                items.append(item)
                size += item_size(item)
                if ref in self._claims:
                    claims[ref] = self._claims.pop(ref)
            msg: Message = ForceSyncOplogByMerkle(topic, rnd, self._next_seq(), tuple(items))
            refs = tuple((i.level, i.depth, i.start) for i in items)
            self._out[msg.seq] = _Request(msg.TYPE, refs=refs, claims=claims)
            return msg
        if not (
            self._push_ids or self._push_ranges or self._want_ids or self._want_ranges or self._cont
        ):
            return None
        n = self.ctx.config.want_per_request
        want = tuple(self._want_ids.popleft() for _ in range(min(n, len(self._want_ids))))
        ranges: list[Range] = []
        while self._want_ranges and len(ranges) < MAX_WANT_RANGES:
            if ranges and self._want_ranges[0][0] < ranges[-1][1]:
                break  # keep each request's ranges in order and apart
            ranges.append(self._want_ranges.popleft())
        cont, self._cont = self._cont, None
        # The records fill what the IDs and ranges asked for leave of the frame.
        room = MAX_BODY - WANT_COST * len(want) - RANGE_COST * (len(ranges) + 1)
        msg = SyncOplogNewOplogs(
            topic, rnd, self._next_seq(), tuple(self._take_pushes(room)), want, tuple(ranges), cont
        )
        self._out[msg.seq] = _Request(msg.TYPE, want_ranges=tuple(ranges))
        return msg

    def _take_pushes(self, room: int) -> list[bytes]:
        """Records for one message, up to `room` bytes: queued IDs first, then queued ranges."""
        store, topic = self.ctx.store, self.ctx.topic_id
        out: list[bytes] = []
        size = 0
        while self._push_ids and size < room:
            ids = [self._push_ids.popleft() for _ in range(min(256, len(self._push_ids)))]
            bodies = store.bodies(topic, ids)
            for i, oid in enumerate(ids):
                body = bodies.get(oid)
                if body is None:
                    continue  # replaced or deleted since: the tree will show it next round
                if out and size + record_cost(body) > room:
                    self._push_ids.extendleft(reversed(ids[i:]))
                    return out
                out.append(body)
                size += record_cost(body)
        while self._push_ranges and size < room:
            start, end, lo = self._push_ranges[0]
            got, used, nxt = read_range(store, topic, lo, end, room - size, take_one=not out)
            out += got
            size += used
            if nxt is not None:
                self._push_ranges[0] = (start, end, nxt)
                break
            self._push_ranges.popleft()
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
