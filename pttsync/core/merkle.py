"""The Merkle tree over time: leaf, slice, hour, day, month, year.

The levels (docs/pip-11/merkle-tree.md has the full rationale):

* **LEAF**: one per valid, applied oplog, keyed by (update time, oplog ID),
  holding the oplog hash.
* **HOUR**, **DAY**, **MONTH**, **YEAR**: one node per UTC period that holds
  at least one leaf.  A day's children are its hours, a month's its days, a
  year's its months.
* **SLICE**: an hour holds as many leaves as were written in it, so an hour
  with more than SPLIT_THRESHOLD (32) leaves is cut into FANOUT (16) equal
  time slices, and a slice over the threshold is cut again.  Whether a bucket
  is split depends only on how many leaves it holds, so every peer builds the
  same shape from the same leaves, in any order.

So no node has more than 32 children, and an insert, replace or delete
touches a bounded number of rows (the path from the leaf's bucket to the
year, each step reading at most 32 siblings), whatever the size of the store.
Parents are updated in the same transaction as the leaf: they are exact at
every moment, with no regeneration loop (go-pttai's 15-minute lag, its #190).

A node's hash is SHA-256 over the canonical CBOR of
`["pttsync/node/1", level, start, end, [child hashes in key order]]`,
where a leaf's "hash" is its oplog's hash.  The topic digest is SHA-256 over
`["pttsync/digest/1", topic ID, [year hashes in order]]`.

This module holds the rules and the incremental algorithm.  It stores
nothing itself: it reads and writes through a `TreeStorage` (the SQLite
store implements it inside the batch's transaction).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Protocol

from ..errors import StoreError
from . import codec
from .timeutil import (
    DAY_NS,
    HOUR_NS,
    day_start,
    hour_start,
    month_start,
    next_month_start,
    next_year_start,
    year_start,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

SPLIT_THRESHOLD = 32
FANOUT = 16

_NODE_TAG = "pttsync/node/1"
_DIGEST_TAG = "pttsync/digest/1"
_NODE_PREFIX = codec.head(4, 5) + codec.tstr(_NODE_TAG)
_DIGEST_PREFIX = codec.head(4, 3) + codec.tstr(_DIGEST_TAG)


class Level(IntEnum):
    LEAF = 1
    SLICE = 2
    HOUR = 3
    DAY = 4
    MONTH = 5
    YEAR = 6


CALENDAR_LEVELS = (Level.HOUR, Level.DAY, Level.MONTH, Level.YEAR)


@dataclass(frozen=True, slots=True)
class Leaf:
    """A leaf: the key (time, oplog ID) and the oplog's hash."""

    time: int
    oplog_id: bytes
    hash: bytes

    @property
    def key(self) -> tuple[int, bytes]:
        return (self.time, self.oplog_id)


@dataclass(frozen=True, slots=True)
class MerkleNode:
    """A parent node covering [start, end).

    `depth` is 0 for calendar nodes and counts slices below their hour.
    `children` is the number of direct children (leaves or nodes), `leaves`
    the number of leaves underneath.
    """

    level: Level
    depth: int
    start: int
    end: int
    hash: bytes
    children: int
    leaves: int


# ---------------------------------------------------------------------------
# Pure rules: periods, slices, hashes.


def period(level: Level, t: int) -> tuple[int, int]:
    """The [start, end) of the calendar period of `level` that contains `t`."""
    if level is Level.HOUR:
        s = hour_start(t)
        return s, s + HOUR_NS
    if level is Level.DAY:
        s = day_start(t)
        return s, s + DAY_NS
    if level is Level.MONTH:
        return month_start(t), next_month_start(t)
    if level is Level.YEAR:
        return year_start(t), next_year_start(t)
    raise ValueError(f"{level.name} is not a calendar level")


def slice_bounds(start: int, end: int, index: int) -> tuple[int, int]:
    """The [start, end) of slice `index` (0..FANOUT-1) of the bucket [start, end)."""
    span = end - start
    return start + span * index // FANOUT, start + span * (index + 1) // FANOUT


def slice_index(start: int, end: int, t: int) -> int:
    """The index of the slice of [start, end) that contains `t`."""
    span = end - start
    i = (t - start) * FANOUT // span
    while i + 1 < FANOUT and start + span * (i + 1) // FANOUT <= t:
        i += 1
    while start + span * i // FANOUT > t:
        i -= 1
    return i


def is_split(start: int, end: int, leaves: int) -> bool:
    """True if a bucket [start, end) holding `leaves` leaves has slice children.

    A bucket narrower than FANOUT nanoseconds is never split: that only
    happens when more than 32 oplogs share a few nanoseconds, and the bucket
    then simply lists them all.
    """
    return leaves > SPLIT_THRESHOLD and end - start >= FANOUT


def node_hash(level: Level, start: int, end: int, child_hashes: Sequence[bytes]) -> bytes:
    """SHA-256 of `["pttsync/node/1", level, start, end, [child hashes]]`."""
    body = b"".join(
        (
            _NODE_PREFIX,
            codec.uint(level),
            codec.uint(start),
            codec.uint(end),
            codec.head(4, len(child_hashes)),
            *[codec.bstr(h) for h in child_hashes],
        )
    )
    return hashlib.sha256(body).digest()


def make_node(
    level: Level, depth: int, start: int, end: int, child_hashes: list[bytes], leaves: int
) -> MerkleNode:
    """A node over `child_hashes` (in key order) with `leaves` leaves underneath."""
    return MerkleNode(
        level, depth, start, end, node_hash(level, start, end, child_hashes),
        len(child_hashes), leaves,
    )  # fmt: skip


def topic_digest(topic_id: bytes, year_hashes: Sequence[bytes]) -> bytes:
    """SHA-256 of `["pttsync/digest/1", topic ID, [year hashes]]`."""
    body = _DIGEST_PREFIX + codec.bstr(topic_id) + codec.array([codec.bstr(h) for h in year_hashes])
    return hashlib.sha256(body).digest()


def build_bucket(
    level: Level,
    depth: int,
    start: int,
    end: int,
    leaves: Sequence[Leaf],
    emit: Callable[[MerkleNode], None],
) -> MerkleNode:
    """Build an hour or slice from its leaves (sorted by key), emitting every node made."""
    if is_split(start, end, len(leaves)):
        kids = build_slices(depth, start, end, leaves, emit)
        node = make_node(level, depth, start, end, [k.hash for k in kids], len(leaves))
    else:
        node = make_node(level, depth, start, end, [leaf.hash for leaf in leaves], len(leaves))
    emit(node)
    return node


def build_slices(
    depth: int, start: int, end: int, leaves: Sequence[Leaf], emit: Callable[[MerkleNode], None]
) -> list[MerkleNode]:
    """The slices of the bucket [start, end) at `depth` over `leaves` (sorted by key).

    Splits whatever the number of leaves: sync uses it to compare an unsplit
    bucket against a peer's split one.
    """
    kids = []
    times = [leaf.time for leaf in leaves]
    lo = 0
    for index in range(FANOUT):
        cs, ce = slice_bounds(start, end, index)
        hi = bisect.bisect_left(times, ce, lo)
        if hi > lo:
            kids.append(build_bucket(Level.SLICE, depth + 1, cs, ce, leaves[lo:hi], emit))
        lo = hi
    return kids


def build_tree(leaves: Sequence[Leaf]) -> list[MerkleNode]:
    """Every node of the tree over `leaves` (sorted by key), built from scratch."""
    out: list[MerkleNode] = []
    by_hour: dict[int, list[Leaf]] = {}
    for leaf in leaves:
        by_hour.setdefault(hour_start(leaf.time), []).append(leaf)
    hours = [
        build_bucket(Level.HOUR, 0, h, h + HOUR_NS, hl, out.append) for h, hl in by_hour.items()
    ]
    return out + build_parents(hours)


def build_parents(children: Sequence[MerkleNode]) -> list[MerkleNode]:
    """The calendar nodes above `children` (nodes of one level, in time order)."""
    out: list[MerkleNode] = []
    level_nodes = list(children)
    while level_nodes and level_nodes[0].level < Level.YEAR:
        level = Level(level_nodes[0].level + 1)
        groups: dict[tuple[int, int], list[MerkleNode]] = {}
        for child in level_nodes:
            groups.setdefault(period(level, child.start), []).append(child)
        level_nodes = [
            make_node(level, 0, start, end, [k.hash for k in kids], sum(k.leaves for k in kids))
            for (start, end), kids in groups.items()
        ]
        out += level_nodes
    return out


# ---------------------------------------------------------------------------
# The tree over a storage.


class TreeStorage(Protocol):
    """What the tree needs from its store; all calls run in one transaction."""

    def get_node(self, level: Level, depth: int, start: int) -> MerkleNode | None: ...
    def get_nodes(
        self, level: Level, depth: int, starts: Sequence[int]
    ) -> dict[int, MerkleNode]: ...
    def put_node(self, node: MerkleNode) -> None: ...
    def put_nodes(self, nodes: Sequence[MerkleNode]) -> None: ...
    def delete_node(self, level: Level, depth: int, start: int) -> None: ...
    def delete_slices(self, min_depth: int, start: int, end: int) -> None: ...
    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[MerkleNode]: ...
    def summaries(self, level: Level, start: int, end: int) -> list[tuple[bytes, int]]: ...
    def nodes_between(self, start: int, end: int) -> list[MerkleNode]: ...
    def active_days(self) -> list[int]: ...
    def leaves(self, start: int, end: int) -> list[Leaf]: ...
    def leaf_hashes(self, start: int, end: int) -> list[bytes]: ...
    def put_leaves(self, leaves: Sequence[Leaf]) -> None: ...
    def delete_leaf(self, time: int, oplog_id: bytes) -> bool: ...


Changes = dict[int, tuple[list[int], list[int]]]
"""Leaf times added and removed, by the start of their hour."""


def merge_changes(into: Changes, more: Changes) -> None:
    for hour, (adds, rems) in more.items():
        have = into.setdefault(hour, ([], []))
        have[0].extend(adds)
        have[1].extend(rems)


class MerkleTree:
    """One topic's tree: incremental updates and the queries sync needs."""

    def __init__(self, topic_id: bytes, storage: TreeStorage) -> None:
        self.topic_id = topic_id
        self._s = storage

    # -- updates -------------------------------------------------------------

    def update(self, added: Sequence[Leaf], removed: Sequence[Leaf]) -> None:
        """Remove then add leaves, and bring every parent up to date.

        The caller runs this inside the transaction that writes the oplogs.
        A leaf to remove must be present; a leaf to add must not be.
        """
        self.update_parents(self.apply_leaves(added, removed))

    def apply_leaves(self, added: Sequence[Leaf], removed: Sequence[Leaf]) -> Changes:
        """The first half of `update`: the leaves only.  Returns what changed, for
        `update_parents` (which a store may run later, before the tree is next read,
        with the changes of several batches merged by `merge_changes`)."""
        changes: Changes = {}
        for leaf in removed:
            if not self._s.delete_leaf(leaf.time, leaf.oplog_id):
                raise StoreError(f"tree has no leaf for oplog {leaf.oplog_id.hex()}")
            changes.setdefault(hour_start(leaf.time), ([], []))[1].append(leaf.time)
        self._s.put_leaves(added)
        for leaf in added:
            changes.setdefault(hour_start(leaf.time), ([], []))[0].append(leaf.time)
        return changes

    def update_parents(self, changes: Changes) -> None:
        """The second half of `update`: bring every parent of the changed leaves up to date."""
        hours = sorted(changes)
        existing = self._s.get_nodes(Level.HOUR, 0, hours)
        # Hours that stay in leaf form (nearly all) are written together below;
        # split hours write their slices straight through, since they read them back.
        plain: list[MerkleNode] = []
        days = set()
        for hour in hours:
            adds, rems = changes[hour]
            self._update_bucket(
                Level.HOUR, 0, hour, hour + HOUR_NS, adds, rems, existing.get(hour), plain
            )
            days.add(day_start(hour))
        self._s.put_nodes(plain)
        months = set()
        for day in sorted(days):
            self._refresh(Level.DAY, day, day + DAY_NS)
            months.add(month_start(day))
        years = set()
        for month in sorted(months):
            self._refresh(Level.MONTH, month, next_month_start(month))
            years.add(year_start(month))
        for year in sorted(years):
            self._refresh(Level.YEAR, year, next_year_start(year))

    def _update_bucket(
        self,
        level: Level,
        depth: int,
        start: int,
        end: int,
        adds: list[int],
        rems: list[int],
        node: MerkleNode | None,
        plain: list[MerkleNode] | None = None,
    ) -> None:
        """Apply leaf additions and removals (by time) to one hour or slice.

        `node` is the bucket as stored before this batch.  A bucket that ends
        in leaf form is appended to `plain` if given (the caller writes it),
        otherwise written at once.
        """
        old = node.leaves if node else 0
        new = old + len(adds) - len(rems)
        if new < 0:
            raise StoreError(f"tree counts are inconsistent at {level.name} {start}")
        was_split = is_split(start, end, old)
        if new == 0:
            if node is not None:
                self._s.delete_node(level, depth, start)
            if was_split:
                self._s.delete_slices(depth + 1, start, end)
            return
        if not is_split(start, end, new):
            if was_split:
                self._s.delete_slices(depth + 1, start, end)
            hashes = self._s.leaf_hashes(start, end)
            if len(hashes) != new:
                raise StoreError(f"tree counts are inconsistent at {level.name} {start}")
            leaf_form = make_node(level, depth, start, end, hashes, new)
            if plain is None:
                self._s.put_node(leaf_form)
            else:
                plain.append(leaf_form)
            return
        if not was_split:
            # Crossing the threshold: build this bucket's slices from its leaves once.
            build_bucket(level, depth, start, end, self._s.leaves(start, end), self._s.put_node)
            return
        groups: dict[int, tuple[list[int], list[int]]] = {}
        for t in adds:
            groups.setdefault(slice_index(start, end, t), ([], []))[0].append(t)
        for t in rems:
            groups.setdefault(slice_index(start, end, t), ([], []))[1].append(t)
        for index, (a, r) in sorted(groups.items()):
            cs, ce = slice_bounds(start, end, index)
            child = self._s.get_node(Level.SLICE, depth + 1, cs)
            self._update_bucket(Level.SLICE, depth + 1, cs, ce, a, r, child)
        kids = self._s.nodes(Level.SLICE, depth + 1, start, end)
        kid_hashes, kid_leaves = [k.hash for k in kids], sum(k.leaves for k in kids)
        self._s.put_node(make_node(level, depth, start, end, kid_hashes, kid_leaves))

    def _refresh(self, level: Level, start: int, end: int) -> None:
        kids = self._s.summaries(Level(level - 1), start, end)
        if not kids:
            self._s.delete_node(level, 0, start)
            return
        hashes, leaves = [h for h, _ in kids], sum(n for _, n in kids)
        self._s.put_node(make_node(level, 0, start, end, hashes, leaves))

    # -- queries -------------------------------------------------------------

    def node_at(self, level: Level, t: int) -> MerkleNode | None:
        """The calendar node of `level` whose period contains `t`, if it has leaves."""
        start, _ = period(level, t)
        return self._s.get_node(level, 0, start)

    def level_nodes(self, level: Level) -> list[MerkleNode]:
        """Every node of a calendar level, in time order."""
        if level not in CALENDAR_LEVELS:
            raise ValueError(f"{level.name} is not a calendar level")
        return self._s.nodes(level, 0, 0, 2**63 - 1)

    def tree_list(self, to_sync_time: int) -> list[MerkleNode]:
        """The PIP-11 tree list for a to-sync-time T, in ascending time order.

        Years before year(T), then the months of year(T) before month(T), the
        days of month(T) before day(T), and the hours of day(T) before hour(T):
        together they cover exactly [0, hour(T)).
        """
        t = to_sync_time
        ys, ms, ds, hs = year_start(t), month_start(t), day_start(t), hour_start(t)
        return (
            self._s.nodes(Level.YEAR, 0, 0, ys)
            + self._s.nodes(Level.MONTH, 0, ys, ms)
            + self._s.nodes(Level.DAY, 0, ms, ds)
            + self._s.nodes(Level.HOUR, 0, ds, hs)
        )

    def children(self, node: MerkleNode) -> list[MerkleNode] | list[Leaf]:
        """A node's direct children in key order: nodes, or leaves."""
        if node.level in (Level.HOUR, Level.SLICE):
            if is_split(node.start, node.end, node.leaves):
                return self._s.nodes(Level.SLICE, node.depth + 1, node.start, node.end)
            return self._s.leaves(node.start, node.end)
        return self._s.nodes(Level(node.level - 1), 0, node.start, node.end)

    def leaves(self, start: int, end: int) -> list[Leaf]:
        """Every leaf with a time in [start, end), in key order."""
        return self._s.leaves(start, end)

    def digest(self) -> bytes:
        """One hash over the whole tree: equal digests mean equal valid oplogs."""
        return topic_digest(self.topic_id, [y.hash for y in self.level_nodes(Level.YEAR)])

    def check(self) -> list[str]:
        """Rebuild the tree from its leaves and list every stored node that differs.

        Works one UTC day at a time, so memory is bounded by the busiest day,
        not by the size of the topic.
        """
        problems: list[str] = []
        for day in self._s.active_days():
            start, end = day, day + DAY_NS
            expected = _index(build_tree(self._s.leaves(start, end)), max_level=Level.DAY)
            stored = _index(self._s.nodes_between(start, end), max_level=Level.DAY)
            problems += _compare(expected, stored)
        days = self._s.nodes(Level.DAY, 0, 0, _END)
        above = [n for n in build_parents(days) if n.level > Level.DAY]
        stored_above = [
            n for level in (Level.MONTH, Level.YEAR) for n in self._s.nodes(level, 0, 0, _END)
        ]
        return problems + _compare(_index(above), _index(stored_above))


_END = 2**63 - 1
_Key = tuple[int, int, int]


def _index(nodes: Sequence[MerkleNode], max_level: Level = Level.YEAR) -> dict[_Key, MerkleNode]:
    return {(n.level, n.depth, n.start): n for n in nodes if n.level <= max_level}


def _compare(expected: dict[_Key, MerkleNode], stored: dict[_Key, MerkleNode]) -> list[str]:
    problems = []
    for key in sorted(set(expected) | set(stored)):
        want, have = expected.get(key), stored.get(key)
        where = f"{Level(key[0]).name} node at {key[2]} (depth {key[1]})"
        if want is None:
            problems.append(f"stray {where}")
        elif have is None:
            problems.append(f"missing {where}")
        elif want != have:
            problems.append(f"{where} is stale")
    return problems
