"""The receiver: the side that answers a sync round.

It answers every request, and never silently: a round it will not serve
gets a SyncOplogReject saying why (go-pttai's receiver ignored a requester
with a newer sync time, §8.1).  Every reply is chunked under the frame limit
and its last message has `last` set, so the requester knows when a request
is fully answered.

Replays: a SyncOplog must carry a round ID this receiver has not seen
recently, and the requests of a round must carry increasing sequence
numbers.  Anything else is a RemoteProtocolError.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError
from ..merkle import Level
from ..oplogcodec import encode_oplog
from ..timeutil import MAX_TIME, hour_start
from .fingerprint import (
    FULL,
    diff_children,
    diff_leaf_fps,
    fingerprinted,
    resolve,
    same,
    want_range,
)
from .messages import (
    MAX_ITEM_LEAVES,
    MAX_ITEMS,
    WINDOW_NODES,
    ForceSyncOplogByMerkle,
    ForceSyncOplogByMerkleAck,
    ForceSyncOplogByOplogAck,
    FpWant,
    Item,
    Key,
    ListNode,
    Message,
    RejectCode,
    SyncOplog,
    SyncOplogAck,
    SyncOplogNewOplogs,
    SyncOplogNewOplogsAck,
    SyncOplogReject,
    SyncPendingOplog,
    SyncPendingOplogAck,
)
from .session import (
    Role,
    State,
    SyncStats,
    check_accepts,
    pack_bodies,
    pack_items,
    pack_with_wants,
    read_range,
    remote_input,
)
from .syncview import (
    Ref,
    child_ref,
    differing_segments,
    in_segments,
    node_range,
    verify_item,
    window_end,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .session import SyncContext

_END = MAX_TIME + 1
RECENT_ROUNDS = 64


class Receiver:
    """Answers sync rounds from one peer on one topic."""

    role = Role.RECEIVER

    def __init__(self, ctx: SyncContext, peer: bytes) -> None:
        self.ctx = ctx
        self.peer = peer
        self.state = State.IDLE
        self.stats = SyncStats()
        self.round = b""
        self._seq = 0
        self._window_end = 0  # this round's (syncview.window_end), set by its SyncOplog
        self._recent: deque[bytes] = deque(maxlen=RECENT_ROUNDS)

    def receive(self, msg: Message, now: int) -> list[Message]:
        """Handle one request; returns the reply messages (never none).

        Raises:
            RemoteProtocolError: the request breaks the protocol.  Nothing of
                that message is stored; the peer should be closed or penalised.
        """
        self.stats.messages_received += 1
        with remote_input():
            check_accepts(self.role, self.state, msg)
            if msg.topic != self.ctx.topic_id:
                raise RemoteProtocolError(f"{type(msg).__name__} is for another topic")
            if isinstance(msg, SyncOplog):
                if msg.round in self._recent:
                    raise RemoteProtocolError("SyncOplog repeats a recent round ID (replayed?)")
                self._recent.append(msg.round)
                self.round, self._seq = msg.round, msg.seq
                self.state = State.SERVING
                self.stats.rounds += 1
            elif msg.round != self.round or msg.seq <= self._seq:
                raise RemoteProtocolError(f"{type(msg).__name__} is stale or replayed")
            self._seq = msg.seq
            match msg:
                case SyncOplog():
                    out = self._on_sync_oplog(msg)
                case SyncOplogNewOplogs():
                    out = self._on_new_oplogs(msg, now)
                case ForceSyncOplogByMerkle():
                    out = self._on_force_sync(msg)
                case SyncPendingOplog():
                    out = self._on_pending(msg, now)
                case _:  # pragma: no cover (check_accepts let only requests through)
                    raise RemoteProtocolError(f"unexpected {type(msg).__name__}")
        out[-1] = replace(out[-1], last=True)  # type: ignore[call-arg]
        self.stats.count_sent(out)
        return out

    def reject(self, msg: Message, code: RejectCode, reason: str) -> SyncOplogReject:
        """A SyncOplogReject answering `msg` (for the shell: unknown topic, busy)."""
        return SyncOplogReject(msg.topic, msg.round, msg.seq, code, reason[:200])

    # -- requests ----------------------------------------------------------------

    def _on_sync_oplog(self, msg: SyncOplog) -> list[Message]:
        t = msg.to_sync_time
        view = self.ctx.view
        basis = view.basis(t)
        nodes = basis.nodes
        mask = differing_segments(basis.list_digest, msg.list_digest)
        w = self.ctx.config.fingerprint
        sent = [ListNode(n.level, n.start, n.hash[:w]) for n in nodes if in_segments(n.level, mask)]
        self._window_end = end = window_end(t)
        window = basis.window
        window_differs = basis.window_digest != msg.window_digest
        dense = window_differs and len(window) > self.ctx.config.window_list_max
        if dense:
            # Too many leaves to list: send the window's hours, to be descended.
            mask |= WINDOW_NODES
            sent += [
                ListNode(n.level, n.start, n.hash[:w])
                for n in view.window_hours(hour_start(t), end)
            ]
        first = SyncOplogAck(
            msg.topic, msg.round, msg.seq, mask, tuple(sent), None, None, (), False,
            self.ctx.has_pending(), False,
        )  # fmt: skip
        if not window_differs or dense:
            return [first]
        return [first, *self._listing(msg, (hour_start(t), b""))]

    def _listing(self, msg: Message, lo: Key) -> list[Message]:
        """SyncOplogAck chunks of my leaves from key `lo`, up to the listing budget."""
        cfg = self.ctx.config
        out: list[Message] = []
        listed = 0
        while True:
            leaves = self.ctx.store.leaves_from(
                self.ctx.topic_id, lo, self._window_end, cfg.list_chunk + 1
            )
            hi = leaves[cfg.list_chunk].key if len(leaves) > cfg.list_chunk else None
            chunk = tuple((x.time, x.hash[: cfg.fingerprint]) for x in leaves[: cfg.list_chunk])
            listed += len(chunk)
            more = hi is not None and listed >= cfg.list_budget
            out.append(
                SyncOplogAck(
                    msg.topic, msg.round, msg.seq, 0, (), lo, hi, chunk, more, False, False
                )
            )
            if hi is None or more:
                return out
            lo = hi

    def _on_new_oplogs(self, msg: SyncOplogNewOplogs, now: int) -> list[Message]:
        if msg.cont is not None and msg.cont < (0, b""):
            raise RemoteProtocolError("listing continuation is out of range")
        self._handle(msg.oplogs, now)
        store, topic = self.ctx.store, self.ctx.topic_id
        asked: list[bytes] = []
        for want in msg.want_fps:
            start, end = want_range(want)
            asked += resolve(store.leaves_from(topic, (start, b""), end, MAX_ITEM_LEAVES), want)
        bodies = store.bodies(topic, asked)
        found = [bodies[oid] for oid in dict.fromkeys(asked) if oid in bodies]
        nxt: Key | None = None
        if msg.want_ranges:
            more, nxt = self._ranges(msg.want_ranges)
            found += more
        groups = pack_bodies(found) or [[]]
        out: list[Message] = [
            SyncOplogNewOplogsAck(msg.topic, msg.round, msg.seq, tuple(g), None, False)
            for g in groups
        ]
        out[-1] = replace(out[-1], next=nxt)  # type: ignore[call-arg]
        if msg.cont is not None:
            out += self._listing(msg, msg.cont)
        return out

    def _ranges(self, ranges: Sequence[tuple[int, int, Key]]) -> tuple[list[bytes], Key | None]:
        """My records in the ranges (in order) up to the reply budget, and where to go on."""
        out: list[bytes] = []
        size = 0
        for _start, end, lo in ranges:
            room = self.ctx.config.reply_budget - size
            got, used, nxt = read_range(
                self.ctx.store, self.ctx.topic_id, lo, end, room, take_one=not out
            )
            out += got
            size += used
            if nxt is not None:
                return out, nxt
        return out, None

    def _on_force_sync(self, msg: ForceSyncOplogByMerkle) -> list[Message]:
        items: list[Item] = []
        send: list[bytes] = []
        want: list[FpWant] = []
        for theirs in msg.items:
            verify_item(theirs)
            self._compare(theirs, items, send, want)
        out: list[Message] = [
            ForceSyncOplogByMerkleAck(msg.topic, msg.round, msg.seq, tuple(g), False)
            for g in pack_items(items, MAX_ITEMS)
        ]
        if send or want:
            bodies = self.ctx.store.bodies(self.ctx.topic_id, send)
            found = [bodies[oid] for oid in send if oid in bodies]
            out += [
                ForceSyncOplogByOplogAck(msg.topic, msg.round, msg.seq, tuple(g), tuple(w), False)
                for g, w in pack_with_wants(found, want)
            ]
        return out or [ForceSyncOplogByMerkleAck(msg.topic, msg.round, msg.seq, (), False)]

    def _compare(
        self, theirs: Item, items: list[Item], send: list[bytes], want: list[FpWant]
    ) -> None:
        """Compare the requester's view of a node with mine; collect what to answer.

        I answer in the width it asked in: my items, cut to fingerprints of
        that width, flat where I hold few leaves (fingerprint.py).
        """
        view = self.ctx.view
        ref: Ref = theirs.ref
        mine = view.item(ref)
        if same(mine.hash, theirs.hash):
            if theirs.hash is not None:
                # It sends only nodes it knows differ: our fingerprints collide.
                self._collision(ref, len(theirs.hash), items)
            return
        w = self.ctx.config.fingerprint if theirs.hash is None else len(theirs.hash)
        if theirs.hash is None or mine.hash is None:
            # It lacks the node, or I do: it fetches or pushes the whole range.
            held = mine if mine.hash is None else view.item(ref, self.ctx.config.flat_max)
            items.append(fingerprinted(held, w))
            return
        if theirs.leaf_children:
            # Their leaves are all there is to compare, whatever my shape: diff them
            # here (sending my split node back would cost a round trip per level),
            # unless I hold so many that the reply would be unbounded: then it
            # descends through my slices.
            start, end = node_range(*ref)
            limit = self.ctx.config.leaf_diff_max
            lv = self.ctx.store.leaves_from(self.ctx.topic_id, (start, b""), end, limit + 1)
            if len(lv) > limit and not mine.leaf_children:
                items.append(fingerprinted(mine, w))
                return
            if len(lv) > limit:  # an unsplittable bucket (> 32 leaves within 16 ns)
                lv = view.leaves(start, end)
            s, fps = diff_leaf_fps(lv, theirs.children, w)  # type: ignore[arg-type]
            if not s and not fps:
                self._collision(ref, w, items)
            send += s
            if fps:
                want.append(FpWant(theirs.level, theirs.depth, theirs.start, w, fps))
            return
        diffs = diff_children(view.children(ref, mine), theirs.children, w)  # type: ignore[arg-type]
        if not diffs:
            self._collision(ref, w, items)
        for start, my_hash, _ in diffs:
            child = child_ref(ref, start)
            if my_hash is None:
                items.append(Item(Level(child[0]), child[1], start, None, False, ()))
            else:
                items.append(fingerprinted(view.item(child, self.ctx.config.flat_max), w))

    def _collision(self, ref: Ref, width: int, items: list[Item]) -> None:
        """Fingerprints differ but nothing under them does: send my node at full width."""
        if width < FULL:
            self.stats.collisions += 1
            items.append(fingerprinted(self.ctx.view.item(ref), FULL))

    def _on_pending(self, msg: SyncPendingOplog, now: int) -> list[Message]:
        result = self.ctx.handler.handle_pending_oplogs(msg.oplogs, now)
        self.stats.count_handled(len(msg.oplogs), result)
        self.ctx.handler.handle_failed_oplogs(now)
        self.state = State.IDLE
        # What the requester can sign, and our better copies of what it sent
        # (co-signed here, or now valid), so that it learns them in this round.
        offer = dict.fromkeys(self.ctx.pending_for_peer(self.peer, now))
        offer.update(dict.fromkeys(encode_oplog(o) for o in result.improved))
        mine = pack_bodies(offer) or [[]]
        return [SyncPendingOplogAck(msg.topic, msg.round, msg.seq, tuple(g), False) for g in mine]

    def _handle(self, oplogs: Sequence[bytes], now: int) -> None:
        if not oplogs:
            return
        result = self.ctx.handler.handle_oplogs(oplogs, now)
        self.stats.count_handled(len(oplogs), result)
