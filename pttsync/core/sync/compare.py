"""What a requester finds to do in one round: the comparisons and the queues they fill.

The requester (requester.py) feeds every reply that compares something
(the tree list, a window listing, the receiver's items) to `Findings`, which
decides, node by node: equal, descend, push the range, fetch the range, or
compare again at full width after a fingerprint collision (fingerprint.py);
and, at the leaves, which records to push and which to ask for.  The
requester then drains the queues into requests.

Everything queued in a round counts against `SyncConfig.max_queued`.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError
from ..merkle import Level
from ..timeutil import DAY_NS, hour_start, next_month_start
from .fingerprint import FULL, diff_children, diff_leaf_fps, diff_marks, same
from .messages import MAX_WANT_NODES, WINDOW_NODES, FpWant, Item, Key, SyncOplogAck
from .session import want_cost
from .syncview import (
    LIST_LEVELS,
    Ref,
    child_ref,
    expected_list_level,
    in_segments,
    is_within,
    node_range,
    verify_item,
    window_end,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .messages import Mark
    from .session import SyncContext, SyncStats

log = logging.getLogger(__name__)

Range = tuple[int, int, Key]
"""[start, end) from key."""


def segment(ref: Ref, window_start: int) -> int:
    """The bit of `SyncOplogAck.list_differs` that a list or window node belongs to."""
    if ref[2] >= window_start:
        return WINDOW_NODES
    return 1 << LIST_LEVELS.index(Level(ref[0]))


def split_rest(rest: Sequence[Range]) -> list[Range]:
    """What is left of ranges a reply could not finish, cut at month boundaries.

    A range whose first reply already filled the reply budget is large: its
    months go in requests of their own (Requester), so up to the pipeline's
    worth run side by side and the peer reads the next month while I store
    the last.  One range answered reply by reply made each side wait for the
    other (a first sync ran at the sum of both sides' costs).  A small range
    is never cut, so it still costs one request.
    """
    out: list[Range] = []
    for start, end, lo in rest:
        at = lo[0]
        cut = next_month_start(at)
        if end - at <= 31 * DAY_NS or cut >= end:
            out.append((start, end, lo))
            continue
        out.append((start, cut, lo))
        while cut < end:
            nxt = min(next_month_start(cut), end)
            out.append((cut, nxt, (cut, b"")))
            cut = nxt
    return out


class Findings:
    """One round's comparisons (to-sync-time `t`) and the work they queue."""

    def __init__(self, ctx: SyncContext, stats: SyncStats, t: int) -> None:
        self.ctx = ctx
        self.stats = stats
        self.t = t
        self.items: deque[Ref] = deque()  # nodes to send my view of
        self.claims: dict[Ref, bytes] = {}  # what the peer said those nodes hash to
        self.push_ids: deque[bytes] = deque()
        self.push_ranges: deque[Range] = deque()
        self.want_ranges: deque[Range] = deque()
        self.want_fps: deque[FpWant] = deque()
        self.full: set[Ref] = set()  # nodes compared again at full width (a collision)
        self.mine: set[Ref] = set()  # nodes I send in my shape after a flat reply
        self.cont: Key | None = None  # the window listing continues from here
        self.listed_diff = False  # the window listing showed a difference
        self.queued = 0

    @property
    def requests_left(self) -> bool:
        """True if anything is queued for a SyncOplogNewOplogs."""
        return bool(
            self.push_ids or self.push_ranges or self.want_ranges or self.want_fps or self.cont
        )

    def take_wants(self, leaves: int, room: int) -> list[FpWant]:
        """Wants by fingerprint for one request: at most `leaves` leaves, in `room` bytes.

        A node's wants over what is left of `leaves` are cut: the rest goes
        first in the next request.
        """
        out: list[FpWant] = []
        while self.want_fps and len(out) < MAX_WANT_NODES and leaves > 0:
            want = self.want_fps.popleft()
            n = len(want.fps) // want.width
            if n > leaves:
                cut = leaves * want.width
                self.want_fps.appendleft(replace(want, fps=want.fps[cut:]))
                want, n = replace(want, fps=want.fps[:cut]), leaves
            if out and want_cost(want) > room:
                self.want_fps.appendleft(want)
                break
            out.append(want)
            room -= want_cost(want)
            leaves -= n
        return out

    def queue(
        self, queue: deque[Ref] | deque[bytes] | deque[Range] | deque[FpWant], value: object
    ) -> None:
        """Queue one piece of work, within the round's bound.

        Raises:
            RemoteProtocolError: the peer made the round exceed `max_queued`.
        """
        self.queued += 1
        if self.queued > self.ctx.config.max_queued:
            raise RemoteProtocolError("the round's differences exceed this session's bounds")
        queue.append(value)  # type: ignore[arg-type]

    # -- the SyncOplogAck ----------------------------------------------------------

    def sync_ack(self, msg: SyncOplogAck) -> None:
        """The tree list's differing segments, and one chunk of the window listing."""
        if msg.list_differs:
            self._compare_lists(msg)
        if msg.lo is None:
            if msg.leaves or msg.more:
                raise RemoteProtocolError("SyncOplogAck has leaves but no chunk bounds")
            return
        end = window_end(self.t)
        lo, hi = msg.lo, msg.hi if msg.hi is not None else (end, b"")
        if lo < (hour_start(self.t), b"") or not lo <= hi or hi > (end, b""):
            raise RemoteProtocolError("SyncOplogAck chunk is outside the window")
        times = [t for t, _ in msg.leaves]
        if times != sorted(times) or any(not lo[0] <= t <= hi[0] for t in times):
            raise RemoteProtocolError("SyncOplogAck leaves are out of order or outside the chunk")
        mine = [x for x in self.ctx.view.leaves(lo[0], hi[0] + 1) if lo <= x.key < hi]
        send, wants = diff_marks(mine, msg.leaves)
        self.listed_diff |= bool(send or wants)
        for oid in send:
            self.queue(self.push_ids, oid)
        for want in wants:
            self.queue(self.want_fps, want)
        if msg.more:
            if msg.hi is None:
                raise RemoteProtocolError("SyncOplogAck says more but gives no continuation")
            self.cont = msg.hi
        elif msg.hi is None and not self.listed_diff:
            # The window digests differ, yet the listing shows nothing: the
            # marks collide.  Compare the window's hours at full width.
            self._window_collision(msg.leaves, end)

    def _compare_lists(self, msg: SyncOplogAck) -> None:
        starts = [n.start for n in msg.nodes]
        if starts != sorted(set(starts)):
            raise RemoteProtocolError("the tree list is out of order")
        t = self.t
        mask, hs, end = msg.list_differs, hour_start(t), window_end(t)
        theirs = {}
        for n in msg.nodes:
            if n.start >= hs:  # a dense window's hours
                if not mask & WINDOW_NODES or n.level != Level.HOUR or n.start >= end:
                    raise RemoteProtocolError(
                        f"a {n.level.name} node at {n.start} is not asked for"
                    )
            elif expected_list_level(t, n.start) != n.level or not in_segments(n.level, mask):
                raise RemoteProtocolError(f"a {n.level.name} node at {n.start} is not in the list")
            try:
                node_range(n.level, 0, n.start)
            except ValueError as exc:
                raise RemoteProtocolError(f"the tree list names no node: {exc}") from None
            theirs[(int(n.level), 0, n.start)] = n.hash
        view = self.ctx.view
        nodes = [n for n in view.basis(t).nodes if in_segments(n.level, mask)]
        if mask & WINDOW_NODES:
            nodes += view.window_hours(hs, end)
        mine = {(int(n.level), 0, n.start): n.hash for n in nodes}
        differs = 0  # the segments where a node differs
        for ref in sorted(mine.keys() | theirs.keys(), key=lambda r: r[2]):
            if not same(mine.get(ref), theirs.get(ref)):
                differs |= segment(ref, hs)
            self.compare_node(ref, mine.get(ref), theirs.get(ref))
        if mask & ~differs:
            # A segment's digests differ, yet none of its nodes' fingerprints do.
            for ref, fp in theirs.items():
                if segment(ref, hs) & mask & ~differs:
                    self.collision(ref, fp)

    def _window_collision(self, marks: Sequence[Mark], end: int) -> None:
        """Compare every hour of the window either side holds at full width."""
        hs = hour_start(self.t)
        hours = {hour_start(x.time) for x in self.ctx.view.leaves(hs, end)}
        hours |= {hour_start(t) for t, _ in marks}
        self.stats.collisions += 1
        for h in sorted(hours):
            ref: Ref = (int(Level.HOUR), 0, h)
            if ref not in self.full:
                self.full.add(ref)
                self.queue(self.items, ref)

    # -- nodes ---------------------------------------------------------------------

    def compare_node(self, ref: Ref, mine: bytes | None, theirs: bytes | None) -> None:
        """Act on one node whose hashes may differ: descend, push or fetch it."""
        if same(mine, theirs):
            return
        start, end = node_range(*ref)
        if theirs is None:
            self.queue(self.push_ranges, (start, end, (start, b"")))
        elif mine is None:
            self.queue(self.want_ranges, (start, end, (start, b"")))
        else:
            self.claims[ref] = theirs
            self.queue(self.items, ref)

    def item(self, item: Item, asked: Sequence[Ref], claims: dict[Ref, bytes]) -> None:
        """The receiver's view of a node under one of `asked`."""
        ref: Ref = (item.level, item.depth, item.start)
        if not any(is_within(parent, ref) for parent in asked):
            raise RemoteProtocolError(f"{item.level.name} node at {item.start} was not asked about")
        verify_item(item)
        claimed = claims.get(ref)
        if claimed is not None and not _agrees(claimed, item.hash):
            # The peer's tree changed since it named this node (a push landed, a write
            # committed): an honest race, compared as the node is now.
            self.stats.changed += 1
            log.debug("%s changed on the peer during the round", ref)
        view = self.ctx.view
        mine = view.item(ref)
        if item.hash is None or mine.hash is None:
            self.compare_node(ref, mine.hash, item.hash)
            return
        if same(mine.hash, item.hash):
            return
        w = len(item.hash)
        if item.leaf_children:
            start, end = node_range(*ref)
            limit = self.ctx.config.leaf_diff_max
            leaves = self.ctx.store.leaves_from(self.ctx.topic_id, (start, b""), end, limit + 1)
            if len(leaves) > limit and ref not in self.mine:
                # Too many of mine to diff against a flat list: compare in my shape.
                self.mine.add(ref)
                self.claims[ref] = item.hash
                self.queue(self.items, ref)
                return
            if len(leaves) > limit:
                leaves = view.leaves(start, end)
            send, want = diff_leaf_fps(leaves, item.children, w)  # type: ignore[arg-type]
            if not send and not want:
                self.collision(ref, item.hash)
            for oid in send:
                self.queue(self.push_ids, oid)
            if want:
                self.queue(self.want_fps, FpWant(item.level, item.depth, item.start, w, want))
            return
        diffs = diff_children(view.children(ref, mine), item.children, w)  # type: ignore[arg-type]
        if not diffs:
            self.collision(ref, item.hash)
        for start, my_hash, their_hash in diffs:
            self.compare_node(child_ref(ref, start), my_hash, their_hash)

    def collision(self, ref: Ref, theirs: bytes) -> None:
        """Fingerprints differ but nothing under them does: compare at full width."""
        if len(theirs) == FULL or ref in self.full:
            return  # at full width the peer's hashes were checked; nothing is left to do
        self.stats.collisions += 1
        log.info("fingerprint collision at %s: comparing it at full width", ref)
        self.full.add(ref)
        self.claims[ref] = theirs
        self.queue(self.items, ref)


def _agrees(claimed: bytes, now: bytes | None) -> bool:
    """True if a node's hash now is the one claimed for it (at the narrower width)."""
    if now is None:
        return False
    w = min(len(claimed), len(now))
    return claimed[:w] == now[:w]
