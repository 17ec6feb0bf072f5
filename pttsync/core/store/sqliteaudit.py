"""The SQLite store's audit queries: counts, consistency of rows and leaves, raw records,
quarantine.

SqliteStore (sqlite.py) delegates to these; integrity.py has the policy for
records damaged on disk.  Each function takes the database and the topic's
key, and runs inside whatever transaction its caller holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import StoreError
from ..merkle import Level
from .protocol import Damage
from .recordpack import RECORD, records

if TYPE_CHECKING:
    from .database import Database, Row


def count_oplogs(db: Database, key: int, status: int | None) -> int:
    """How many oplogs a topic holds (of one status), without reading them.

    Valid oplogs (status 3) are the tree's leaves, counted in its year nodes;
    the others are counted in the partial index of not-yet-valid oplogs.
    `pttsync status` asks on every call: a count(*) read every oplog (a
    quarter of a syncing node's time while a tool polled it).
    """
    total = 0
    if status is None or status == 3:
        row = db.one(
            "SELECT coalesce(sum(leaves), 0) FROM nodes WHERE topic=? AND level=?",
            (key, int(Level.YEAR)),
        )
        total += _count(row)
    if status is None or status < 3:
        which = "" if status is None else f" AND status={int(status)}"
        row = db.one(f"SELECT count(*) FROM oplogs WHERE topic=? AND status<3{which}", (key,))
        total += _count(row)
    return total


def _count(row: tuple[object, ...] | None) -> int:
    if row is None or type(row[0]) is not int or row[0] < 0:
        raise StoreError(f"a stored count is corrupt: {row!r:.100}")
    return row[0]


def consistency(db: Database, key: int) -> list[str]:
    """Every valid oplog has its leaf (same time, and the same hash where the row holds
    one: rows written before schema 6), and every leaf its valid oplog."""
    same = " AND l.time=o.update_time AND l.oplog_id=o.oplog_id AND (o.hash=x'' OR l.hash=o.hash)"
    problems = [
        f"valid oplog {row[0]} has no matching leaf"
        for row in db.all(
            "SELECT lower(hex(o.oplog_id)) FROM oplogs o WHERE o.topic=? AND o.status=3"
            f" AND NOT EXISTS (SELECT 1 FROM leaves l WHERE l.topic=o.topic{same})",
            (key,),
        )
    ]
    problems += [
        f"leaf {row[0]} has no matching valid oplog"
        for row in db.all(
            "SELECT lower(hex(l.oplog_id)) FROM leaves l WHERE l.topic=?"
            f" AND NOT EXISTS (SELECT 1 FROM oplogs o WHERE o.topic=l.topic AND o.status=3{same})",
            (key,),
        )
    ]
    problems += [
        f"pending oplog {row[0]} has no hash"
        for row in db.all(
            "SELECT lower(hex(oplog_id)) FROM oplogs WHERE topic=? AND status<3 AND hash=x''",
            (key,),
        )
    ]
    return problems


def raw_records(db: Database, key: int, after: bytes, limit: int) -> list[Row]:
    """Rows of `recordpack.RECORD`, by ID after `after`: not rebuilt, not decoded."""
    return db.all(
        f"SELECT {RECORD} FROM oplogs WHERE topic=? AND oplog_id>? ORDER BY oplog_id LIMIT ?",
        (key, after, limit),
    )


def set_aside(db: Database, key: int, topic_id: bytes, damaged: list[Damage]) -> None:
    """Copy damaged records (whole, as rebuilt from their rows) into the quarantine table."""
    rows = []
    for d in damaged:
        row = db.one(f"SELECT {RECORD} FROM oplogs WHERE topic=? AND oplog_id=?", (key, d.oplog_id))
        if row is not None:
            ((oid, record, status),) = records(topic_id, [row])
            rows.append((key, oid, status, record, d.reason))
    db.run_many(
        "INSERT OR REPLACE INTO quarantine (topic, oplog_id, status, body, reason)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )


def quarantined(db: Database, key: int, limit: int) -> list[Damage]:
    """The records set aside so far, by ID."""
    rows = db.all(
        "SELECT oplog_id, status, reason FROM quarantine WHERE topic=? ORDER BY oplog_id LIMIT ?",
        (key, limit),
    )
    out = []
    for oid, status, reason in rows:
        if type(oid) is not bytes or type(status) is not int or type(reason) is not str:
            raise StoreError(f"a quarantine row is corrupt: {(oid, status, reason)!r:.200}")
        out.append(Damage(oid, status, reason))
    return out
