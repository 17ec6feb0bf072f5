"""What a sync session compares: tree lists, windows, node items, leaf diffs.

Every node a session talks about is named by its ref, (level, depth, start);
its end follows from the ref (`node_range`).  An `Item` is one side's view
of a node with its direct children, in the node's natural shape: child
nodes if it is split (calendar nodes always are), its leaves if it is an
unsplit hour or slice.  When the two sides' shapes differ (one side's hour
is split, the other's is not), the unsplit side compares against a *virtual*
split of its own leaves (`slice_view`), which gives exactly the hashes a
split tree with those leaves would hold.

`verify_item` is the check against a lying peer: the children must lie
inside the node, in order, and (at full width) hash to the node's hash.
Items on the wire carry fingerprints (fingerprint.py).  A node's hash need
not be the one the peer claimed for it a step earlier: a tree changes while
a round runs (a push lands, a write commits), so that is compared as it is
now (compare.py), never taken for a lie.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError
from .. import codec
from ..memo import remember
from ..merkle import (
    CALENDAR_LEVELS,
    FANOUT,
    Leaf,
    Level,
    build_slices,
    is_split,
    node_hash,
    period,
    slice_bounds,
    slice_index,
)
from ..oplog import HASH_SIZE
from ..timeutil import HOUR_NS, day_start, hour_start, month_start, year_start
from .messages import ChildRef, Item, ListNode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..store import Store

Ref = tuple[int, int, int]
"""A node's name: (level, depth, start)."""

_LIST_PREFIX = codec.head(4, 2) + codec.tstr("pttsync/tree-list/1")
_WINDOW_PREFIX = codec.head(4, 2) + codec.tstr("pttsync/window/1")
MAX_SLICE_DEPTH = 12
_END = 2**63 - 1  # 3600 s / 16**12 is under a nanosecond


LIST_LEVELS = (Level.YEAR, Level.MONTH, Level.DAY, Level.HOUR)
"""The tree list's segments, in order: bit i of a mask stands for LIST_LEVELS[i]."""


SEGMENT_FP = 8
"""Bytes of each segment's digest in a list digest (after the full digest of the list)."""

LIST_DIGEST_SIZE = 32 + SEGMENT_FP * len(LIST_LEVELS)
"""A list digest: the list's full digest, then a fingerprint of each segment's digest."""


def list_digest(nodes: Sequence[ListNode]) -> bytes:
    """A tree list's digest: 32 bytes over the whole list, then 8 per segment.

    Each segment (years, months, days, hours) has the digest SHA-256 of
    `["pttsync/tree-list/1", [[level, start, hash], ...]]` over its nodes;
    the list's digest is SHA-256 of the four joined.  Equal lists are told by
    the full digest; the segments' fingerprints tell a receiver which
    segments to send (all four, if they collide while the lists differ).
    """
    segments = []
    for level in LIST_LEVELS:
        body = [
            codec.array([codec.uint(n.level), codec.uint(n.start), codec.bstr(n.hash)])
            for n in nodes
            if n.level == level
        ]
        segments.append(hashlib.sha256(_LIST_PREFIX + codec.array(body)).digest())
    whole = hashlib.sha256(b"".join(segments)).digest()
    return whole + b"".join(d[:SEGMENT_FP] for d in segments)


def differing_segments(mine: bytes, theirs: bytes) -> int:
    """The bit mask of list segments that differ (every one, if their fingerprints collide)."""
    if mine[:32] == theirs[:32]:
        return 0
    mask = 0
    for i in range(len(LIST_LEVELS)):
        at = 32 + SEGMENT_FP * i
        if mine[at : at + SEGMENT_FP] != theirs[at : at + SEGMENT_FP]:
            mask |= 1 << i
    return mask or (1 << len(LIST_LEVELS)) - 1


def in_segments(level: int, mask: int) -> bool:
    """True if a list node of `level` is in one of the segments of `mask`."""
    return any(mask & (1 << i) and level == lv for i, lv in enumerate(LIST_LEVELS))


WINDOW_SPAN = 48 * HOUR_NS
"""The window a round compares leaf by leaf (or hour by hour) is [hour(T), window_end(T)).

Leaves newer than that are in the requester's future (SyncConfig keeps T within
`max_window + sync_offset` of its now, and it refuses records more than
`clock_skew` ahead of it), so they wait for a later round.  Without the cap a
peer holding records far ahead of T (a clock that jumped forward) sent every
hour up to them: over 512 hours the tree list was refused as malformed, and
that peer could sync with no one."""


def window_end(to_sync_time: int) -> int:
    """Where the window of a round with to-sync-time `to_sync_time` ends (excluded)."""
    return hour_start(to_sync_time) + WINDOW_SPAN


def window_digest(leaves: Sequence[Leaf]) -> bytes:
    """SHA-256 of `["pttsync/window/1", [leaf hash, ...]]` (a leaf hash covers its key)."""
    head = codec.head(4, len(leaves))
    if all(len(leaf.hash) == 32 for leaf in leaves):  # always: the quick encoding
        body = b"".join([_BSTR32 + leaf.hash for leaf in leaves])
    else:
        body = b"".join([codec.bstr(leaf.hash) for leaf in leaves])
    return hashlib.sha256(_WINDOW_PREFIX + head + body).digest()


_BSTR32 = codec.head(2, 32)

MAX_SHARED_BASES = 64
_BASES: dict[tuple[bytes, int], RoundBasis] = {}
"""Round bases by (tree digest, hour), shared by every view of a process.  A digest
stands for the valid leaves, so equal keys mean equal bases: the thousand peers of
a simulation, which hold one governance (a ROLE oplog per member, all in one hour)
and mostly the same writes, compute each basis once, not once a peer."""


def node_range(level: int, depth: int, start: int) -> tuple[int, int]:
    """The [start, end) a ref names.

    Raises:
        ValueError: the ref names no node (a misaligned start, a bad depth).
    """
    if level in CALENDAR_LEVELS:
        if depth != 0:
            raise ValueError(f"a {Level(level).name} node has depth 0")
        s, e = period(Level(level), start)
    elif level == Level.SLICE:
        if not 1 <= depth <= MAX_SLICE_DEPTH:
            raise ValueError(f"slice depth {depth} is out of range")
        s, e = hour_start(start), hour_start(start) + HOUR_NS
        for _ in range(depth):
            if e - s < FANOUT:
                raise ValueError("a slice that narrow is never made")
            s, e = slice_bounds(s, e, slice_index(s, e, start))
    else:
        raise ValueError(f"level {level} has no nodes")
    if s != start:
        raise ValueError(f"{Level(level).name} nodes do not start at {start}")
    return s, e


def child_ref(parent: Ref, start: int) -> Ref:
    """The ref of the child node of `parent` that starts at `start`."""
    level, depth, _ = parent
    if level in (Level.HOUR, Level.SLICE):
        return (Level.SLICE, depth + 1, start)
    return (level - 1, 0, start)


def is_within(parent: Ref, ref: Ref) -> bool:
    """True if `ref` is `parent` itself or one of its direct children."""
    if ref == parent:
        return True
    try:
        ps, pe = node_range(*parent)
        cs, ce = node_range(*ref)
    except ValueError:
        return False
    return ref == child_ref(parent, cs) and ps <= cs and ce <= pe


def expected_list_level(to_sync_time: int, start: int) -> Level | None:
    """The level a tree-list node starting at `start` must have for T (None: out of list)."""
    t = to_sync_time
    if start < year_start(t):
        return Level.YEAR
    if start < month_start(t):
        return Level.MONTH
    if start < day_start(t):
        return Level.DAY
    if start < hour_start(t):
        return Level.HOUR
    return None


@dataclass(frozen=True, slots=True)
class RoundBasis:
    """What every round at a to-sync-time starts from: the tree list, the window's
    leaves, and the digests of both."""

    nodes: list[ListNode]
    list_digest: bytes
    window: list[Leaf]
    window_digest: bytes


class TreeView:
    """A topic's tree, read the way a sync session needs it."""

    def __init__(self, store: Store, topic_id: bytes) -> None:
        self.store = store
        self.topic_id = topic_id
        self.tree = store.tree(topic_id)
        self._s = self.tree._s  # the storage, for node reads by ref
        self._basis: tuple[tuple[bytes, int], RoundBasis] | None = None

    def tree_list(self, to_sync_time: int) -> list[ListNode]:
        return [ListNode(n.level, n.start, n.hash) for n in self.tree.tree_list(to_sync_time)]

    def basis(self, to_sync_time: int) -> RoundBasis:
        """The tree list and the window of a round at `to_sync_time`, with their digests.

        Both depend on the to-sync-time only through its hour, and on the tree only
        through its valid leaves, which the tree's digest stands for: so they are
        remembered until either changes.  A round between peers in sync then reads
        the tree's year nodes and nothing else, on either side.
        """
        hs = hour_start(to_sync_time)
        key = (self.tree.digest(), hs)
        if self._basis is not None and self._basis[0] == key:
            return self._basis[1]
        basis = _BASES.get(key)  # another view's, of a tree with the same digest
        if basis is None:
            nodes = self.tree_list(to_sync_time)
            window = self.leaves(hs, window_end(to_sync_time))
            basis = RoundBasis(nodes, list_digest(nodes), window, window_digest(window))
            remember(_BASES, key, basis, MAX_SHARED_BASES)
        self._basis = (key, basis)
        return basis

    def leaves(self, start: int, end: int) -> list[Leaf]:
        return self.tree.leaves(start, end)

    def window_hours(self, start: int, end: int) -> list[ListNode]:
        """My hour nodes in [start, end) (a dense window, compared like the tree list)."""
        return [
            ListNode(n.level, n.start, n.hash) for n in self._s.nodes(Level.HOUR, 0, start, end)
        ]

    def item(self, ref: Ref, flat_max: int = 0) -> Item:
        """My view of a node, full width; hash None if I hold nothing there.

        A node holding at most `flat_max` leaves is given as its leaves
        (flat); otherwise in its natural shape.
        """
        level, depth, start = ref
        s, e = node_range(level, depth, start)
        lv = Level(level)
        if lv in CALENDAR_LEVELS and lv is not Level.HOUR:
            node = self._s.get_node(lv, 0, s)
            if node is None:
                return Item(lv, 0, s, None, False, ())
            if node.leaves <= flat_max:
                return Item(lv, 0, s, node.hash, True, tuple(self._s.leaves(s, e)))
            kids = self._s.nodes(Level(lv - 1), 0, s, e)
            return Item(lv, 0, s, node.hash, False, tuple(ChildRef(k.start, k.hash) for k in kids))
        node = self._s.get_node(lv, depth, s)
        if node is not None and node.leaves <= flat_max:
            return Item(lv, depth, s, node.hash, True, tuple(self._s.leaves(s, e)))
        if node is not None and not is_split(s, e, node.leaves):
            leaves = tuple(self._s.leaves(s, e))
            return Item(lv, depth, s, node.hash, True, leaves)
        if node is not None:
            slices = self._s.nodes(Level.SLICE, depth + 1, s, e)
            refs = tuple(ChildRef(k.start, k.hash) for k in slices)
            return Item(lv, depth, s, node.hash, False, refs)
        # Not stored: a slice of a bucket I hold unsplit, or nothing at all.
        leaves = tuple(self._s.leaves(s, e))
        if not leaves:
            return Item(lv, depth, s, None, False, ())
        if not is_split(s, e, len(leaves)):
            return Item(lv, depth, s, node_hash(lv, s, e, [x.hash for x in leaves]), True, leaves)
        refs = tuple(_virtual_slices(depth, s, e, leaves))
        return Item(lv, depth, s, node_hash(lv, s, e, [r.hash for r in refs]), False, refs)

    def children(self, ref: Ref, item: Item | None = None) -> list[ChildRef]:
        """My child nodes of a node, full width (an hour or slice split virtually if need be).

        `item`, my view of the node already read (`item(ref)`), saves reading
        a calendar node's children again.
        """
        level, depth, start = ref
        if level > Level.HOUR and item is not None and not item.leaf_children:
            return list(item.children)  # type: ignore[arg-type]
        if level > Level.HOUR:
            s, e = node_range(level, depth, start)
            return [ChildRef(k.start, k.hash) for k in self._s.nodes(Level(level - 1), 0, s, e)]
        return self.slice_view(ref)

    def slice_view(self, ref: Ref) -> list[ChildRef]:
        """My children of an hour or slice as slices, split virtually if I hold it unsplit."""
        level, depth, start = ref
        s, e = node_range(level, depth, start)
        node = self._s.get_node(Level(level), depth, s)
        if node is not None and is_split(s, e, node.leaves):
            return [ChildRef(k.start, k.hash) for k in self._s.nodes(Level.SLICE, depth + 1, s, e)]
        return _virtual_slices(depth, s, e, self._s.leaves(s, e))


def _virtual_slices(depth: int, start: int, end: int, leaves: Sequence[Leaf]) -> list[ChildRef]:
    """The slices a split bucket over `leaves` (sorted) would have."""
    return [ChildRef(n.start, n.hash) for n in build_slices(depth, start, end, leaves, _drop)]


def _drop(_node: object) -> None:
    """An `emit` that keeps nothing: virtual slices are never stored."""


def verify_item(item: Item) -> None:
    """Check a peer's item: a real node, children inside it, hashes that add up.

    At full width (32-byte hashes) the children must hash to the node's hash;
    fingerprints cannot be checked that way (fingerprint.py tells how a lie
    or a collision is caught instead).

    Raises:
        RemoteProtocolError: the item is inconsistent.
    """
    try:
        s, e = node_range(item.level, item.depth, item.start)
    except ValueError as exc:
        raise RemoteProtocolError(f"item names no node: {exc}") from None
    what = f"{item.level.name} node at {item.start}"
    if item.hash is None:
        return
    ref: Ref = (item.level, item.depth, item.start)
    if not item.leaf_children:
        starts = [c.start for c in item.children if isinstance(c, ChildRef)]
        if starts != sorted(set(starts)) or not all(
            is_within(ref, child_ref(ref, c)) for c in starts
        ):
            raise RemoteProtocolError(f"children of the {what} are out of order or range")
    if not item.children:
        raise RemoteProtocolError(f"the {what} is present but has no children")
    full = len(item.hash) == HASH_SIZE
    natural = not item.leaf_children or item.level in (Level.HOUR, Level.SLICE)
    if full and natural:
        hashes = [c if isinstance(c, bytes) else c.hash for c in item.children]
        if node_hash(item.level, s, e, hashes) != item.hash:
            raise RemoteProtocolError(f"children of the {what} do not hash to the node's hash")
