"""The store: oplogs by status, with each topic's Merkle tree, in SQLite.

One SQLite database holds every topic of a data directory.  The embedded
default is a file in WAL mode; `Store.memory()` is the same code on an
in-memory database, for tests and simulation.  docs/pip-11/store.md has the
schema and the reasons behind it.

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
* **A versioned schema** (sqlite.py): a store from a newer pttsync, or a
  file that is not a store, is refused rather than misread or modified.
* **Errors are StoreErrors**: corruption or I/O failures never surface as
  raw sqlite3 exceptions.

The store applies no policy: which copy of an oplog wins, and whether an
oplog is valid, are decided above it (HandleOplogs).  It stores what it is
told, atomically.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import StoreError, UsageError
from ..merkle import Leaf, MerkleTree
from ..oplog import Oplog, OplogStatus
from ..oplogcodec import decode_oplog, encode_oplog
from .database import SCHEMA_VERSION, Database, Row
from .sqlitetree import IN_CHUNK, SqliteTreeStorage

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "DEFAULT_EXPIRY",
    "SCHEMA_VERSION",
    "BatchResult",
    "FailedOplog",
    "Quorum",
    "Store",
    "StoredOplog",
    "TopicInfo",
]


class Quorum(IntEnum):
    """How many of a topic's masters make a member's oplog valid (lifecycle.md)."""

    MAJORITY = 0  # more than half (PIP-7)
    ALL = 1  # every master (what go-pttai's code does)


DEFAULT_EXPIRY = 3600 * 1_000_000_000
"""How long an oplog may stay pending before HandleFailedOplogs rolls it back."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic this store holds.  The ID derives from the other fields (topic.py).

    `quorum` and `expiry` are the topic's lifecycle settings, fixed when the
    topic is founded.
    """

    topic_id: bytes
    name: str
    creator: bytes
    create_time: int
    nonce: bytes
    quorum: Quorum = Quorum.MAJORITY
    expiry: int = DEFAULT_EXPIRY


@dataclass(frozen=True, slots=True)
class StoredOplog:
    oplog: Oplog
    status: OplogStatus


@dataclass(frozen=True, slots=True)
class FailedOplog:
    """A record of an oplog that HandleFailedOplogs rolled back and deleted."""

    oplog_id: bytes
    object_id: bytes
    op: int
    creator: bytes
    create_time: int
    failed_at: int
    reason: str


MAX_FAILED = 10_000
"""Failed-oplog records kept per topic; the oldest go first."""


@dataclass(slots=True)
class BatchResult:
    """What a batch did, by oplog ID (each ID listed once)."""

    added: list[bytes] = field(default_factory=list)
    replaced: list[bytes] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    deleted: list[bytes] = field(default_factory=list)


class Store:
    """A pttsync store on one SQLite connection.  Not for concurrent use."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db.conn  # the raw connection, for tests and diagnostics
        self.path = db.path
        self._keys: dict[bytes, int] = {}

    @classmethod
    def open(cls, path: Path | str, *, create: bool = False, synchronous: str = "FULL") -> Store:
        """Open the store file at `path`; with `create`, make a new one.

        `synchronous` is SQLite's setting: FULL (the default) survives power
        loss; NORMAL survives a process crash only.

        Raises:
            StoreError: the file is missing (without `create`), exists (with
                `create`), is not a pttsync store, or has an unknown schema.
        """
        return cls(Database.open(Path(path), create=create, synchronous=synchronous))

    @classmethod
    def memory(cls) -> Store:
        """A fresh in-memory store (tests and simulation)."""
        return cls(Database.memory())

    def copy(self) -> Store:
        """An in-memory copy of this store, every topic and oplog in it.

        The simulator starts its peers from one store this way: copying the
        database is much cheaper than writing the same oplogs into each.
        """
        return Store(self._db.copy())

    @property
    def schema_version(self) -> int:
        row = self._db.one("PRAGMA user_version")
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics ------------------------------------------------------------------

    def add_topic(self, info: TopicInfo) -> None:
        with self._db.transaction():
            if self._db.one("SELECT 1 FROM topics WHERE topic_id=?", (info.topic_id,)):
                raise UsageError(f"topic {info.topic_id.hex()} is already in this store")
            self._db.run(
                f"INSERT INTO topics ({_TOPIC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    info.topic_id,
                    info.name,
                    info.creator,
                    info.create_time,
                    info.nonce,
                    int(info.quorum),
                    info.expiry,
                ),
            )

    def topics(self) -> list[TopicInfo]:
        rows = self._db.all(f"SELECT {_TOPIC_COLUMNS} FROM topics ORDER BY topic")
        return [_topic(row) for row in rows]

    def topic(self, topic_id: bytes) -> TopicInfo:
        row = self._db.one(f"SELECT {_TOPIC_COLUMNS} FROM topics WHERE topic_id=?", (topic_id,))
        if row is None:
            raise UsageError(f"topic {topic_id.hex()} is not in this store")
        return _topic(row)

    def _key(self, topic_id: bytes) -> int:
        """The small integer that stands for a topic inside the database."""
        key = self._keys.get(topic_id)
        if key is None:
            row = self._db.one("SELECT topic FROM topics WHERE topic_id=?", (topic_id,))
            if row is None:
                raise UsageError(f"topic {topic_id.hex()} is not in this store")
            key = self._keys[topic_id] = int(row[0])
        return key

    # -- writing -----------------------------------------------------------------

    def write_batch(
        self,
        topic_id: bytes,
        puts: Iterable[tuple[Oplog, OplogStatus]] = (),
        deletes: Iterable[bytes] = (),
        failed: Iterable[FailedOplog] = (),
    ) -> BatchResult:
        """Write oplogs and delete oplog IDs of one topic, in one transaction.

        A put replaces any stored copy of the same oplog ID (in any status);
        the Merkle leaves follow: a valid oplog gets its leaf, a replaced or
        deleted valid one loses its old leaf.  Deletes of unknown IDs are ignored.
        Each `failed` record is kept (the newest MAX_FAILED per topic) and its
        oplog deleted.

        Raises:
            UsageError: an oplog belongs to another topic, or the topic is unknown.
            StoreError: the write failed.  Either way nothing was written.
        """
        key = self._key(topic_id)
        puts = list(puts)
        result = BatchResult()
        added: dict[bytes, Leaf] = {}  # leaves to add, by oplog ID
        removed: list[Leaf] = []  # leaves stored before this batch, to remove
        new_here: set[bytes] = set()  # IDs this batch adds (not replaces)

        def drop_leaf(oplog_id: bytes, status: int, time: int, h: bytes) -> None:
            if status == OplogStatus.VALID and added.pop(oplog_id, None) is None:
                removed.append(Leaf(time, oplog_id, h))

        with self._db.transaction():
            stored = self._existing(key, [oplog.oplog_id for oplog, _ in puts])
            rows = []
            for oplog, status in puts:
                if oplog.topic_id != topic_id:
                    raise UsageError(
                        f"oplog {oplog.oplog_id.hex()} belongs to topic {oplog.topic_id.hex()}"
                    )
                oid = oplog.oplog_id
                old = stored.get(oid)
                if old is not None:
                    if old[0] == status and old[2] == oplog.hash:
                        if oid not in new_here:
                            result.unchanged.append(oid)
                        continue
                    drop_leaf(oid, *old)
                    if oid not in new_here:
                        result.replaced.append(oid)
                else:
                    new_here.add(oid)
                    result.added.append(oid)
                # A second put of the same ID in this batch replaces the first.
                stored[oid] = (int(status), oplog.update_time, oplog.hash)
                rows.append(
                    (
                        key,
                        oid,
                        int(status),
                        oplog.update_time,
                        oplog.hash,
                        encode_oplog(oplog),
                        oplog.object_id,
                        oplog.op,
                        oplog.create_time,
                    )
                )
                if status == OplogStatus.VALID:
                    added[oid] = Leaf(oplog.update_time, oid, oplog.hash)
            self._db.run_many(
                "INSERT OR REPLACE INTO oplogs (topic, oplog_id, status, update_time, hash, body,"
                " object_id, op, create_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            failed = list(failed)
            if failed:
                self._db.run_many(
                    "INSERT OR REPLACE INTO failed (topic, oplog_id, object_id, op, creator,"
                    " create_time, failed_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(key, *astuple(f)) for f in failed],
                )
                self._db.run(
                    "DELETE FROM failed WHERE topic=? AND oplog_id NOT IN (SELECT oplog_id"
                    " FROM failed WHERE topic=? ORDER BY failed_at DESC LIMIT ?)",
                    (key, key, MAX_FAILED),
                )
            for oid in [*deletes, *(f.oplog_id for f in failed)]:
                old_row = self._db.one(
                    "DELETE FROM oplogs WHERE topic=? AND oplog_id=?"
                    " RETURNING status, update_time, hash",
                    (key, oid),
                )
                if old_row is not None:
                    drop_leaf(oid, old_row[0], old_row[1], old_row[2])
                    result.deleted.append(oid)
            self._tree(topic_id, key).update(list(added.values()), removed)
        return result

    def _by_id(self, key: int, columns: str, ids: Iterable[bytes], where: str = "") -> list[Row]:
        """Rows of `columns` (oplog_id first) for the oplogs `ids` of a topic, in chunks."""
        ids = list(ids)
        rows: list[Row] = []
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            rows += self._db.all(
                f"SELECT oplog_id, {columns} FROM oplogs WHERE topic=?{where}"
                f" AND oplog_id IN ({','.join('?' * len(chunk))})",
                (key, *chunk),
            )
        return rows

    def _existing(self, key: int, ids: list[bytes]) -> dict[bytes, tuple[int, int, bytes]]:
        """(status, update time, hash) of the stored copies of `ids`."""
        rows = self._by_id(key, "status, update_time, hash", ids)
        return {oid: (status, ut, h) for oid, status, ut, h in rows}

    # -- reading -----------------------------------------------------------------

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None:
        row = self._db.one(
            "SELECT body, status FROM oplogs WHERE topic=? AND oplog_id=?",
            (self._key(topic_id), oplog_id),
        )
        return None if row is None else _stored(row)

    def find(self, topic_id: bytes, hex_prefix: str, limit: int = 2) -> list[StoredOplog]:
        """Oplogs whose hex ID starts with `hex_prefix` (short IDs typed by people).

        Raises:
            UsageError: the prefix is not hexadecimal or is longer than an ID.
        """
        prefix = check_hex_prefix(hex_prefix)
        low, high = bytes.fromhex(prefix.ljust(64, "0")), bytes.fromhex(prefix.ljust(64, "f"))
        rows = self._db.all(
            "SELECT body, status FROM oplogs WHERE topic=? AND oplog_id BETWEEN ? AND ?"
            " ORDER BY oplog_id LIMIT ?",
            (self._key(topic_id), low, high, limit),
        )
        return [_stored(row) for row in rows]

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        """Oplogs of one status with update time >= `since`, oldest first."""
        # The status is written into the statement (it is an enum, not input) so
        # that SQLite can use the partial index of not-yet-valid oplogs.
        rows = self._db.all(
            f"SELECT body, status FROM oplogs WHERE topic=? AND status={int(status)}"
            " AND update_time>=? ORDER BY update_time, oplog_id LIMIT ?",
            (self._key(topic_id), since, limit),
        )
        return [_stored(row).oplog for row in rows]

    def has_pending(self, topic_id: bytes) -> bool:
        """True if the topic holds any pending or internal-pending oplog (an index lookup)."""
        row = self._db.one(
            "SELECT 1 FROM oplogs WHERE topic=? AND status<3 LIMIT 1", (self._key(topic_id),)
        )
        return row is not None

    def count(self, topic_id: bytes, status: OplogStatus | None = None) -> int:
        key = self._key(topic_id)
        if status is None:
            row = self._db.one("SELECT count(*) FROM oplogs WHERE topic=?", (key,))
        else:
            row = self._db.one(
                "SELECT count(*) FROM oplogs WHERE topic=? AND status=?", (key, int(status))
            )
        return int(row[0]) if row else 0

    # -- what the lifecycle and the documents read ----------------------------------

    def by_objects(self, topic_id: bytes, object_ids: Iterable[bytes]) -> list[StoredOplog]:
        """Every oplog (any status) acting on these objects."""
        key, ids = self._key(topic_id), sorted(set(object_ids))
        rows: list[Row] = []
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            rows += self._db.all(
                "SELECT body, status FROM oplogs WHERE topic=?"
                f" AND object_id IN ({','.join('?' * len(chunk))})",
                (key, *chunk),
            )
        return [_stored(row) for row in rows]

    def by_op_range(self, topic_id: bytes, lo: int, hi: int) -> list[StoredOplog]:
        """Every oplog with lo <= op < hi (the governance ops have an index)."""
        rows = self._db.all(
            "SELECT body, status FROM oplogs WHERE topic=? AND op>=? AND op<?",
            (self._key(topic_id), lo, hi),
        )
        return [_stored(row) for row in rows]

    def since(self, topic_id: bytes, time: int, chunk: int = 2000) -> Iterator[StoredOplog]:
        """Every oplog (any status) with update time >= `time`, read in chunks."""
        key = self._key(topic_id)
        lo: tuple[int, bytes] = (time, b"")
        while True:
            rows = self._db.all(
                "SELECT body, status, update_time, oplog_id FROM oplogs WHERE topic=?"
                " AND (update_time, oplog_id) > (?, ?) ORDER BY update_time, oplog_id LIMIT ?",
                (key, lo[0], lo[1], chunk),
            )
            for row in rows:
                yield _stored(row)
            if len(rows) < chunk:
                return
            lo = (rows[-1][2], rows[-1][3])

    def object_ids(
        self,
        topic_id: bytes,
        *,
        ops: tuple[int, int],
        after: bytes = b"",
        limit: int = 1000,
        inclusive: bool = False,
    ) -> list[bytes]:
        """Distinct object IDs > `after` (>= if `inclusive`) acted on by ops in [lo, hi)."""
        compare = ">=" if inclusive else ">"
        rows = self._db.all(
            f"SELECT DISTINCT object_id FROM oplogs WHERE topic=? AND object_id{compare}?"
            " AND op>=? AND op<? ORDER BY object_id LIMIT ?",
            (self._key(topic_id), after, ops[0], ops[1], limit),
        )
        return [row[0] for row in rows]

    def has_failed(self, topic_id: bytes, oplog_id: bytes) -> bool:
        """True if the oplog was rolled back by HandleFailedOplogs (and is still recorded)."""
        row = self._db.one(
            "SELECT 1 FROM failed WHERE topic=? AND oplog_id=?", (self._key(topic_id), oplog_id)
        )
        return row is not None

    def failed(self, topic_id: bytes, *, limit: int = 1000) -> list[FailedOplog]:
        """The most recently failed (expired and rolled back) oplogs, newest first."""
        rows = self._db.all(
            "SELECT oplog_id, object_id, op, creator, create_time, failed_at, reason"
            " FROM failed WHERE topic=? ORDER BY failed_at DESC, oplog_id LIMIT ?",
            (self._key(topic_id), limit),
        )
        return [FailedOplog(*row) for row in rows]

    # -- what sync reads and remembers ---------------------------------------------

    def leaves_from(
        self, topic_id: bytes, lo: tuple[int, bytes], end: int, limit: int
    ) -> list[Leaf]:
        """Up to `limit` leaves with key >= `lo` and time < `end`, in key order."""
        rows = self._db.all(
            "SELECT time, oplog_id, hash FROM leaves WHERE topic=?"
            " AND (time, oplog_id) >= (?, ?) AND time<? ORDER BY time, oplog_id LIMIT ?",
            (self._key(topic_id), lo[0], lo[1], min(end, _END), limit),
        )
        return [Leaf(*row) for row in rows]

    def bodies(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The encoded records of the valid oplogs among `oplog_ids`, by ID."""
        rows = self._by_id(self._key(topic_id), "body", oplog_ids, " AND status=3")
        return {oid: body for oid, body in rows}  # noqa: C416 (rows are tuples)

    def existing(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, StoredOplog]:
        """The stored copies (any status) of `oplog_ids`, by ID."""
        rows = self._by_id(self._key(topic_id), "body, status", oplog_ids)
        return {oid: _stored((body, status)) for oid, body, status in rows}

    def sync_time(self, topic_id: bytes, peer: bytes) -> int:
        """The time up to which `peer` was last confirmed in sync with us (0: never)."""
        row = self._db.one(
            "SELECT time FROM sync_times WHERE topic=? AND peer=?", (self._key(topic_id), peer)
        )
        return int(row[0]) if row else 0

    def set_sync_time(self, topic_id: bytes, peer: bytes, time: int) -> None:
        """Move a peer's sync time forward to `time`; it never moves back."""
        key = self._key(topic_id)
        with self._db.transaction():
            self._db.run(
                "INSERT INTO sync_times (topic, peer, time) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, peer) DO UPDATE SET time=max(time, excluded.time)",
                (key, peer, time),
            )

    # -- the tree ----------------------------------------------------------------

    def tree(self, topic_id: bytes) -> MerkleTree:
        """The Merkle tree of one topic (reads go straight to the database)."""
        return self._tree(topic_id, self._key(topic_id))

    def _tree(self, topic_id: bytes, key: int) -> MerkleTree:
        return MerkleTree(topic_id, SqliteTreeStorage(self._db, key))

    def check(self, topic_id: bytes) -> list[str]:
        """Check a topic's consistency; returns the problems found (none is good).

        Every valid oplog has its leaf (same time and hash), every leaf has its
        valid oplog, and every tree node matches a rebuild from the leaves.
        """
        key = self._key(topic_id)
        problems = [
            f"valid oplog {row[0].hex()} has no matching leaf"
            for row in self._db.all(
                "SELECT o.oplog_id FROM oplogs o WHERE o.topic=? AND o.status=3"
                " AND NOT EXISTS (SELECT 1 FROM leaves l WHERE l.topic=o.topic"
                " AND l.time=o.update_time AND l.oplog_id=o.oplog_id AND l.hash=o.hash)",
                (key,),
            )
        ]
        problems += [
            f"leaf {row[0].hex()} has no matching valid oplog"
            for row in self._db.all(
                "SELECT l.oplog_id FROM leaves l WHERE l.topic=?"
                " AND NOT EXISTS (SELECT 1 FROM oplogs o WHERE o.topic=l.topic"
                " AND o.oplog_id=l.oplog_id AND o.status=3 AND o.update_time=l.time"
                " AND o.hash=l.hash)",
                (key,),
            )
        ]
        return problems + self.tree(topic_id).check()


_END = 2**63 - 1


def check_hex_prefix(text: str) -> str:
    """`text` as a lower-case hex prefix of an oplog ID.  UsageError if it is not one."""
    prefix = text.lower()
    if len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"{text!r} is not a hex oplog ID prefix")
    return prefix


def newest_failed_first(record: FailedOplog) -> tuple[int, bytes]:
    """The order of failed-oplog records: most recently failed first, then by ID."""
    return (-record.failed_at, record.oplog_id)


_TOPIC_COLUMNS = "topic_id, name, creator, create_time, nonce, quorum, expiry"


def _topic(row: Row) -> TopicInfo:
    topic_id, name, creator, create_time, nonce, quorum, expiry = row
    return TopicInfo(topic_id, name, creator, create_time, nonce, Quorum(quorum), expiry)


def _stored(row: Row) -> StoredOplog:
    try:
        oplog = decode_oplog(row[0], signatures=False)
    except Exception as exc:
        raise StoreError(f"a stored oplog is corrupt: {exc}") from exc
    return StoredOplog(oplog, OplogStatus(row[1]))
