"""The SQLite database under the store: connection, errors, transactions, schema.

Every SQLite failure comes out of this module as a `StoreError`, whether it
happens while writing, reading or opening, so a corrupt or foreign file gives
a clear error and never a raw `sqlite3` traceback.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

from ...errors import StoreError, UsageError
from ..oplogcodec import decode_oplog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from pathlib import Path

SCHEMA_VERSION = 6
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

# Migrations: MIGRATIONS[v] takes a store from schema v to v + 1.  A new store
# runs _SCHEMA and then every migration, so both paths give the same schema.
MIGRATIONS: dict[int, str | Callable[[Database], None]] = {
    # 1 -> 2: the time up to which each peer was last confirmed in sync (sync.md).
    1: """
CREATE TABLE sync_times (
    topic INTEGER NOT NULL REFERENCES topics (topic),
    peer  BLOB NOT NULL,
    time  INTEGER NOT NULL,
    PRIMARY KEY (topic, peer)
) WITHOUT ROWID
""",
}

# The lifecycle's tables and columns (lifecycle.md).  Kept apart so that the
# 2 -> 3 migration can fill the new columns from the stored records.
_SCHEMA_3 = """
ALTER TABLE topics ADD COLUMN quorum INTEGER NOT NULL DEFAULT 0;
ALTER TABLE topics ADD COLUMN expiry INTEGER NOT NULL DEFAULT 3600000000000;
ALTER TABLE oplogs ADD COLUMN object_id BLOB NOT NULL DEFAULT x'';
ALTER TABLE oplogs ADD COLUMN op INTEGER NOT NULL DEFAULT 0;
ALTER TABLE oplogs ADD COLUMN create_time INTEGER NOT NULL DEFAULT 0;
CREATE INDEX oplogs_by_object ON oplogs (topic, object_id);
CREATE INDEX governance_oplogs ON oplogs (topic, op) WHERE op >= 256;
CREATE TABLE failed (
    topic       INTEGER NOT NULL REFERENCES topics (topic),
    oplog_id    BLOB NOT NULL,
    object_id   BLOB NOT NULL,
    op          INTEGER NOT NULL,
    creator     BLOB NOT NULL,
    create_time INTEGER NOT NULL,
    failed_at   INTEGER NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (topic, oplog_id)
) WITHOUT ROWID
"""

Row = tuple[Any, ...]

_ERRORS = (sqlite3.Error, UnicodeDecodeError)
"""What a statement raises on a corrupt file: SQLite's errors, and UnicodeDecodeError
when SQLite's error message quotes bytes of a corrupt schema that are not UTF-8."""


def _text(exc: sqlite3.Error | UnicodeDecodeError) -> str:
    """What went wrong, as text: SQLite's message, even when it quotes bytes that are not UTF-8."""
    if isinstance(exc, UnicodeDecodeError):
        return exc.object.decode("utf-8", "replace")
    return str(exc)


def _migrate_2_to_3(db: Database) -> None:
    """Add the lifecycle's columns and fill them from each stored record."""
    _run_script(db, _SCHEMA_3)
    last: list[int] = []
    while True:
        # A record's object ID is 1..128 bytes, so an empty one marks a row not yet filled.
        rows = db.all("SELECT rowid, body FROM oplogs WHERE object_id=x'' LIMIT 10000")
        if not rows:
            return
        if [rowid for rowid, _ in rows] == last:  # the last pass filled none of them
            raise StoreError("the store's oplogs table is corrupt: its rows cannot be migrated")
        last = [rowid for rowid, _ in rows]
        updates = []
        for rowid, body in rows:
            try:
                o = decode_oplog(body)
            except Exception as exc:  # not a byte string, or not a valid record
                raise StoreError(f"a stored oplog is corrupt: {exc}") from exc
            updates.append((o.object_id, o.op, o.create_time, rowid))
        db.run_many("UPDATE oplogs SET object_id=?, op=?, create_time=? WHERE rowid=?", updates)


def _run_script(db: Database, script: str) -> None:
    for statement in script.split(";"):
        if statement.strip():
            db.run(statement)


# 2 -> 3: the lifecycle (topic settings, oplogs by object and op, failed oplogs).
MIGRATIONS[2] = _migrate_2_to_3

# 3 -> 4: records found damaged on disk, set aside (integrity.py).  `body` is what
# was stored, of whatever type it had become, so it has no declared type.
MIGRATIONS[3] = """
CREATE TABLE quarantine (
    topic    INTEGER NOT NULL REFERENCES topics (topic),
    oplog_id BLOB NOT NULL,
    status   INTEGER NOT NULL,
    body     ANY,
    reason   TEXT NOT NULL,
    PRIMARY KEY (topic, oplog_id)
) WITHOUT ROWID
"""

# 4 -> 5: a CRC-32 of each record, written with it, so that sending a record
# checks its bytes at ~1 us instead of decoding it (~50 us).  Rows written
# before have none and are decoded as before (integrity.py).
MIGRATIONS[4] = "ALTER TABLE oplogs ADD COLUMN crc INTEGER"


def _records_packed(db: Database) -> None:
    """5 -> 6: records are written packed (recordpack.py), without the fields their
    row holds.  Nothing to rewrite: a whole record, as written before, is read as
    it is.  The version changes so that an older pttsync refuses a packed store."""


MIGRATIONS[5] = _records_packed


class Database:
    """One SQLite connection; every call reports failures as StoreError."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, create: bool, synchronous: str) -> Database:
        """Open (or with `create`, make) a store file.

        A file that is not a pttsync store is refused *before* anything in it
        is changed: not even the switch to WAL mode happens.
        """
        if synchronous.upper() not in ("FULL", "NORMAL", "OFF"):
            raise UsageError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        if create and path.exists() and path.stat().st_size > 0:
            raise StoreError(f"a store already exists at {path}")
        if not create and not path.exists():
            raise StoreError(f"no store at {path}")
        db = cls(_connect(str(path)), str(path))
        try:
            if not create:
                db.check_schema()
            mode = db.one("PRAGMA journal_mode=WAL")
            if mode is None or mode[0] != "wal":
                raise StoreError(f"cannot put {path} in WAL mode (got {mode})")
            db.run(f"PRAGMA synchronous={synchronous.upper()}")
            if create:
                db.create_schema()
        except BaseException:
            db.close()
            raise
        return db

    @classmethod
    def memory(cls) -> Database:
        db = cls(_connect(":memory:"), ":memory:")
        db.create_schema()
        return db

    def copy(self) -> Database:
        """An in-memory copy of this database (SQLite's backup API)."""
        target = _connect(":memory:")
        try:
            self.conn.backup(target)
        except _ERRORS as exc:
            target.close()
            raise self._fail(exc) from None
        return Database(target, ":memory:")

    def create_schema(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.run(statement)
            self.run(f"PRAGMA application_id={APPLICATION_ID}")
            self._migrate_from(1)

    def _migrate_from(self, version: int) -> None:
        """Run the migrations from `version` up, inside the caller's transaction."""
        for v in range(version, SCHEMA_VERSION):
            step = MIGRATIONS[v]
            if isinstance(step, str):
                _run_script(self, step)
            else:
                step(self)
        self.run(f"PRAGMA user_version={SCHEMA_VERSION}")

    def check_schema(self) -> None:
        app_id = self.one("PRAGMA application_id")
        version = self.one("PRAGMA user_version")
        if app_id is None or version is None or app_id[0] != APPLICATION_ID:
            raise StoreError(f"{self.path} is not a pttsync store")
        if version[0] > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {version[0]}, written by a newer pttsync;"
                f" this one reads up to version {SCHEMA_VERSION}"
            )
        if version[0] < 1:
            raise StoreError(f"{self.path} has schema version {version[0]}, which has no migration")
        if version[0] < SCHEMA_VERSION:
            with self.transaction():
                self._migrate_from(version[0])

    def close(self) -> None:
        self.conn.close()

    # -- statements ------------------------------------------------------------

    def _fail(self, exc: sqlite3.Error | UnicodeDecodeError) -> StoreError:
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return StoreError(f"{self.path} is not a pttsync store ({exc})")
        return StoreError(f"store {self.path}: {_text(exc)}")

    def run(self, sql: str, params: Sequence[object] = ()) -> int:
        """Execute one statement; return the number of rows it changed."""
        try:
            return self.conn.execute(sql, params).rowcount
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def run_many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            self.conn.executemany(sql, rows)
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    def one(self, sql: str, params: Sequence[object] = ()) -> Row | None:
        try:
            row: Row | None = self.conn.execute(sql, params).fetchone()
        except _ERRORS as exc:
            raise self._fail(exc) from exc
        return row

    def all(self, sql: str, params: Sequence[object] = ()) -> list[Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except _ERRORS as exc:
            raise self._fail(exc) from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""
        self.run("BEGIN IMMEDIATE")
        try:
            yield
            self.run("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                # If SQLite already rolled back by itself, the original error is what matters.
                with suppress(*_ERRORS):
                    self.conn.execute("ROLLBACK")
            raise


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
    except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
        conn.close()
        raise StoreError(f"{target} is not a pttsync store ({_text(exc)})") from None
    return conn
