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

if TYPE_CHECKING:
    from .database import Database


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
    """Every valid oplog has its leaf (same time and hash), and every leaf its valid oplog."""
    problems = [
        f"valid oplog {row[0]} has no matching leaf"
        for row in db.all(
            "SELECT lower(hex(o.oplog_id)) FROM oplogs o WHERE o.topic=? AND o.status=3"
            " AND NOT EXISTS (SELECT 1 FROM leaves l WHERE l.topic=o.topic"
            " AND l.time=o.update_time AND l.oplog_id=o.oplog_id AND l.hash=o.hash)",
            (key,),
        )
    ]
    problems += [
        f"leaf {row[0]} has no matching valid oplog"
        for row in db.all(
            "SELECT lower(hex(l.oplog_id)) FROM leaves l WHERE l.topic=?"
            " AND NOT EXISTS (SELECT 1 FROM oplogs o WHERE o.topic=l.topic"
            " AND o.oplog_id=l.oplog_id AND o.status=3 AND o.update_time=l.time"
            " AND o.hash=l.hash)",
            (key,),
        )
    ]
    return problems


def raw_records(
    db: Database, key: int, after: bytes, limit: int
) -> list[tuple[object, object, object]]:
    """(oplog ID, record, status) as stored, by ID after `after`, not decoded."""
    rows = db.all(
        "SELECT oplog_id, body, status FROM oplogs WHERE topic=? AND oplog_id>?"
        " ORDER BY oplog_id LIMIT ?",
        (key, after, limit),
    )
    return [(oid, body, status) for oid, body, status in rows]


def set_aside(db: Database, key: int, damaged: list[Damage]) -> None:
    """Copy damaged records (their bytes as stored) into the quarantine table."""
    db.run_many(
        "INSERT OR REPLACE INTO quarantine (topic, oplog_id, status, body, reason)"
        " SELECT topic, oplog_id, status, body, ? FROM oplogs WHERE topic=? AND oplog_id=?",
        [(d.reason, key, d.oplog_id) for d in damaged],
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
