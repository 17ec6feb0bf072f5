"""The SQLite store: statuses kept apart, atomic batches, a versioned schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pttsync.core.identity import Identity
from pttsync.core.merkle import Level
from pttsync.core.oplog import OplogStatus, SignKind, cosign
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store import database as sqlite
from pttsync.core.store.sqlite import SCHEMA_VERSION
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.store.sqlitetree import SqliteTreeStorage
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.core.topic import TopicInfo, new_topic
from pttsync.errors import StoreError, UsageError

from .helpers import make_identity, make_oplog

T = parse_iso("2025-04-01T12:00Z")


def dump(store: Store) -> dict[str, list[Any]]:
    """Every row of every table, for exact before/after comparisons."""
    conn = store._conn
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}


def test_statuses_are_kept_apart(alice: Identity, topic: TopicInfo, store: Store) -> None:
    tid = topic.topic_id
    a, b, c = (make_oplog(alice, topic, T + i, key=f"k{i}") for i in range(3))
    store.write_batch(
        tid,
        [(a, OplogStatus.INTERNAL_PENDING), (b, OplogStatus.PENDING), (c, OplogStatus.VALID)],
    )
    assert store.count(tid) == 3
    assert [store.count(tid, s) for s in OplogStatus] == [1, 1, 1]
    assert [o.oplog_id for o in store.oplogs(tid, OplogStatus.PENDING)] == [b.oplog_id]
    assert [leaf.oplog_id for leaf in store.tree(tid).leaves(0, 2**62)] == [c.oplog_id]
    stored = store.get(tid, a.oplog_id)
    assert stored is not None and stored.status is OplogStatus.INTERNAL_PENDING
    assert stored.oplog == a


def test_listing_pending_and_counting_read_only_indexes(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    """Every sync round lists the pending oplogs (HandleFailedOplogs): with `status=1`
    alone SQLite left the partial index unused and scanned every oplog of the topic
    (2.5 s at 1M oplogs).  The work must not grow with the valid oplogs held."""
    tid = topic.topic_id
    store.write_batch(tid, [(make_oplog(alice, topic, T - 1, key="p"), OplogStatus.PENDING)])
    steps = []
    for n in (50, 500):
        valid = [make_oplog(alice, topic, T + i, key=f"v{n}-{i}") for i in range(n)]
        store.write_batch(tid, [(o, OplogStatus.VALID) for o in valid])
        count = [0]

        def tick(count: list[int] = count) -> int:
            count[0] += 1
            return 0

        store._conn.set_progress_handler(tick, 1)
        try:
            assert len(store.oplogs(tid, OplogStatus.PENDING)) == 1
            assert store.oplogs(tid, OplogStatus.INTERNAL_PENDING) == []
            # `pttsync status` counts on every call: from the tree and the index.
            assert store.count(tid, OplogStatus.VALID) == sum(range(50, n + 1, 450))
            assert store.count(tid, OplogStatus.PENDING) == 1
            assert store.count(tid) == store.count(tid, OplogStatus.VALID) + 1
        finally:
            store._conn.set_progress_handler(None, 1)
        steps.append(count[0])
    assert steps[1] < steps[0] * 1.5, steps  # 11x the valid oplogs, about the same work


def test_pending_becomes_valid_and_enters_the_tree(
    alice: Identity, bob: Identity, topic: TopicInfo, store: Store
) -> None:
    tid = topic.topic_id
    o = make_oplog(alice, topic, T)
    store.write_batch(tid, [(o, OplogStatus.PENDING)])
    empty = store.tree(tid).digest()
    signed = cosign(o, bob, SignKind.MASTER, T + HOUR_NS)
    result = store.write_batch(tid, [(signed, OplogStatus.VALID)])
    assert result.replaced == [o.oplog_id]
    assert store.count(tid, OplogStatus.PENDING) == 0
    leaves = store.tree(tid).leaves(0, 2**62)
    assert [(leaf.time, leaf.hash) for leaf in leaves] == [(T + HOUR_NS, signed.hash)]
    assert store.tree(tid).digest() != empty
    assert store.check(tid) == []


def test_a_new_copy_of_a_valid_oplog_moves_its_leaf(
    alice: Identity, bob: Identity, topic: TopicInfo, store: Store
) -> None:
    tid = topic.topic_id
    o = make_oplog(alice, topic, T)
    store.write_batch(tid, [(o, OplogStatus.VALID)])
    again = store.write_batch(tid, [(o, OplogStatus.VALID)])
    assert again.unchanged == [o.oplog_id]
    later = cosign(o, bob, SignKind.MASTER, T + 3 * HOUR_NS)
    store.write_batch(tid, [(later, OplogStatus.VALID)])
    assert [leaf.time for leaf in store.tree(tid).leaves(0, 2**62)] == [T + 3 * HOUR_NS]
    assert store.tree(tid).node_at(Level.HOUR, T) is None  # the old hour is gone
    assert store.check(tid) == []


def test_the_same_oplog_twice_in_one_batch(
    alice: Identity, bob: Identity, topic: TopicInfo, store: Store
) -> None:
    tid = topic.topic_id
    o = make_oplog(alice, topic, T)
    later = cosign(o, bob, SignKind.MASTER, T + 5)
    store.write_batch(tid, [(o, OplogStatus.VALID), (later, OplogStatus.VALID)])
    stored = store.get(tid, o.oplog_id)
    assert stored is not None and stored.oplog == later
    assert store.check(tid) == []
    store.write_batch(tid, [(o, OplogStatus.VALID)], deletes=[o.oplog_id])
    assert store.count(tid) == 0 and store.check(tid) == []


def test_delete(alice: Identity, topic: TopicInfo, store: Store) -> None:
    tid = topic.topic_id
    o = make_oplog(alice, topic, T)
    store.write_batch(tid, [(o, OplogStatus.VALID)])
    result = store.write_batch(tid, deletes=[o.oplog_id, b"\x00" * 32])
    assert result.deleted == [o.oplog_id]
    assert store.get(tid, o.oplog_id) is None
    assert store.tree(tid).level_nodes(Level.YEAR) == []


def test_a_batch_that_fails_halfway_leaves_the_store_as_it_was(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    tid = topic.topic_id
    good = [make_oplog(alice, topic, T + i * HOUR_NS, key=f"g{i}") for i in range(50)]
    store.write_batch(tid, [(o, OplogStatus.VALID) for o in good[:20]])
    before = dump(store)
    other = new_topic(alice, name="other", create_time=T, nonce=b"o" * 16)
    stranger = make_oplog(alice, other, T)
    batch = [(o, OplogStatus.VALID) for o in good[20:]]
    batch.insert(15, (stranger, OplogStatus.VALID))  # 15 good ones come before it
    with pytest.raises(UsageError, match="belongs to topic"):
        store.write_batch(tid, batch, deletes=[good[0].oplog_id])
    assert dump(store) == before


@pytest.mark.parametrize("fail_on", ["put_leaves", "put_nodes", "summaries", "delete_leaf"])
def test_a_failure_inside_the_tree_update_rolls_everything_back(
    alice: Identity, topic: TopicInfo, store: Store, monkeypatch: pytest.MonkeyPatch, fail_on: str
) -> None:
    tid = topic.topic_id
    first = [make_oplog(alice, topic, T + i * HOUR_NS, key=f"a{i}") for i in range(40)]
    store.write_batch(tid, [(o, OplogStatus.VALID) for o in first])
    before = dump(store)

    def boom(*args: object) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(SqliteTreeStorage, fail_on, boom)
    more = [make_oplog(alice, topic, T + i * 7, key=f"b{i}") for i in range(40)]
    with pytest.raises(OSError, match="disk on fire"):
        store.write_batch(tid, [(o, OplogStatus.VALID) for o in more], [first[3].oplog_id])
    monkeypatch.undo()
    assert dump(store) == before
    assert store.check(tid) == []


def test_unknown_topic(alice: Identity, store: Store) -> None:
    with pytest.raises(UsageError, match="not in this store"):
        store.write_batch(b"\x07" * 32, [])
    with pytest.raises(UsageError, match="not in this store"):
        store.topic(b"\x07" * 32)


def test_topics(alice: Identity, topic: TopicInfo, store: Store) -> None:
    assert store.topics() == [topic]
    with pytest.raises(UsageError, match="already"):
        store.add_topic(topic)
    second = new_topic(make_identity("bob"), name="b", create_time=T, nonce=b"b" * 16)
    store.add_topic(second)
    assert [t.topic_id for t in store.topics()] == [topic.topic_id, second.topic_id]


def test_oplogs_are_scoped_by_topic(alice: Identity, topic: TopicInfo, store: Store) -> None:
    second = new_topic(alice, name="b", create_time=T, nonce=b"b" * 16)
    store.add_topic(second)
    store.write_batch(topic.topic_id, [(make_oplog(alice, topic, T), OplogStatus.VALID)])
    assert store.count(second.topic_id) == 0
    assert store.tree(second.topic_id).level_nodes(Level.YEAR) == []


def test_find_by_prefix(alice: Identity, topic: TopicInfo, store: Store) -> None:
    o = make_oplog(alice, topic, T)
    store.write_batch(topic.topic_id, [(o, OplogStatus.VALID)])
    assert [s.oplog for s in store.find(topic.topic_id, o.oplog_id[:2].hex())] == [o]
    assert store.find(topic.topic_id, bytes([o.oplog_id[0] ^ 0xFF]).hex()) == []


def test_oplogs_since(alice: Identity, topic: TopicInfo, store: Store) -> None:
    ops = [make_oplog(alice, topic, T + i, key=f"p{i}") for i in range(5)]
    store.write_batch(topic.topic_id, [(o, OplogStatus.PENDING) for o in ops])
    got = store.oplogs(topic.topic_id, OplogStatus.PENDING, since=T + 2, limit=2)
    assert [o.create_time for o in got] == [T + 2, T + 3]


def test_a_damaged_stored_oplog_is_a_store_error_without_quarantine(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    o = make_oplog(alice, topic, T)
    store.write_batch(topic.topic_id, [(o, OplogStatus.VALID)])
    store._conn.execute("UPDATE oplogs SET body=?", (b"junk",))
    with pytest.raises(StoreError, match=f"stored oplog {o.oplog_id.hex()} is damaged on disk"):
        store.get(topic.topic_id, o.oplog_id)
    assert store.count(topic.topic_id) == 1  # nothing was changed


# -- files, WAL and the schema -----------------------------------------------------


def test_file_store_persists_in_wal_mode(alice: Identity, topic: TopicInfo, tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ops = [make_oplog(alice, topic, T + i * HOUR_NS, key=f"k{i}") for i in range(30)]
    with Store.open(path, create=True) as s:
        s.add_topic(topic)
        s.write_batch(topic.topic_id, [(o, OplogStatus.VALID) for o in ops])
        digest = s.tree(topic.topic_id).digest()
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.schema_version == SCHEMA_VERSION
    with Store.open(path) as s:
        assert s.tree(topic.topic_id).digest() == digest
        assert s.count(topic.topic_id) == 30
        assert s.check(topic.topic_id) == []


def test_open_refuses_missing_and_existing(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no store"):
        Store.open(tmp_path / "missing.sqlite3")
    Store.open(tmp_path / "s.sqlite3", create=True).close()
    with pytest.raises(StoreError, match="already exists"):
        Store.open(tmp_path / "s.sqlite3", create=True)


def test_open_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    Store.open(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer pttsync"):
        Store.open(path)


def test_open_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a pttsync store"):
        Store.open(other)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError, match="not a pttsync store"):
        Store.open(junk)


def test_synchronous_setting_is_checked(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        Store.open(tmp_path / "s.sqlite3", create=True, synchronous="sometimes")


def test_opening_a_foreign_database_does_not_change_it(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    with pytest.raises(StoreError):
        Store.open(other)
    assert other.read_bytes() == before
    assert not Path(str(other) + "-wal").exists()


def test_a_schema_2_store_is_migrated_to_3(
    tmp_path: Path, alice: Identity, topic: TopicInfo
) -> None:
    """A store written before the lifecycle opens with its oplogs indexed by object and op."""
    path = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(sqlite._SCHEMA + ";" + str(sqlite.MIGRATIONS[1]))
    conn.execute(f"PRAGMA application_id={sqlite.APPLICATION_ID}")
    conn.execute("PRAGMA user_version=2")
    conn.execute(
        "INSERT INTO topics (topic_id, name, creator, create_time, nonce) VALUES (?, ?, ?, ?, ?)",
        (topic.topic_id, topic.name, topic.creator, topic.create_time, topic.nonce),
    )
    o = make_oplog(alice, topic, T, "doc-1")
    conn.execute(
        "INSERT INTO oplogs (topic, oplog_id, status, update_time, hash, body)"
        " VALUES (1, ?, 3, ?, ?, ?)",
        (o.oplog_id, o.update_time, o.hash, encode_oplog(o)),
    )
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        assert store.topic(topic.topic_id) == topic  # default quorum and expiry
        assert [s.oplog for s in store.by_objects(topic.topic_id, [b"doc-1"])] == [o]
        assert store.object_ids(topic.topic_id, ops=(1, 3)) == [b"doc-1"]
        assert store.failed(topic.topic_id) == []
