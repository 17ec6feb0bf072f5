"""The store: oplogs by status, Merkle leaves and nodes, in SQLite.

One SQLite database holds every topic of a data directory.  The embedded
default is a file in WAL mode; `Store.memory()` is the same code on an
in-memory database, for tests and simulation.

Guarantees:

* **One transaction per batch.**  `write_batch` writes oplogs, their leaves
  and every affected tree node in a single `BEGIN IMMEDIATE ... COMMIT`.  If
  anything fails part-way, the whole batch is rolled back and the store is
  exactly as it was.  A crash (even `kill -9`) can therefore never leave an
  oplog without its leaf or a leaf without its oplog: SQLite's journal
  either has the whole commit or none of it.
* **Statuses are kept apart.**  Every oplog row carries its status
  (internal-pending, pending, valid) and only valid oplogs have a leaf in the
  tree.  An oplog ID is in exactly one status at a time.
* **A versioned schema.**  `PRAGMA application_id` marks the file as a
  pttsync store and `PRAGMA user_version` carries the schema version; a
  store from a newer pttsync is refused rather than misread.

The store applies no policy: which copy of an oplog wins, and whether an
oplog is valid, are decided above it (HandleOplogs).  It stores what it is
told, atomically.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError, UsageError
from .merkle import Leaf, Level, MerkleTree, Node
from .oplog import Oplog, OplogStatus, decode_oplog, encode_oplog

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

SCHEMA_VERSION = 1
APPLICATION_ID = 0x70747473  # "ptts"

# Statements are split on ";", so comments inside must not contain one.
_SCHEMA = """
CREATE TABLE topics (
    topic       INTEGER PRIMARY KEY,
    topic_id    BLOB NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    creator     BLOB NOT NULL,
    create_time INTEGER NOT NULL,
    nonce       BLOB NOT NULL
);
CREATE TABLE oplogs (
    topic       INTEGER NOT NULL REFERENCES topics (topic),
    oplog_id    BLOB NOT NULL,
    status      INTEGER NOT NULL CHECK (status IN (1, 2, 3)),
    update_time INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    body        BLOB NOT NULL,
    UNIQUE (topic, oplog_id)
);
-- Only the few not-yet-valid oplogs are looked up by status. Valid ones are
-- found through the leaves table, so they do not pay for this index.
CREATE INDEX pending_oplogs ON oplogs (topic, status, update_time) WHERE status < 3;
CREATE TABLE leaves (
    topic    INTEGER NOT NULL,
    time     INTEGER NOT NULL,
    oplog_id BLOB NOT NULL,
    hash     BLOB NOT NULL,
    PRIMARY KEY (topic, time, oplog_id)
) WITHOUT ROWID;
CREATE TABLE nodes (
    topic      INTEGER NOT NULL,
    level      INTEGER NOT NULL,
    depth      INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    end_time   INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    children   INTEGER NOT NULL,
    leaves     INTEGER NOT NULL,
    PRIMARY KEY (topic, level, depth, start_time)
) WITHOUT ROWID;
"""

# Deeper than any slice can go: an hour is 3.6e12 ns and each split divides by 16.
_MAX_SLICE_DEPTH = 12
_END_OF_TIME = 2**63 - 1
# Host parameters per "IN (...)" query, well under SQLite's limit.
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic this store holds.  The ID derives from the other fields (topics.py)."""

    topic_id: bytes
    name: str
    creator: bytes
    create_time: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class StoredOplog:
    oplog: Oplog
    status: OplogStatus


@dataclass(slots=True)
class BatchResult:
    """What a batch did, by oplog ID."""

    added: list[bytes] = field(default_factory=list)
    replaced: list[bytes] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    deleted: list[bytes] = field(default_factory=list)


class Store:
    """A pttsync store on one SQLite connection.  Not for concurrent use."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn = conn
        self.path = path
        self._keys: dict[bytes, int] = {}

    # -- opening and closing ---------------------------------------------------

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False, synchronous: str = "FULL") -> Store:
        """Open the store file at `path`; with `create`, make a new one.

        `synchronous` is SQLite's setting: FULL (the default) survives power
        loss; NORMAL survives a process crash only, and is faster.

        Raises:
            StoreError: the file is missing (without `create`), exists (with
                `create`), is not a pttsync store, or has an unknown schema.
        """
        p = Path(path)
        if create and p.exists() and p.stat().st_size > 0:
            raise StoreError(f"a store already exists at {p}")
        if not create and not p.exists():
            raise StoreError(f"no store at {p}")
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF"):
            raise UsageError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        conn = cls._connect(str(p))
        store = cls(conn, str(p))
        try:
            if not create:
                store._check_schema()  # before changing anything in someone else's file
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{p} is not a pttsync store ({exc})") from None
            if mode != "wal":
                raise StoreError(f"cannot put {p} in WAL mode (got {mode})")
            if create:
                store._create_schema()
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def memory(cls) -> Store:
        """A fresh in-memory store (tests and simulation)."""
        store = cls(cls._connect(":memory:"), ":memory:")
        store._create_schema()
        return store

    @staticmethod
    def _connect(target: str) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open store {target}: {exc}") from None
        try:
            # Connection settings only: nothing here writes to the file.
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA cache_size=-65536")  # 64 MiB of page cache
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"{target} is not a pttsync store ({exc})") from None
        return conn

    def _create_schema(self) -> None:
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            self._conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_schema(self) -> None:
        try:
            app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a pttsync store ({exc})") from None
        if app_id != APPLICATION_ID:
            raise StoreError(f"{self.path} is not a pttsync store")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version}, written by a newer pttsync;"
                f" this one reads up to version {SCHEMA_VERSION}"
            )
        if version < SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, which has no migration")

    @property
    def schema_version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot start a transaction: {exc}") from None
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"store write failed and was rolled back: {exc}") from exc
            raise

    # -- topics ------------------------------------------------------------------

    def add_topic(self, info: TopicInfo) -> None:
        with self._transaction():
            if self._conn.execute(
                "SELECT 1 FROM topics WHERE topic_id=?", (info.topic_id,)
            ).fetchone():
                raise UsageError(f"topic {info.topic_id.hex()} is already in this store")
            self._conn.execute(
                "INSERT INTO topics (topic_id, name, creator, create_time, nonce)"
                " VALUES (?, ?, ?, ?, ?)",
                (info.topic_id, info.name, info.creator, info.create_time, info.nonce),
            )

    def topics(self) -> list[TopicInfo]:
        rows = self._conn.execute(
            "SELECT topic_id, name, creator, create_time, nonce FROM topics ORDER BY create_time"
        ).fetchall()
        return [TopicInfo(*row) for row in rows]

    def _key(self, topic_id: bytes) -> int:
        """The small integer that stands for a topic inside the database."""
        key = self._keys.get(topic_id)
        if key is None:
            row = self._conn.execute(
                "SELECT topic FROM topics WHERE topic_id=?", (topic_id,)
            ).fetchone()
            if row is None:
                raise UsageError(f"topic {topic_id.hex()} is not in this store")
            key = self._keys[topic_id] = int(row[0])
        return key

    def topic(self, topic_id: bytes) -> TopicInfo:
        row = self._conn.execute(
            "SELECT topic_id, name, creator, create_time, nonce FROM topics WHERE topic_id=?",
            (topic_id,),
        ).fetchone()
        if row is None:
            raise UsageError(f"topic {topic_id.hex()} is not in this store")
        return TopicInfo(*row)

    # -- oplogs ------------------------------------------------------------------

    def write_batch(
        self,
        topic_id: bytes,
        puts: Sequence[tuple[Oplog, OplogStatus]] = (),
        deletes: Sequence[bytes] = (),
    ) -> BatchResult:
        """Write oplogs and delete oplog IDs of one topic, in one transaction.

        A put replaces any stored copy of the same oplog ID (in any status);
        the Merkle leaves follow: a valid oplog gets its leaf, a replaced or
        deleted valid one loses its old leaf.  Deletes of unknown IDs are ignored.

        Raises:
            UsageError: an oplog belongs to another topic, or the topic is unknown.
            StoreError: the write failed.  Either way nothing was written.
        """
        key = self._key(topic_id)
        result = BatchResult()
        added: dict[bytes, Leaf] = {}
        removed: list[Leaf] = []

        def drop_leaf(oplog_id: bytes, status: int, time: int, h: bytes) -> None:
            if status != OplogStatus.VALID:
                return
            if added.pop(oplog_id, None) is None:
                removed.append(Leaf(time, oplog_id, h))

        with self._transaction():
            stored = self._existing(key, [oplog.oplog_id for oplog, _ in puts])
            rows = []
            for oplog, status in puts:
                if oplog.topic_id != topic_id:
                    raise UsageError(
                        f"oplog {oplog.oplog_id.hex()} belongs to topic {oplog.topic_id.hex()}"
                    )
                old = stored.get(oplog.oplog_id)
                if old is not None:
                    if old[0] == status and old[2] == oplog.hash:
                        result.unchanged.append(oplog.oplog_id)
                        continue
                    drop_leaf(oplog.oplog_id, old[0], old[1], old[2])
                    result.replaced.append(oplog.oplog_id)
                else:
                    result.added.append(oplog.oplog_id)
                # A second put of the same ID in this batch replaces the first.
                stored[oplog.oplog_id] = (int(status), oplog.update_time, oplog.hash)
                rows.append(
                    (
                        key,
                        oplog.oplog_id,
                        int(status),
                        oplog.update_time,
                        oplog.hash,
                        encode_oplog(oplog),
                    )
                )
                if status == OplogStatus.VALID:
                    added[oplog.oplog_id] = Leaf(oplog.update_time, oplog.oplog_id, oplog.hash)
            self._conn.executemany(
                "INSERT OR REPLACE INTO oplogs (topic, oplog_id, status, update_time, hash, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            for oplog_id in deletes:
                old_row = self._conn.execute(
                    "DELETE FROM oplogs WHERE topic=? AND oplog_id=?"
                    " RETURNING status, update_time, hash",
                    (key, oplog_id),
                ).fetchone()
                if old_row is not None:
                    drop_leaf(oplog_id, old_row[0], old_row[1], old_row[2])
                    result.deleted.append(oplog_id)
            self.tree(topic_id).update(list(added.values()), removed)
        return result

    def _existing(self, key: int, ids: list[bytes]) -> dict[bytes, tuple[int, int, bytes]]:
        """(status, update time, hash) of the stored copies of `ids`."""
        found: dict[bytes, tuple[int, int, bytes]] = {}
        for i in range(0, len(ids), _IN_CHUNK):
            chunk = ids[i : i + _IN_CHUNK]
            for oid, status, ut, h in self._conn.execute(
                "SELECT oplog_id, status, update_time, hash FROM oplogs WHERE topic=?"
                f" AND oplog_id IN ({','.join('?' * len(chunk))})",
                (key, *chunk),
            ):
                found[oid] = (status, ut, h)
        return found

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None:
        row = self._conn.execute(
            "SELECT body, status FROM oplogs WHERE topic=? AND oplog_id=?",
            (self._key(topic_id), oplog_id),
        ).fetchone()
        return None if row is None else self._stored(row)

    def find(self, topic_id: bytes, prefix: bytes, limit: int = 2) -> list[StoredOplog]:
        """Oplogs whose ID starts with `prefix` (for the CLI's short IDs)."""
        rows = self._conn.execute(
            "SELECT body, status FROM oplogs WHERE topic=? AND oplog_id>=? AND oplog_id<?"
            " ORDER BY oplog_id LIMIT ?",
            (self._key(topic_id), prefix, prefix + b"\xff" * (32 - len(prefix)) + b"\xff", limit),
        ).fetchall()
        return [self._stored(row) for row in rows]

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        """Oplogs of one status with update time >= `since`, oldest first."""
        rows = self._conn.execute(
            "SELECT body, status FROM oplogs WHERE topic=? AND status=? AND update_time>=?"
            " ORDER BY update_time, oplog_id LIMIT ?",
            (self._key(topic_id), int(status), since, limit),
        ).fetchall()
        return [self._stored(row).oplog for row in rows]

    def count(self, topic_id: bytes, status: OplogStatus | None = None) -> int:
        key = self._key(topic_id)
        if status is None:
            row = self._conn.execute("SELECT count(*) FROM oplogs WHERE topic=?", (key,))
        else:
            row = self._conn.execute(
                "SELECT count(*) FROM oplogs WHERE topic=? AND status=?", (key, int(status))
            )
        return int(row.fetchone()[0])

    def _stored(self, row: tuple[bytes, int]) -> StoredOplog:
        try:
            oplog = decode_oplog(row[0], signatures=False)
        except Exception as exc:
            raise StoreError(f"a stored oplog is corrupt: {exc}") from exc
        return StoredOplog(oplog, OplogStatus(row[1]))

    # -- the tree ------------------------------------------------------------------

    def tree(self, topic_id: bytes) -> MerkleTree:
        """The Merkle tree of one topic (reads go straight to the database)."""
        return MerkleTree(topic_id, _SqliteTreeStorage(self._conn, self._key(topic_id)))

    def check(self, topic_id: bytes) -> list[str]:
        """Check a topic's consistency; returns the problems found (none is good).

        Every valid oplog has its leaf (same time and hash), every leaf has its
        valid oplog, and every tree node matches a rebuild from the leaves.
        """
        problems = [
            f"valid oplog {oid.hex()} has no matching leaf"
            for (oid,) in self._conn.execute(
                "SELECT o.oplog_id FROM oplogs o WHERE o.topic=? AND o.status=3"
                " AND NOT EXISTS (SELECT 1 FROM leaves l WHERE l.topic=o.topic"
                " AND l.time=o.update_time AND l.oplog_id=o.oplog_id AND l.hash=o.hash)",
                (self._key(topic_id),),
            )
        ]
        problems += [
            f"leaf {oid.hex()} has no matching valid oplog"
            for (oid,) in self._conn.execute(
                "SELECT l.oplog_id FROM leaves l WHERE l.topic=?"
                " AND NOT EXISTS (SELECT 1 FROM oplogs o WHERE o.topic=l.topic"
                " AND o.oplog_id=l.oplog_id AND o.status=3 AND o.update_time=l.time"
                " AND o.hash=l.hash)",
                (self._key(topic_id),),
            )
        ]
        return problems + self.tree(topic_id).check()


class _SqliteTreeStorage:
    """`merkle.TreeStorage` on the store's connection, scoped to one topic."""

    def __init__(self, conn: sqlite3.Connection, topic: int) -> None:
        self._c = conn
        self._t = topic

    def get_node(self, level: Level, depth: int, start: int) -> Node | None:
        row = self._c.execute(
            "SELECT level, depth, start_time, end_time, hash, children, leaves FROM nodes"
            " WHERE topic=? AND level=? AND depth=? AND start_time=?",
            (self._t, int(level), depth, start),
        ).fetchone()
        return None if row is None else _node(row)

    def get_nodes(self, level: Level, depth: int, starts: Sequence[int]) -> dict[int, Node]:
        found: dict[int, Node] = {}
        for i in range(0, len(starts), _IN_CHUNK):
            chunk = starts[i : i + _IN_CHUNK]
            rows = self._c.execute(
                "SELECT level, depth, start_time, end_time, hash, children, leaves FROM nodes"
                " WHERE topic=? AND level=? AND depth=? AND start_time IN"
                f" ({','.join('?' * len(chunk))})",
                (self._t, int(level), depth, *chunk),
            ).fetchall()
            found.update((row[2], _node(row)) for row in rows)
        return found

    def put_node(self, node: Node) -> None:
        self.put_nodes((node,))

    def put_nodes(self, nodes: Sequence[Node]) -> None:
        self._c.executemany(
            "INSERT OR REPLACE INTO nodes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (self._t, int(n.level), n.depth, n.start, n.end, n.hash, n.children, n.leaves)
                for n in nodes
            ],
        )

    def delete_node(self, level: Level, depth: int, start: int) -> None:
        self._c.execute(
            "DELETE FROM nodes WHERE topic=? AND level=? AND depth=? AND start_time=?",
            (self._t, int(level), depth, start),
        )

    def delete_slices(self, min_depth: int, start: int, end: int) -> None:
        for depth in range(min_depth, _MAX_SLICE_DEPTH + 1):
            self._c.execute(
                "DELETE FROM nodes WHERE topic=? AND level=? AND depth=?"
                " AND start_time>=? AND start_time<?",
                (self._t, int(Level.SLICE), depth, start, end),
            )

    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[Node]:
        rows = self._c.execute(
            "SELECT level, depth, start_time, end_time, hash, children, leaves FROM nodes"
            " WHERE topic=? AND level=? AND depth=? AND start_time>=? AND start_time<?"
            " ORDER BY start_time",
            (self._t, int(level), depth, start, end),
        ).fetchall()
        return [_node(row) for row in rows]

    def summaries(self, level: Level, start: int, end: int) -> list[tuple[bytes, int]]:
        """(hash, leaves) of the calendar nodes of `level` starting in [start, end)."""
        return self._c.execute(
            "SELECT hash, leaves FROM nodes"
            " WHERE topic=? AND level=? AND depth=0 AND start_time>=? AND start_time<?"
            " ORDER BY start_time",
            (self._t, int(level), start, end),
        ).fetchall()

    def all_nodes(self) -> list[Node]:
        rows = self._c.execute(
            "SELECT level, depth, start_time, end_time, hash, children, leaves FROM nodes"
            " WHERE topic=?",
            (self._t,),
        ).fetchall()
        return [_node(row) for row in rows]

    def leaves(self, start: int, end: int) -> list[Leaf]:
        rows = self._c.execute(
            "SELECT time, oplog_id, hash FROM leaves WHERE topic=? AND time>=? AND time<?"
            " ORDER BY time, oplog_id",
            (self._t, start, min(end, _END_OF_TIME)),
        ).fetchall()
        return [Leaf(*row) for row in rows]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        rows = self._c.execute(
            "SELECT hash FROM leaves WHERE topic=? AND time>=? AND time<? ORDER BY time, oplog_id",
            (self._t, start, min(end, _END_OF_TIME)),
        ).fetchall()
        return [row[0] for row in rows]

    def put_leaves(self, leaves: Sequence[Leaf]) -> None:
        self._c.executemany(
            "INSERT INTO leaves VALUES (?, ?, ?, ?)",
            [(self._t, leaf.time, leaf.oplog_id, leaf.hash) for leaf in leaves],
        )

    def delete_leaf(self, time: int, oplog_id: bytes) -> bool:
        cur = self._c.execute(
            "DELETE FROM leaves WHERE topic=? AND time=? AND oplog_id=?",
            (self._t, time, oplog_id),
        )
        return cur.rowcount == 1


def _node(row: tuple[int, int, int, int, bytes, int, int]) -> Node:
    return Node(Level(row[0]), row[1], row[2], row[3], row[4], row[5], row[6])
