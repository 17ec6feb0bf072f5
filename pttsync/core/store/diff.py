"""Where two stores of one topic disagree: the differing Merkle nodes and oplogs.

`diff_stores(a, b, topic_id)` walks both Merkle trees from their years
down, year → month → day → hour (→ slices) → leaves, and descends only
into a node whose hash differs on the two sides.  A node that one side
lacks entirely is reported as such and not descended: every leaf under it
is one-sided, and is read in bounded chunks.  Where one side's hour (or
slice) is split into slices and the other's is not, the unsplit side (at
most 32 leaves) is compared as its virtual split (`merkle.build_slices`),
as the sync descent does.

At the bottom every leaf that differs is classified by oplog ID against
the other store's copy (`Store.existing`), so each oplog is reported once:

* **only in A** / **only in B**: the other store holds no copy at all;
* **held differently**: both hold it, with a different hash (other master
  signatures, so another update time) or a different status (valid on one
  side, pending on the other).

Only valid oplogs are leaves.  With `pending` (the default), the oplogs
that are valid on neither side (pending, internal-pending) are compared
too, by listing them; a peer whose not-yet-valid oplogs are unknown (a
tree fetched over the network) is diffed with `pending=False`.

The result is bounded: at most `limit` nodes and `limit` oplogs of each
kind are listed (0: no limit), with exact totals.  Sans I/O and read-only:
only reads through the `Store` protocol.  docs/pip-11/merkle-tree.md,
"inspect diff".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from ..merkle import Leaf, Level, MerkleNode, build_slices, topic_digest
from ..oplog import OplogStatus

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .protocol import Store, StoredOplog

__all__ = ["Copy", "Listing", "NodeDiff", "OplogDiff", "TreeDiff", "diff_stores"]

T = TypeVar("T")

CHUNK = 1024
"""Leaves read (and looked up on the other side) at a time under a one-sided node."""
PENDING_SCAN = 100_000
"""Not-yet-valid oplogs listed per status and side; more is reported as truncated."""
DEFAULT_LIMIT = 100

_NOT_VALID = (OplogStatus.PENDING, OplogStatus.INTERNAL_PENDING)


@dataclass(frozen=True, slots=True)
class Copy:
    """One side's copy of an oplog: its status, hash and update time."""

    status: OplogStatus
    hash: bytes
    update_time: int


@dataclass(frozen=True, slots=True)
class OplogDiff:
    """An oplog the two sides do not hold alike (a side's copy is None if it has none)."""

    oplog_id: bytes
    a: Copy | None
    b: Copy | None


@dataclass(frozen=True, slots=True)
class NodeDiff:
    """A node whose hash differs, or that only one side has (the other's is None).

    `nesting` is its distance from its year (0 for a year; slices count on below
    their hour), for printing as a tree in walk order.
    """

    level: Level
    depth: int
    start: int
    end: int
    nesting: int
    a: MerkleNode | None
    b: MerkleNode | None


@dataclass(slots=True)
class Listing(Generic[T]):
    """The first `limit` items of a kind (0: all), and how many there are in all."""

    limit: int
    items: list[T] = field(default_factory=list)
    total: int = 0

    def add(self, item: T) -> None:
        self.total += 1
        if not self.limit or len(self.items) < self.limit:
            self.items.append(item)

    @property
    def omitted(self) -> int:
        return self.total - len(self.items)


@dataclass(slots=True)
class TreeDiff:
    """What `diff_stores` found (see the module text)."""

    topic_id: bytes
    digest_a: bytes
    digest_b: bytes
    leaves_a: int
    leaves_b: int
    pending_compared: bool
    nodes: Listing[NodeDiff]
    only_a: Listing[OplogDiff]
    only_b: Listing[OplogDiff]
    different: Listing[OplogDiff]
    nodes_by_level: dict[str, int] = field(default_factory=dict)
    pending_truncated: bool = False  # a side held more than PENDING_SCAN of a status

    @property
    def equal(self) -> bool:
        """Equal trees and, if compared, the same not-yet-valid oplogs."""
        return self.digest_a == self.digest_b and not (
            self.only_a.total or self.only_b.total or self.different.total
        )


def diff_stores(
    a: Store, b: Store, topic_id: bytes, *, limit: int = DEFAULT_LIMIT, pending: bool = True
) -> TreeDiff:
    """Compare topic `topic_id` in stores `a` and `b` (see the module text)."""
    return _Walk(a, b, topic_id, limit, pending).run()


class _Walk:
    def __init__(self, a: Store, b: Store, topic_id: bytes, limit: int, pending: bool) -> None:
        self.a, self.b, self.tid = a, b, topic_id
        self.ta, self.tb = a.tree(topic_id), b.tree(topic_id)
        ya, yb = self.ta.level_nodes(Level.YEAR), self.tb.level_nodes(Level.YEAR)
        self.years = (ya, yb)
        self.out = TreeDiff(
            topic_id, topic_digest(topic_id, [y.hash for y in ya]),
            topic_digest(topic_id, [y.hash for y in yb]),
            sum(y.leaves for y in ya), sum(y.leaves for y in yb), pending,
            Listing(limit), Listing(limit), Listing(limit), Listing(limit),
        )  # fmt: skip

    def run(self) -> TreeDiff:
        if self.out.digest_a != self.out.digest_b:
            self._nodes(*self.years, nesting=0)
        if self.out.pending_compared:
            self._not_valid()
        return self.out

    # -- the walk ------------------------------------------------------------------

    def _nodes(self, na: Sequence[MerkleNode], nb: Sequence[MerkleNode], nesting: int) -> None:
        """Compare two lists of sibling nodes, matched by start."""
        by_a, by_b = {n.start: n for n in na}, {n.start: n for n in nb}
        for start in sorted(by_a.keys() | by_b.keys()):
            x, y = by_a.get(start), by_b.get(start)
            if x is not None and y is not None and x.hash == y.hash:
                continue
            node = x or y
            assert node is not None
            self.out.nodes.add(NodeDiff(node.level, node.depth, start, node.end, nesting, x, y))
            name = node.level.name.lower()
            self.out.nodes_by_level[name] = self.out.nodes_by_level.get(name, 0) + 1
            if x is not None and y is not None:
                self._descend(x, y, nesting + 1)
            elif x is not None:
                self._one_sided(self.a, self.b, x, a_side=True)
            elif y is not None:
                self._one_sided(self.b, self.a, y, a_side=False)

    def _descend(self, x: MerkleNode, y: MerkleNode, nesting: int) -> None:
        """The children of two nodes at one place whose hashes differ."""
        ka, kb = self.ta.children(x), self.tb.children(y)
        leafy_a, leafy_b = _leafy(ka), _leafy(kb)
        if leafy_a and leafy_b:
            self._leaves(_as_leaves(ka), _as_leaves(kb))
            return
        if leafy_a:  # A's bucket is unsplit, B's split: compare A's as its virtual split
            ka = _split(x, _as_leaves(ka))
        elif leafy_b:
            kb = _split(y, _as_leaves(kb))
        self._nodes(_as_nodes(ka), _as_nodes(kb), nesting)

    def _leaves(self, la: Sequence[Leaf], lb: Sequence[Leaf]) -> None:
        """Two buckets' leaves (each at most a few dozen): what differs, by key."""
        by_a, by_b = {x.key: x for x in la}, {x.key: x for x in lb}
        only_a = [x for k, x in by_a.items() if k not in by_b]
        only_b = [x for k, x in by_b.items() if k not in by_a]
        for key in sorted(by_a.keys() & by_b.keys()):
            x, y = by_a[key], by_b[key]
            if x.hash != y.hash:  # both valid at one update time: other signatures
                self.out.different.add(OplogDiff(x.oplog_id, _leaf_copy(x), _leaf_copy(y)))
        self._classify(only_a, self.b, a_side=True)
        self._classify(only_b, self.a, a_side=False)

    def _one_sided(self, mine: Store, other: Store, node: MerkleNode, *, a_side: bool) -> None:
        """Every leaf under a node only `mine` has, read and classified in chunks."""
        lo: tuple[int, bytes] = (node.start, b"")
        while True:
            chunk = mine.leaves_from(self.tid, lo, node.end, CHUNK + 1)
            self._classify(chunk[:CHUNK], other, a_side=a_side)
            if len(chunk) <= CHUNK:
                return
            lo = chunk[CHUNK].key

    def _classify(self, leaves: Sequence[Leaf], other: Store, *, a_side: bool) -> None:
        """Leaves of one side that the other side's tree lacks, by the other's copy.

        The other side holds no copy (only here), a not-yet-valid copy (held
        differently), or a valid copy at another update time, so at another
        leaf: that pair is one oplog held differently, reported from A's side.
        """
        if not leaves:
            return
        found = other.existing(self.tid, [x.oplog_id for x in leaves])
        for leaf in leaves:
            theirs = found.get(leaf.oplog_id)
            mine = _leaf_copy(leaf)
            if theirs is None:
                kind = self.out.only_a if a_side else self.out.only_b
                kind.add(_pair(leaf.oplog_id, mine, None, a_side))
            elif a_side or theirs.status is not OplogStatus.VALID:
                self.out.different.add(_pair(leaf.oplog_id, mine, _stored_copy(theirs), a_side))

    # -- not in either tree --------------------------------------------------------

    def _not_valid(self) -> None:
        """Oplogs valid on neither side: compared by listing them (they are few)."""
        for mine, other, a_side in ((self.a, self.b, True), (self.b, self.a, False)):
            for status in _NOT_VALID:
                oplogs = mine.oplogs(self.tid, status, limit=PENDING_SCAN + 1)
                if len(oplogs) > PENDING_SCAN:
                    self.out.pending_truncated = True
                    oplogs = oplogs[:PENDING_SCAN]
                for i in range(0, len(oplogs), CHUNK):
                    part = oplogs[i : i + CHUNK]
                    found = other.existing(self.tid, [o.oplog_id for o in part])
                    for o in part:
                        copy = Copy(status, o.hash, o.update_time)
                        theirs = found.get(o.oplog_id)
                        if theirs is None:
                            kind = self.out.only_a if a_side else self.out.only_b
                            kind.add(_pair(o.oplog_id, copy, None, a_side))
                        elif theirs.status is OplogStatus.VALID or not a_side:
                            continue  # the tree walk reported it, or A's side did
                        elif (theirs.status, theirs.oplog.hash) != (status, o.hash):
                            self.out.different.add(
                                _pair(o.oplog_id, copy, _stored_copy(theirs), a_side)
                            )


def _pair(oplog_id: bytes, mine: Copy, theirs: Copy | None, a_side: bool) -> OplogDiff:
    return OplogDiff(oplog_id, mine, theirs) if a_side else OplogDiff(oplog_id, theirs, mine)


def _leaf_copy(leaf: Leaf) -> Copy:
    return Copy(OplogStatus.VALID, leaf.hash, leaf.time)


def _stored_copy(stored: StoredOplog) -> Copy:
    return Copy(stored.status, stored.oplog.hash, stored.oplog.update_time)


def _leafy(kids: Sequence[MerkleNode] | Sequence[Leaf]) -> bool:
    """True if a bucket's children are leaves (an empty list counts as leaves)."""
    return not kids or isinstance(kids[0], Leaf)


def _as_leaves(kids: Sequence[MerkleNode] | Sequence[Leaf]) -> list[Leaf]:
    return [k for k in kids if isinstance(k, Leaf)]


def _as_nodes(kids: Sequence[MerkleNode] | Sequence[Leaf]) -> list[MerkleNode]:
    return [k for k in kids if isinstance(k, MerkleNode)]


def _split(node: MerkleNode, leaves: Sequence[Leaf]) -> list[MerkleNode]:
    """An unsplit bucket as the slices a split tree would hold over the same leaves."""
    return build_slices(node.depth, node.start, node.end, leaves, lambda _: None)
