"""merkle.TreeStorage in Python objects, for MemoryStore (memory.py).

The leaves are kept in a list sorted by (time, oplog ID), searched with
that key (`leaf_key`: no second list of keys, which cost a simulated peer
64 bytes an oplog), the nodes in one dict per (level, depth) with a sorted
list of their starts for range queries.  The leaves are always current;
the nodes above them are brought up to date lazily, by the tree's own
incremental algorithm, on the first read after a change (see `MemoryTree`).
"""

from __future__ import annotations

import bisect
import operator
from typing import TYPE_CHECKING

from ...errors import UsageError
from ..merkle import Changes, Leaf, Level, MerkleNode, MerkleTree, merge_changes

if TYPE_CHECKING:
    from collections.abc import Sequence

_END = 2**63 - 1

leaf_key = operator.attrgetter("time", "oplog_id")
"""A leaf's sort key, (time, oplog ID), for bisecting `MemoryTree.leaf_list`."""


class MemoryTree:
    """merkle.TreeStorage in memory: leaves and nodes in dicts and sorted lists.

    The leaves are always current.  The nodes above them are brought up to
    date lazily: a batch records which hours changed, and the first read of a
    node runs the tree's own incremental update over every change since the
    last read (so a node read is always exact).  A node that takes a hundred
    pushes between two sync rounds updates each hour's path once, not a
    hundred times.
    """

    def __init__(self) -> None:
        self.topic_id = b""
        self.pending: Changes = {}
        self._flushing = False
        self.leaf_list: list[Leaf] = []  # the leaves, sorted by (time, oplog ID)
        self.nodes_by: dict[tuple[int, int], dict[int, MerkleNode]] = {}  # (level, depth) -> start
        self.starts: dict[tuple[int, int], list[int]] = {}  # (level, depth) -> sorted starts

    def copy(self) -> MemoryTree:
        self.flush()
        other = MemoryTree()
        other.topic_id = self.topic_id
        other.leaf_list = list(self.leaf_list)
        other.nodes_by = {k: dict(v) for k, v in self.nodes_by.items()}
        other.starts = {k: list(v) for k, v in self.starts.items()}
        return other

    def defer(self, changes: Changes) -> None:
        merge_changes(self.pending, changes)

    def flush(self) -> None:
        """Bring the nodes up to date with every leaf change deferred so far."""
        if self.pending and not self._flushing:
            changes, self.pending = self.pending, {}
            self._flushing = True
            try:
                MerkleTree(self.topic_id, self).update_parents(changes)
            finally:
                self._flushing = False

    def get_node(self, level: Level, depth: int, start: int) -> MerkleNode | None:
        self.flush()
        found = self.nodes_by.get((level, depth))
        return None if found is None else found.get(start)

    def get_nodes(self, level: Level, depth: int, starts: Sequence[int]) -> dict[int, MerkleNode]:
        self.flush()
        found = self.nodes_by.get((level, depth), {})
        return {s: found[s] for s in starts if s in found}

    def put_node(self, node: MerkleNode) -> None:
        key = (int(node.level), node.depth)
        nodes = self.nodes_by.setdefault(key, {})
        if node.start not in nodes:
            bisect.insort(self.starts.setdefault(key, []), node.start)
        nodes[node.start] = node

    def put_nodes(self, nodes: Sequence[MerkleNode]) -> None:
        for node in nodes:
            self.put_node(node)

    def delete_node(self, level: Level, depth: int, start: int) -> None:
        key = (int(level), depth)
        nodes = self.nodes_by.get(key)
        if nodes is not None and nodes.pop(start, None) is not None:
            starts = self.starts[key]
            del starts[bisect.bisect_left(starts, start)]

    def delete_slices(self, min_depth: int, start: int, end: int) -> None:
        for (level, depth), nodes in self.nodes_by.items():
            if level != Level.SLICE or depth < min_depth:
                continue
            starts = self.starts[(level, depth)]
            lo, hi = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
            for s in starts[lo:hi]:
                del nodes[s]
            del starts[lo:hi]

    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[MerkleNode]:
        self.flush()
        key = (int(level), depth)
        starts = self.starts.get(key)
        if not starts:
            return []
        nodes = self.nodes_by[key]
        lo, hi = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        return [nodes[s] for s in starts[lo:hi]]

    def summaries(self, level: Level, start: int, end: int) -> list[tuple[bytes, int]]:
        return [(n.hash, n.leaves) for n in self.nodes(level, 0, start, end)]

    def nodes_between(self, start: int, end: int) -> list[MerkleNode]:
        self.flush()
        found: list[MerkleNode] = []
        for level, depth in sorted(self.nodes_by):
            if level in (Level.SLICE, Level.HOUR, Level.DAY):
                found += self.nodes(Level(level), depth, start, end)
        return found

    def active_days(self) -> list[int]:
        self.flush()
        day = 24 * 3600 * 10**9
        days = {leaf.time - leaf.time % day for leaf in self.leaf_list}
        for (level, _depth), nodes in self.nodes_by.items():
            if level <= Level.DAY:
                days.update(s - s % day for s in nodes)
        return sorted(days)

    def _span(self, start: int, end: int) -> tuple[int, int]:
        leaves = self.leaf_list
        lo = bisect.bisect_left(leaves, (start, b""), key=leaf_key)
        return lo, bisect.bisect_left(leaves, (min(end, _END), b""), lo, key=leaf_key)

    def leaves(self, start: int, end: int) -> list[Leaf]:
        lo, hi = self._span(start, end)
        return self.leaf_list[lo:hi]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        lo, hi = self._span(start, end)
        return [leaf.hash for leaf in self.leaf_list[lo:hi]]

    def _find(self, key: tuple[int, bytes]) -> tuple[int, bool]:
        """Where `key` is (or would go) among the leaves, and whether it is there."""
        leaves = self.leaf_list
        i = bisect.bisect_left(leaves, key, key=leaf_key)
        return i, i < len(leaves) and leaf_key(leaves[i]) == key

    def hash_of(self, time: int, oplog_id: bytes) -> bytes | None:
        """The hash of the leaf (time, oplog ID), if there is one."""
        i, found = self._find((time, oplog_id))
        return self.leaf_list[i].hash if found else None

    def put_leaves(self, leaves: Sequence[Leaf]) -> None:
        for leaf in leaves:
            key = (leaf.time, leaf.oplog_id)
            i, found = self._find(key)
            if found:
                raise UsageError(f"a leaf for oplog {leaf.oplog_id.hex()} is already there")
            self.leaf_list.insert(i, leaf)

    def delete_leaf(self, time: int, oplog_id: bytes) -> bool:
        i, found = self._find((time, oplog_id))
        if found:
            del self.leaf_list[i]
        return found
