"""merkle.TreeStorage in Python objects, for MemoryStore (memory.py).

The leaves are kept sorted by (time, oplog ID) (`leaf_key`), the nodes in
one mapping per (level, depth) with their starts sorted for range queries.
A copy shares all of it with the original (chunks.py, overlay.py) and keeps
only what it changes: a simulation's peers start from one template.  The
leaves are always current; the nodes above them are brought up to date
lazily, by the tree's own incremental algorithm, on the first read after a
change (see `MemoryTree`).
"""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING

from ...errors import UsageError
from ..merkle import Changes, Leaf, Level, MerkleNode, MerkleTree, merge_changes
from .chunks import SortedChunks
from .overlay import split

if TYPE_CHECKING:
    from collections.abc import MutableMapping, Sequence

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
        self.leaf_list: SortedChunks[Leaf] = SortedChunks(leaf_key)  # by (time, oplog ID)
        # The leaves' hashes summed as integers: kept as they change, so two trees
        # can be told equal or not without bringing their nodes up to date.
        self.fingerprint = 0
        # (level, depth) -> start -> node, and the starts sorted:
        self.nodes_by: dict[tuple[int, int], MutableMapping[int, MerkleNode]] = {}
        self.starts: dict[tuple[int, int], SortedChunks[int]] = {}

    def copy(self) -> MemoryTree:
        """An independent copy, sharing what both hold until one of them changes it."""
        self.flush()
        other = MemoryTree()
        other.topic_id = self.topic_id
        other.leaf_list = self.leaf_list.copy()
        other.fingerprint = self.fingerprint
        for k, v in self.nodes_by.items():
            self.nodes_by[k], other.nodes_by[k] = split(v)
        other.starts = {k: v.copy() for k, v in self.starts.items()}
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
        found = self.nodes_by.get((level, depth))
        return {} if found is None else {s: found[s] for s in starts if s in found}

    def put_node(self, node: MerkleNode) -> None:
        key = (int(node.level), node.depth)
        nodes = self.nodes_by.get(key)
        if nodes is None:
            nodes = self.nodes_by[key] = {}
            self.starts[key] = SortedChunks()
        if node.start not in nodes:
            self.starts[key].add(node.start)
        nodes[node.start] = node

    def put_nodes(self, nodes: Sequence[MerkleNode]) -> None:
        for node in nodes:
            self.put_node(node)

    def delete_node(self, level: Level, depth: int, start: int) -> None:
        key = (int(level), depth)
        nodes = self.nodes_by.get(key)
        if nodes is not None and nodes.pop(start, None) is not None:
            self.starts[key].remove(start)

    def delete_slices(self, min_depth: int, start: int, end: int) -> None:
        for (level, depth), nodes in self.nodes_by.items():
            if level != Level.SLICE or depth < min_depth:
                continue
            starts = self.starts[(level, depth)]
            for s in starts.between(start, end):
                del nodes[s]
                starts.remove(s)

    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[MerkleNode]:
        self.flush()
        key = (int(level), depth)
        starts = self.starts.get(key)
        if not starts:
            return []
        nodes = self.nodes_by[key]
        return [nodes[s] for s in starts.between(start, end)]

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

    def leaves(self, start: int, end: int) -> list[Leaf]:
        return self.leaf_list.between((start, b""), (min(end, _END), b""))

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        return [leaf.hash for leaf in self.leaves(start, end)]

    def hash_of(self, time: int, oplog_id: bytes) -> bytes | None:
        """The hash of the leaf (time, oplog ID), if there is one."""
        leaf = self.leaf_list.find((time, oplog_id))
        return None if leaf is None else leaf.hash

    def put_leaves(self, leaves: Sequence[Leaf]) -> None:
        # A batch's leaves come shared already (batch.py `leaf_of`): kept as given.
        for leaf in leaves:
            if not self.leaf_list.add(leaf):
                raise UsageError(f"a leaf for oplog {leaf.oplog_id.hex()} is already there")
            self.fingerprint += int.from_bytes(leaf.hash)

    def delete_leaf(self, time: int, oplog_id: bytes) -> bool:
        leaf = self.leaf_list.pop((time, oplog_id))
        if leaf is None:
            return False
        self.fingerprint -= int.from_bytes(leaf.hash)
        return True
