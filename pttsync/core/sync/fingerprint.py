"""Compact descent: fingerprints, child bitmaps, flat leaf lists, wants by fingerprint.

A descent compares nodes by *fingerprints*: the first `w` bytes of a node's
or leaf's 32-byte hash.  Each item carries its own width (the length of its
hash); its children's fingerprints have the same width, and the other side
compares at the width it was sent.  The default width is 8 bytes
(`SyncConfig.fingerprint`); negentropy sends 16.

A truncated fingerprint can collide, by chance (2^-64 a comparison at 8
bytes) or on purpose (a member grinding its own oplogs for two that share a
prefix).  A collision never loses data, because it is *detected*: the node's
own fingerprints differ, yet none of its children's do, or the leaf lists
match.  That node is then compared again at full width (32 bytes), where the
peer's children must hash to its node hash (`syncview.verify_item`).  A
collision one level higher hides the node from this round; the round after
sees the node's parent differ with no child differing, and so on up to the
tree list, which is always compared with full hashes.

On the wire (msgcodec.py):

* a node's children are `[bitmap, fingerprints]`: bit i of the bitmap stands
  for the i-th possible child of the node (`child_starts`: a year's months, a
  month's days, a day's hours, a bucket's 16 slices), and the fingerprints of
  the children present follow in order, concatenated;
* leaves are their fingerprints, concatenated, in key order: no times, no IDs;
* a node holding at most `FLAT_MAX` leaves is sent *flat*: its leaves, not
  its children, whatever its level, so small subtrees end in one step (as
  negentropy answers a small range with its IDs);
* the oplogs a side lacks are asked for by fingerprint within a node
  (`FpWant`), since the asker never learnt their IDs;
* the tree list's nodes and a window listing's leaves are fingerprints too:
  a listed leaf is a *mark*, `[time, fingerprint]`.  A list segment that
  differs with no node differing, or a listing that shows no difference,
  is a collision as well: those nodes, or the window's hours, are compared
  again at full width.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from ...errors import RemoteProtocolError, UsageError
from ..merkle import FANOUT, Leaf, Level, slice_bounds
from ..oplog import HASH_SIZE
from ..timeutil import DAY_NS, HOUR_NS, hour_start, next_month_start
from .messages import ChildRef, FpWant, Item, Mark
from .syncview import node_range

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

FULL = HASH_SIZE
"""The width that leaves nothing out: what a collision falls back to."""

DEFAULT_WIDTH = 8
"""Fingerprint bytes a requester asks in (`SyncConfig.fingerprint`)."""

FLAT_MAX = 32
"""A node with at most this many leaves is sent as its leaves (negentropy: under 32 IDs)."""


@functools.lru_cache(maxsize=4096)
def child_starts(level: int, depth: int, start: int) -> tuple[int, ...]:
    """The starts of every child a node may have, in order (bit i of a bitmap is the i-th)."""
    s, e = node_range(level, depth, start)
    if level == Level.YEAR:
        out = [s]
        while len(out) < 12:
            out.append(next_month_start(out[-1]))
        return tuple(out)
    if level == Level.MONTH:
        return tuple(range(s, e, DAY_NS))
    if level == Level.DAY:
        return tuple(range(s, e, HOUR_NS))
    if e - s < FANOUT:
        return ()  # never split
    return tuple(slice_bounds(s, e, i)[0] for i in range(FANOUT))


def width_of(item: Item) -> int | None:
    """The fingerprint width of an item (None: the sender holds nothing there)."""
    return None if item.hash is None else len(item.hash)


def fingerprinted(item: Item, width: int) -> Item:
    """An item of my full-width view, cut to fingerprints of `width` bytes for the wire."""
    if item.hash is None:
        return item
    if item.leaf_children:
        kids: tuple[ChildRef, ...] | tuple[bytes, ...] = tuple(
            (x.hash if isinstance(x, Leaf) else x)[:width]  # type: ignore[index]
            for x in item.children
        )
    else:
        kids = tuple(ChildRef(c.start, c.hash[:width]) for c in item.children)  # type: ignore[union-attr]
    return Item(item.level, item.depth, item.start, item.hash[:width], item.leaf_children, kids)


def same(mine: bytes | None, theirs: bytes | None) -> bool:
    """True if my full hash and their fingerprint (or both absences) agree."""
    if mine is None or theirs is None:
        return mine is theirs
    return mine[: len(theirs)] == theirs


def diff_children(
    mine: Sequence[ChildRef], theirs: Sequence[ChildRef], width: int
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(start, my full hash, their fingerprint) of every child that differs or is one-sided."""
    a = {c.start: c.hash for c in mine}
    b = {c.start: c.hash for c in theirs}
    out = []
    for s in sorted(a.keys() | b.keys()):
        mh, th = a.get(s), b.get(s)
        if mh is None or th is None or mh[:width] != th:
            out.append((s, mh, th))
    return out


def diff_leaf_fps(
    mine: Sequence[Leaf], theirs: Sequence[bytes], width: int
) -> tuple[list[bytes], bytes]:
    """(IDs of my oplogs they lack or hold differently, fingerprints of theirs I lack).

    A leaf's hash covers its key, its body and every signature, so a leaf
    held with other co-signatures is a difference (go-pttai compared keys, §8.7).
    """
    have = {x.hash[:width] for x in mine}
    them = set(theirs)
    send = sorted({x.oplog_id for x in mine if x.hash[:width] not in them})
    want = b"".join(sorted({fp for fp in theirs if fp not in have}))
    return send, want


def diff_marks(mine: Sequence[Leaf], theirs: Sequence[Mark]) -> tuple[list[bytes], list[FpWant]]:
    """A window listing's diff: (IDs of mine they lack, wants for theirs I lack, by hour).

    A mark is a leaf's (time, fingerprint); I compare each of mine at the
    width of their marks.
    """
    widths = {len(fp) for _, fp in theirs}
    if len(widths) > 1:
        raise RemoteProtocolError("a listing's fingerprints must all have one width")
    w = widths.pop() if widths else FULL
    have = {(x.time, x.hash[:w]) for x in mine}
    them = set(theirs)
    send = sorted({x.oplog_id for x in mine if (x.time, x.hash[:w]) not in them})
    by_hour: dict[int, list[bytes]] = {}
    for t, fp in sorted(them - have):
        by_hour.setdefault(hour_start(t), []).append(fp)
    wants = [FpWant(Level.HOUR, 0, h, w, b"".join(fps)) for h, fps in sorted(by_hour.items())]
    return send, wants


def resolve(leaves: Iterable[Leaf], want: FpWant) -> list[bytes]:
    """The IDs of my leaves that a peer asked for by fingerprint."""
    asked = set(split_fps(want.fps, want.width, "wanted leaves"))
    return [x.oplog_id for x in leaves if x.hash[: want.width] in asked]


def want_range(want: FpWant) -> tuple[int, int]:
    """The [start, end) a want names.

    Raises:
        RemoteProtocolError: it names no node.
    """
    try:
        return node_range(want.level, want.depth, want.start)
    except ValueError as exc:
        raise RemoteProtocolError(f"a want names no node: {exc}") from None


# -- the wire form of children ---------------------------------------------------


def encode_children(item: Item) -> object:
    """`[bitmap, fingerprints]` for child nodes, the fingerprints alone for leaves."""
    if item.leaf_children:
        try:
            return b"".join(item.children)  # type: ignore[arg-type]
        except TypeError:  # a ChildRef among them
            raise _mixed(bytes) from None
    if not item.children:
        return [0, b""]
    try:
        starts = child_starts(item.level, item.depth, item.start)
    except ValueError as exc:
        raise UsageError(f"an item that names no node has no children: {exc}") from None
    index = {s: i for i, s in enumerate(starts)}
    bitmap = 0
    for c in item.children:
        if not isinstance(c, ChildRef):
            raise _mixed(ChildRef)
        i = index.get(c.start)
        if i is None:
            raise UsageError(f"no child of the {item.level.name} node starts at {c.start}")
        bitmap |= 1 << i
    return [bitmap, b"".join(c.hash for c in item.children)]  # type: ignore[union-attr]


def _mixed(kind: type) -> UsageError:
    """Our own mistake (or an adversary test's forgery): say so, don't fail deep down."""
    return UsageError(f"an item's children must all be {kind.__name__} here")


def split_fps(data: bytes, width: int, what: str) -> tuple[bytes, ...]:
    """Cut concatenated fingerprints into a tuple.

    Raises:
        ValueError: `data` is not a whole number of fingerprints.
    """
    if len(data) % width:
        raise ValueError(f"{what} are not a whole number of {width}-byte fingerprints")
    return tuple(data[i : i + width] for i in range(0, len(data), width))


def decode_children(
    level: Level, depth: int, start: int, width: int, bitmap: int, fps: bytes
) -> tuple[ChildRef, ...]:
    """The ChildRefs a `[bitmap, fingerprints]` names.

    Raises:
        ValueError: the bitmap names a child the node cannot have, or the
            fingerprints do not match it.
    """
    if not bitmap and not fps:
        return ()  # no children (an absent node): whether the node is real is checked later
    starts = child_starts(level, depth, start)
    if bitmap >> len(starts):
        raise ValueError(f"the bitmap names a child a {level.name} node cannot have")
    cut = split_fps(fps, width, "children")
    present = [s for i, s in enumerate(starts) if bitmap >> i & 1]
    if len(present) != len(cut):
        raise ValueError("the bitmap and the children's fingerprints disagree")
    return tuple(ChildRef(s, h) for s, h in zip(present, cut, strict=True))
