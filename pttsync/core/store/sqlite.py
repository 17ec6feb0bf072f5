"""The durable `Store`: oplogs by status, with each topic's Merkle tree, in SQLite.

One SQLite database holds every topic of a data directory.  The embedded
default is a file in WAL mode; `SqliteStore.memory()` is the same code on an
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
* **A versioned schema** (database.py): a store from a newer pttsync, or a
  file that is not a store, is refused rather than misread or modified.
* **Errors are StoreErrors**: corruption or I/O failures never surface as
  raw sqlite3 exceptions.

The store applies no policy: which copy of an oplog wins, and whether an
oplog is valid, are decided above it (HandleOplogs).  It stores what it is
told, atomically.
"""

from __future__ import annotations

import zlib
from dataclasses import astuple
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import StoreError, UsageError
from ..merkle import Leaf, MerkleTree
from ..oplogcodec import encode_oplog
from ..timeutil import MAX_TIME
from ..topic import Quorum, TopicInfo
from .batch import plan_batch
from .database import SCHEMA_VERSION, Database, Row
from .integrity import Quarantine
from .protocol import (
    MAX_FAILED,
    BatchResult,
    Damage,
    FailedOplog,
    StoredOplog,
    check_hex_prefix,
)
from .recordpack import HASH, RECORD, pack, records
from .sqliteaudit import consistency, count_oplogs, quarantined, raw_records, set_aside
from .sqlitetree import IN_CHUNK, SqliteTreeStorage, leaf

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Iterator

    from ..oplog import Oplog, OplogStatus

__all__ = ["SCHEMA_VERSION", "SqliteStore"]


class SqliteStore:
    """The `Store` on one SQLite connection (the module text).  Not for concurrent use."""

    def __init__(self, db: Database, *, quarantine: bool = False) -> None:
        self._db = db
        self._conn = db.conn  # the raw connection, for tests and diagnostics
        self.path = db.path
        self._keys: dict[bytes, int] = {}
        self._quarantine = Quarantine(self._keep_damaged, enabled=quarantine)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        create: bool = False,
        synchronous: str = "FULL",
        quarantine: bool = False,
    ) -> SqliteStore:
        """Open the store file at `path`; with `create`, make a new one.

        `synchronous` is SQLite's setting: FULL (the default) survives power
        loss; NORMAL survives a process crash only.  With `quarantine` (a
        running node's store), a record found damaged on disk when read is
        moved aside and removed, so that sync fetches a good copy
        (integrity.py); without it, reading one is a StoreError.

        Raises:
            StoreError: the file is missing (without `create`), exists (with
                `create`), is not a pttsync store, or has an unknown schema.
        """
        db = Database.open(Path(path), create=create, synchronous=synchronous)
        return cls(db, quarantine=quarantine)

    @classmethod
    def memory(cls, *, quarantine: bool = False) -> SqliteStore:
        """A fresh in-memory store (tests and simulation)."""
        return cls(Database.memory(), quarantine=quarantine)

    def copy(self) -> SqliteStore:
        """An in-memory copy of this store, every topic and oplog in it.

        The simulator starts its peers from one store this way: copying the
        database is much cheaper than writing the same oplogs into each.
        """
        return SqliteStore(self._db.copy())

    @property
    def schema_version(self) -> int:
        row = self._db.one("PRAGMA user_version")
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SqliteStore:
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
            if type(row[0]) is not int:
                raise StoreError(f"a stored topic's key is corrupt: {row[0]!r:.100}")
            key = self._keys[topic_id] = row[0]
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
        with self._db.transaction():
            return self._write(topic_id, key, list(puts), list(deletes), list(failed))

    def _write(
        self,
        topic_id: bytes,
        key: int,
        puts: list[tuple[Oplog, OplogStatus]],
        deletes: list[bytes],
        failed: list[FailedOplog],
    ) -> BatchResult:
        """write_batch's work, inside the caller's transaction."""
        gone = [*deletes, *(f.oplog_id for f in failed)]
        held = self._existing(key, [oplog.oplog_id for oplog, _ in puts] + gone)
        plan = plan_batch(topic_id, puts, gone, held)
        rows = []
        for oplog, status in plan.writes:
            record = encode_oplog(oplog)
            # A valid oplog's (status 3) hash is its leaf's (recordpack.HASH).
            hash_ = b"" if status == 3 else oplog.hash
            rows.append((key, oplog.oplog_id, int(status), oplog.update_time, hash_,
                         pack(record, oplog), oplog.object_id, oplog.op, oplog.create_time,
                         zlib.crc32(record)))  # fmt: skip
        self._db.run_many(
            "INSERT OR REPLACE INTO oplogs (topic, oplog_id, status, update_time, hash, body,"
            " object_id, op, create_time, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
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
        self._db.run_many(
            "DELETE FROM oplogs WHERE topic=? AND oplog_id=?",
            [(key, oid) for oid in plan.deletes],
        )
        self._tree(topic_id, key).update(plan.add_leaves, plan.remove_leaves)
        return plan.result

    def _keep_damaged(self, topic_id: bytes, damaged: list[Damage]) -> None:
        """Move damaged records to the quarantine table and remove them, leaves and all."""
        key = self._key(topic_id)
        ids = [d.oplog_id for d in damaged]
        with self._db.transaction():
            set_aside(self._db, key, topic_id, damaged)
            self._write(topic_id, key, [], ids, [])

    def _by_id(self, key: int, columns: str, ids: Iterable[bytes], where: str = "") -> list[Row]:
        """Rows of `columns` for the oplogs `ids` of a topic, in chunks."""
        ids = list(ids)
        rows: list[Row] = []
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            rows += self._db.all(
                f"SELECT {columns} FROM oplogs WHERE topic=?{where}"
                f" AND oplog_id IN ({','.join('?' * len(chunk))})",
                (key, *chunk),
            )
        return rows

    def _existing(self, key: int, ids: list[bytes]) -> dict[bytes, tuple[int, int, bytes]]:
        """(status, update time, hash) of the stored copies of `ids`."""
        rows = self._by_id(key, f"oplog_id, status, update_time, {HASH}", ids)
        return {oid: (status, ut, h) for oid, status, ut, h in rows}

    # -- reading -----------------------------------------------------------------

    def _records(self, topic_id: bytes, where: str, *params: object) -> list[StoredOplog]:
        """The stored oplogs of a topic that match `where`, damaged ones handled."""
        rows = self._db.all(
            f"SELECT {RECORD} FROM oplogs WHERE topic=?{where}", (self._key(topic_id), *params)
        )
        return self._quarantine.decode(topic_id, records(topic_id, rows))

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None:
        found = self._records(topic_id, " AND oplog_id=?", oplog_id)
        return found[0] if found else None

    def find(self, topic_id: bytes, hex_prefix: str, limit: int = 2) -> list[StoredOplog]:
        """Oplogs whose hex ID starts with `hex_prefix` (short IDs typed by people).

        Raises:
            UsageError: the prefix is not hexadecimal or is longer than an ID.
        """
        prefix = check_hex_prefix(hex_prefix)
        low, high = bytes.fromhex(prefix.ljust(64, "0")), bytes.fromhex(prefix.ljust(64, "f"))
        where = " AND oplog_id BETWEEN ? AND ? ORDER BY oplog_id LIMIT ?"
        return self._records(topic_id, where, low, high, limit)

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        """Oplogs of one status with update time >= `since`, oldest first."""
        # The status is written into the statement (it is an enum, not input), and
        # the partial index's own term `status<3` too: SQLite does not infer it
        # from `status=1`, and without it scanned every oplog of the topic (2.5 s
        # at 1M oplogs, twice in every sync round, in sync or not).
        index = " AND status<3" if int(status) < 3 else ""
        where = f"{index} AND status={int(status)} AND update_time>=?"
        order = " ORDER BY update_time, oplog_id LIMIT ?"
        found = self._records(topic_id, where + order, since, limit)
        return [s.oplog for s in found]

    def has_pending(self, topic_id: bytes) -> bool:
        """True if the topic holds any pending or internal-pending oplog (an index lookup)."""
        row = self._db.one(
            "SELECT 1 FROM oplogs WHERE topic=? AND status<3 LIMIT 1", (self._key(topic_id),)
        )
        return row is not None

    def count(self, topic_id: bytes, status: OplogStatus | None = None) -> int:
        """How many oplogs the topic holds (of one status), without reading them."""
        return count_oplogs(self._db, self._key(topic_id), None if status is None else int(status))

    # -- what the lifecycle and the documents read ----------------------------------

    def by_objects(self, topic_id: bytes, object_ids: Iterable[bytes]) -> list[StoredOplog]:
        """Every oplog (any status) acting on these objects."""
        ids = sorted(set(object_ids))
        found: list[StoredOplog] = []
        for i in range(0, len(ids), IN_CHUNK):
            chunk = ids[i : i + IN_CHUNK]
            found += self._records(
                topic_id, f" AND object_id IN ({','.join('?' * len(chunk))})", *chunk
            )
        return found

    def by_op_range(self, topic_id: bytes, lo: int, hi: int) -> list[StoredOplog]:
        """Every oplog with lo <= op < hi (the governance ops have an index)."""
        return self._records(topic_id, " AND op>=? AND op<?", lo, hi)

    def range_key(self, topic_id: bytes, lo: int, hi: int) -> Hashable | None:
        """None: a database on disk is its own (one replica opens it)."""
        return None

    def since(self, topic_id: bytes, time: int, chunk: int = 2000) -> Iterator[StoredOplog]:
        """Every oplog (any status) with update time >= `time`, read in chunks."""
        key = self._key(topic_id)
        lo: tuple[int, bytes] = (time, b"")
        while True:
            rows = self._db.all(
                f"SELECT {RECORD} FROM oplogs WHERE topic=?"
                " AND (update_time, oplog_id) > (?, ?) ORDER BY update_time, oplog_id LIMIT ?",
                (key, lo[0], lo[1], chunk),
            )
            yield from self._quarantine.decode(topic_id, records(topic_id, rows))
            if len(rows) < chunk:
                return
            lo = (rows[-1][4], rows[-1][0])

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
        ids = [row[0] for row in rows]
        if any(type(i) is not bytes for i in ids):
            raise StoreError("a stored object ID is corrupt (not a byte string)")
        return ids

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
        return [leaf(row) for row in rows]

    def bodies(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The encoded records of the valid oplogs among `oplog_ids`, by ID.

        A record damaged on disk is never sent (a peer would refuse it): each
        is checked against the CRC-32 stored with it, or, without one (written
        before schema 5) or if they disagree, decoded (without its signatures).
        """
        rows = self._by_id(self._key(topic_id), f"{RECORD}, crc", oplog_ids, " AND status=3")
        out: dict[bytes, bytes] = {}
        check = []
        for (oid, body, status), row in zip(records(topic_id, rows), rows, strict=True):
            crc = row[-1]
            if type(body) is bytes and type(crc) is int and zlib.crc32(body) == crc:
                out[row[0]] = body  # the ID is in the record the CRC covers
            else:
                check.append((oid, body, status))
        for s in self._quarantine.decode(topic_id, check):
            out[s.oplog.oplog_id] = encode_oplog(s.oplog)  # the bytes just decoded
        return out

    def existing(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, StoredOplog]:
        """The stored copies (any status) of `oplog_ids`, by ID."""
        rows = records(topic_id, self._by_id(self._key(topic_id), RECORD, oplog_ids))
        return {s.oplog.oplog_id: s for s in self._quarantine.decode(topic_id, rows)}

    def sync_time(self, topic_id: bytes, peer: bytes) -> int:
        """The time up to which `peer` was last confirmed in sync with us (0: never)."""
        row = self._db.one(
            "SELECT time FROM sync_times WHERE topic=? AND peer=?", (self._key(topic_id), peer)
        )
        if row is None:
            return 0
        if type(row[0]) is not int or not 0 <= row[0] <= MAX_TIME:
            raise StoreError(f"a stored sync time is corrupt: {row[0]!r:.100}")
        return row[0]

    def set_sync_time(self, topic_id: bytes, peer: bytes, time: int) -> None:
        """Move a peer's sync time forward to `time`; it never moves back."""
        key = self._key(topic_id)
        with self._db.transaction():
            self._db.run(
                "INSERT INTO sync_times (topic, peer, time) VALUES (?, ?, ?)"
                " ON CONFLICT (topic, peer) DO UPDATE SET time=max(time, excluded.time)",
                (key, peer, time),
            )

    # -- integrity (integrity.py) ---------------------------------------------------

    def raw_records(
        self, topic_id: bytes, *, after: bytes = b"", limit: int = 1000
    ) -> list[tuple[object, object, object]]:
        """(oplog ID, record, status) rows as stored (the record rebuilt from its row),
        by ID after `after`: not decoded."""
        return records(topic_id, raw_records(self._db, self._key(topic_id), after, limit))

    def quarantined(self, topic_id: bytes, *, limit: int = 1000) -> list[Damage]:
        """Records found damaged on disk and moved aside, by ID."""
        return quarantined(self._db, self._key(topic_id), limit)

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
        return consistency(self._db, self._key(topic_id)) + self.tree(topic_id).check()


_END = 2**63 - 1


_TOPIC_COLUMNS = "topic_id, name, creator, create_time, nonce, quorum, expiry"


_TOPIC_TYPES = (bytes, str, bytes, int, bytes, int, int)
_QUORUMS = frozenset(int(q) for q in Quorum)


def _topic(row: Row) -> TopicInfo:
    """A topic as read back; a row of the wrong types or with an unknown quorum is corrupt."""
    wrong_type = any(type(v) is not t for v, t in zip(row, _TOPIC_TYPES, strict=True))
    if wrong_type or row[5] not in _QUORUMS:
        raise StoreError(f"a stored topic is corrupt: {row!r:.200}")
    topic_id, name, creator, create_time, nonce, quorum, expiry = row
    return TopicInfo(topic_id, name, creator, create_time, nonce, Quorum(quorum), expiry)
