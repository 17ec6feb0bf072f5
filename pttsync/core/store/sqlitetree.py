"""`merkle.TreeStorage` on SQLite: the tree's leaves and nodes of one topic.

Every call runs on the store's connection, inside whatever transaction the
store has open, so tree updates commit or roll back with the oplogs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import StoreError
from ..merkle import Leaf, Level, MerkleNode

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .database import Database, Row
from ..timeutil import DAY_NS, MAX_TIME

# Deeper than any slice can go: an hour is 3.6e12 ns and each split divides by 16.
_MAX_SLICE_DEPTH = 12
_END_OF_TIME = 2**63 - 1
# Host parameters per "IN (...)" query, well under SQLite's limit.
IN_CHUNK = 500

_NODE_COLUMNS = "level, depth, start_time, end_time, hash, children, leaves"
_LEVELS = frozenset(int(level) for level in Level if level is not Level.LEAF)  # nodes, not leaves


class SqliteTreeStorage:
    """The leaves and nodes of one topic (by its integer key in the database)."""

    def __init__(self, db: Database, topic: int) -> None:
        self._db = db
        self._t = topic

    def get_node(self, level: Level, depth: int, start: int) -> MerkleNode | None:
        row = self._db.one(
            f"SELECT {_NODE_COLUMNS} FROM nodes"
            " WHERE topic=? AND level=? AND depth=? AND start_time=?",
            (self._t, int(level), depth, start),
        )
        return None if row is None else _node(row)

    def get_nodes(self, level: Level, depth: int, starts: Sequence[int]) -> dict[int, MerkleNode]:
        found: dict[int, MerkleNode] = {}
        for i in range(0, len(starts), IN_CHUNK):
            chunk = starts[i : i + IN_CHUNK]
            rows = self._db.all(
                f"SELECT {_NODE_COLUMNS} FROM nodes WHERE topic=? AND level=? AND depth=?"
                f" AND start_time IN ({','.join('?' * len(chunk))})",
                (self._t, int(level), depth, *chunk),
            )
            found.update((row[2], _node(row)) for row in rows)
        return found

    def put_node(self, node: MerkleNode) -> None:
        self.put_nodes((node,))

    def put_nodes(self, nodes: Sequence[MerkleNode]) -> None:
        self._db.run_many(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self._t, int(n.level), n.depth, n.start, n.end, n.hash, n.children, n.leaves)
                for n in nodes
            ],
        )

    def delete_node(self, level: Level, depth: int, start: int) -> None:
        self._db.run(
            "DELETE FROM nodes WHERE topic=? AND level=? AND depth=? AND start_time=?",
            (self._t, int(level), depth, start),
        )

    def delete_slices(self, min_depth: int, start: int, end: int) -> None:
        for depth in range(min_depth, _MAX_SLICE_DEPTH + 1):
            self._db.run(
                "DELETE FROM nodes WHERE topic=? AND level=? AND depth=?"
                " AND start_time>=? AND start_time<?",
                (self._t, int(Level.SLICE), depth, start, end),
            )

    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[MerkleNode]:
        rows = self._db.all(
            f"SELECT {_NODE_COLUMNS} FROM nodes WHERE topic=? AND level=? AND depth=?"
            " AND start_time>=? AND start_time<? ORDER BY start_time",
            (self._t, int(level), depth, start, end),
        )
        return [_node(row) for row in rows]

    def summaries(self, level: Level, start: int, end: int) -> list[tuple[bytes, int]]:
        """(hash, leaves) of the calendar nodes of `level` starting in [start, end)."""
        rows = self._db.all(
            "SELECT hash, leaves FROM nodes WHERE topic=? AND level=? AND depth=0"
            " AND start_time>=? AND start_time<? ORDER BY start_time",
            (self._t, int(level), start, end),
        )
        return [(row[0], row[1]) for row in rows]

    def nodes_between(self, start: int, end: int) -> list[MerkleNode]:
        """Every slice, hour and day node starting in [start, end)."""
        found = []
        for level, depths in (
            (Level.SLICE, range(1, _MAX_SLICE_DEPTH + 1)),
            (Level.HOUR, range(1)),
            (Level.DAY, range(1)),
        ):
            for depth in depths:
                found += self.nodes(level, depth, start, end)
        return found

    def active_days(self) -> list[int]:
        """Start of every UTC day that has a leaf or a node below the day level."""
        rows = self._db.all(
            "SELECT DISTINCT time - time % ? FROM leaves WHERE topic=?"
            " UNION SELECT DISTINCT start_time - start_time % ? FROM nodes"
            " WHERE topic=? AND level<=? ORDER BY 1",
            (DAY_NS, self._t, DAY_NS, self._t, int(Level.DAY)),
        )
        days = [row[0] for row in rows]
        if any(type(d) is not int or not 0 <= d <= MAX_TIME for d in days):
            raise StoreError("a stored leaf or node time is corrupt (not a time)")
        return days

    def leaves(self, start: int, end: int) -> list[Leaf]:
        rows = self._db.all(
            "SELECT time, oplog_id, hash FROM leaves WHERE topic=? AND time>=? AND time<?"
            " ORDER BY time, oplog_id",
            (self._t, start, min(end, _END_OF_TIME)),
        )
        return [leaf(row) for row in rows]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._db.all(
            "SELECT hash FROM leaves WHERE topic=? AND time>=? AND time<? ORDER BY time, oplog_id",
            (self._t, start, min(end, _END_OF_TIME)),
        )
        return [row[0] for row in rows]

    def put_leaves(self, leaves: Sequence[Leaf]) -> None:
        self._db.run_many(
            "INSERT INTO leaves VALUES (?, ?, ?, ?)",
            [(self._t, leaf.time, leaf.oplog_id, leaf.hash) for leaf in leaves],
        )

    def delete_leaf(self, time: int, oplog_id: bytes) -> bool:
        changed = self._db.run(
            "DELETE FROM leaves WHERE topic=? AND time=? AND oplog_id=?",
            (self._t, time, oplog_id),
        )
        return changed == 1


def leaf(row: Row) -> Leaf:
    """A leaf read back: its time, oplog ID and hash, checked (a corrupt row is a StoreError)."""
    time, oplog_id, hash_ = row
    if (
        type(time) is not int
        or not 0 <= time <= MAX_TIME
        or type(oplog_id) is not bytes
        or type(hash_) is not bytes
    ):
        raise StoreError(f"a stored leaf is corrupt: {row!r:.200}")
    return Leaf(time, oplog_id, hash_)


def _node(row: Row) -> MerkleNode:
    """A node read back; a row with a field of the wrong type is corrupt (a StoreError)."""
    level, depth, start, end, hash_, children, leaves = row
    if not (
        type(level) is int
        and level in _LEVELS
        and type(depth) is int
        and type(start) is int
        and type(end) is int
        and type(hash_) is bytes
        and type(children) is int
        and type(leaves) is int
    ):
        raise StoreError(f"a stored tree node is corrupt: {row!r:.200}")
    return MerkleNode(Level(level), depth, start, end, hash_, children, leaves)
