"""Seed inputs for every decoder, built with pttsync's own encoders.

Everything is deterministic (keys from fixed seeds, fixed times) and built
once per process (`functools.cache`): a store file with two topics, its
governance, documents, pending and co-signed oplogs, failed records and sync
times; the messages of real sync rounds between two stores, plus a sample of
every sync and node message type.  seeds.py has the text and file formats.
"""

from __future__ import annotations

import functools
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pttsync.core.docop import OP_DELETE, OP_PUT, delete_payload, put_payload
from pttsync.core.lifecycle.governance import Role
from pttsync.core.lifecycle.replica import Replica, failed_record, found_topic
from pttsync.core.merkle import Leaf, Level
from pttsync.core.oplog import Oplog, SignKind, cosign, create_oplog
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.store.recordpack import RECORD
from pttsync.core.store.recordpack import records as rebuilt
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.sync.frames import encode_frame
from pttsync.core.sync.messages import (
    ChildRef,
    ForceSyncOplogByMerkle,
    ForceSyncOplogByMerkleAck,
    ForceSyncOplogByOplogAck,
    FpWant,
    Item,
    ListNode,
    Message,
    RejectCode,
    SyncOplog,
    SyncOplogAck,
    SyncOplogNewOplogs,
    SyncOplogNewOplogsAck,
    SyncOplogReject,
    SyncPendingOplog,
    SyncPendingOplogAck,
)
from pttsync.core.sync.msgcodec import encode_message
from pttsync.core.sync.receiver import Receiver
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import SyncConfig, SyncContext
from pttsync.core.timeutil import HOUR_NS, MAX_TIME, day_start, parse_iso
from pttsync.core.topic import MIN_EXPIRY, Quorum, new_topic
from pttsync.localsync import round_id
from pttsync.net.wire import (
    Bye,
    Hello,
    IHave,
    IWant,
    Peers,
    Prune,
    Push,
    Route,
)
from pttsync.net.wirecodec import encode_node_message

from ..helpers import make_identity

FOUNDER = make_identity("fuzz-founder")
MASTER2 = make_identity("fuzz-master-2")
MEMBER = make_identity("fuzz-member")
DEVICE = make_identity("fuzz-device")
T0 = parse_iso("2025-01-31T21:00:00Z")  # the writes cross an hour, a day and a month
NOW = T0 + 80 * HOUR_NS
TOPIC = new_topic(FOUNDER, name="fuzzing", create_time=T0, nonce=b"fuzz-nonce-00001")
TOPIC2 = new_topic(
    FOUNDER,
    name="quorum all",
    create_time=T0,
    nonce=b"fuzz-nonce-00002",
    quorum=Quorum.ALL,
    expiry=MIN_EXPIRY,
)
TID = TOPIC.topic_id
SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class StoreSeed:
    """A real store file (and the records it holds), as bytes."""

    file: bytes
    records: tuple[bytes, ...]


def _put(replica: Replica, key: str, value: object, now: int) -> Oplog:
    oplog, _ = replica.create(object_id=key.encode(), op=OP_PUT, value=put_payload(value), now=now)
    return oplog


def _fill(store: SqliteStore) -> list[Oplog]:
    """Two topics with governance, documents, pending and co-signed oplogs; the records."""
    rep = found_topic(store, FOUNDER, TOPIC)
    made = [rep.set_role(MEMBER.peer_id, Role.MEMBER, now=T0 + 1)[0]]
    for i in range(40):  # over 32 leaves in one hour: the hour is split into slices
        made.append(_put(rep, f"doc-{i % 7}", {"n": i, "s": "x" * (i % 5)}, T0 + 10 + i * SECOND))
    for k in range(1, 12):  # across days and the month's end
        made.append(
            _put(rep, f"day-{k}", [k, -k, k * 1.5, None, True, b"\x00\xff"], T0 + k * 5 * HOUR_NS)
        )
    head = made[-1]
    # fmt: off
    made.append(rep.create(object_id=head.object_id, op=OP_DELETE, value=delete_payload(),
                           now=T0 + 60 * HOUR_NS, prev_id=head.oplog_id)[0])
    member = Replica(store, TID, identity=MEMBER)
    made.append(member.set_device(DEVICE.peer_id, True, now=T0 + 61 * HOUR_NS)[0])
    write = create_oplog(MEMBER, topic_id=TID, object_id=b"member-doc", op=OP_PUT,
                         value=put_payload("by a member"), create_time=T0 + 62 * HOUR_NS)
    rep.commit([(write, rep.assess(write))], now=T0 + 62 * HOUR_NS)  # pending: needs a master
    signed = cosign(write, FOUNDER, SignKind.MASTER, T0 + 63 * HOUR_NS)
    device = create_oplog(DEVICE, topic_id=TID, object_id=b"device-doc", op=OP_PUT,
                          value=put_payload({"via": "device"}), create_time=T0 + 64 * HOUR_NS)
    device = cosign(cosign(device, MEMBER, SignKind.INTERNAL, T0 + 65 * HOUR_NS),
                    FOUNDER, SignKind.MASTER, T0 + 66 * HOUR_NS)
    # fmt: on
    made += [write, signed, device]
    made.append(rep.set_role(MASTER2.peer_id, Role.MASTER, now=T0 + 70 * HOUR_NS)[0])
    late = _put(rep, "late", "pending until the second master signs", T0 + 71 * HOUR_NS)
    made += [late, cosign(late, MASTER2, SignKind.MASTER, T0 + 72 * HOUR_NS)]
    store.write_batch(TID, failed=[failed_record(device, T0 + 73 * HOUR_NS, "expired")])
    store.set_sync_time(TID, MASTER2.peer_id, T0 + 50 * HOUR_NS)
    rep2 = found_topic(store, FOUNDER, TOPIC2)
    made += [_put(rep2, f"t2-{i}", i, T0 + i * HOUR_NS) for i in range(1, 4)]
    return [*(s.oplog for s in store.by_op_range(TID, 0x100, 0x101)), *made]


@functools.cache
def store_seed() -> StoreSeed:
    """The store file after `_fill`, closed (its WAL checkpointed), and its records."""
    with tempfile.TemporaryDirectory(prefix="pttsync-corpus-") as tmp:
        path = Path(tmp) / "store.sqlite3"
        store = SqliteStore.open(path, create=True)
        try:
            oplogs = _fill(store)
        finally:
            store.close()
        return StoreSeed(path.read_bytes(), tuple(encode_oplog(o) for o in oplogs))


# Semantic corruptions of a real store: each seed is the store with one of these applied
# (check constraints off), so the fuzzer starts from rows of the wrong type or range.
STORE_TWEAKS = (
    "UPDATE topics SET quorum=7",
    "UPDATE topics SET quorum='all'",
    "UPDATE topics SET name=x'ff00'",
    "UPDATE topics SET create_time='soon', expiry=-1",
    "UPDATE oplogs SET status=9 WHERE rowid%3=0",
    "UPDATE oplogs SET status='valid' WHERE rowid%5=0",
    "UPDATE oplogs SET body=x'a0' WHERE rowid%4=0",
    "UPDATE oplogs SET body='text' WHERE rowid%6=0",
    "UPDATE oplogs SET update_time=-5, hash=1 WHERE rowid%2=0",
    "UPDATE OR IGNORE leaves SET time='noon' WHERE hash<x'55'",
    "UPDATE OR IGNORE leaves SET time=9223372036854775807 WHERE hash<x'40'",
    "UPDATE OR IGNORE leaves SET time=-86400000000000 WHERE hash<x'33'",
    "UPDATE OR IGNORE leaves SET time=1.5, hash=x'' WHERE hash<x'25'",
    "UPDATE OR IGNORE nodes SET level=9 WHERE hash<x'55'",
    "UPDATE OR IGNORE nodes SET level=0, depth=-1 WHERE hash<x'40'",
    "UPDATE OR IGNORE nodes SET start_time='x', children=x'00' WHERE hash<x'33'",
    "UPDATE OR IGNORE nodes SET leaves=100000, end_time=start_time WHERE hash<x'80'",
    "UPDATE OR IGNORE nodes SET depth=40 WHERE level=2",
    "UPDATE failed SET reason=x'ff', op='put'",
    "UPDATE sync_times SET time='later'",
    "UPDATE sync_times SET time=2.5e300",
    "DELETE FROM leaves WHERE hash<x'80'",
    "DELETE FROM nodes WHERE level=4",
    "UPDATE OR IGNORE nodes SET leaves='x', end_time=x'' WHERE level=3 AND hash<x'80'",
    "INSERT INTO nodes SELECT topic, level, depth + 1, start_time, end_time, hash, children,"
    " leaves FROM nodes WHERE level=3",
    # The schema's text: a primary key that no longer aliases the rowid, text that is not UTF-8,
    # an index in the reverse of its declared order (its range scans return the wrong rows).
    "UPDATE sqlite_master SET sql=replace(sql, 'PRIMARY KEY', 'PRIMARX KEY') WHERE name='topics'",
    "UPDATE sqlite_master SET sql=replace(sql, 'NOT NULL', CAST(x'4e4f54204ee04c4c' AS TEXT))"
    " WHERE name='nodes'",
    "UPDATE oplogs SET object_id='doc-0' WHERE object_id=x'646f632d30';"
    " DROP INDEX oplogs_by_object;"
    " CREATE INDEX oplogs_by_object ON oplogs (topic, object_id DESC);"
    " UPDATE sqlite_master SET sql=replace(sql, ' DESC', '') WHERE name='oplogs_by_object'",
)


def _tweaked(file: bytes, sql: str, tmp: Path) -> bytes:
    path = tmp / "tweak.sqlite3"
    path.write_bytes(file)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA ignore_check_constraints=ON")
        conn.execute("PRAGMA writable_schema=ON")
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.executescript(sql)
    finally:
        conn.close()
    data = path.read_bytes()
    path.unlink()
    return data


LIFECYCLE_COLUMNS = (("topics", "quorum"), ("topics", "expiry"), ("oplogs", "object_id"),
                     ("oplogs", "op"), ("oplogs", "create_time"))  # fmt: skip
"""The columns schema 3 added (the 2 -> 3 migration fills them from the records)."""


def whole_bodies(conn: sqlite3.Connection) -> None:
    """Rewrite every stored record whole, as a store before schema 6 held it."""
    topics = dict(conn.execute("SELECT topic, topic_id FROM topics").fetchall())
    rows = conn.execute(f"SELECT topic, {RECORD} FROM oplogs").fetchall()
    conn.executemany(
        "UPDATE oplogs SET body=? WHERE topic=? AND oplog_id=?",
        [(rebuilt(topics[row[0]], [row[1:]])[0][1], row[0], row[1]) for row in rows],
    )


def _schema_2(file: bytes, tmp: Path) -> bytes:
    """The same store taken back to schema 2 (no lifecycle columns): a migration on open."""
    path = tmp / "v2.sqlite3"
    path.write_bytes(file)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        whole_bodies(conn)
        conn.execute("DROP INDEX oplogs_by_object")
        conn.execute("DROP INDEX governance_oplogs")
        conn.execute("DROP TABLE failed")
        conn.execute("DROP TABLE quarantine")
        conn.execute("ALTER TABLE oplogs DROP COLUMN crc")  # schema 5
        for table, column in LIFECYCLE_COLUMNS:
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("PRAGMA user_version=2")
    finally:
        conn.close()
    data = path.read_bytes()
    path.unlink()
    return data


@functools.cache
def store_files() -> list[bytes]:
    """The real store file, its schema-2 form, and its semantically corrupted copies."""
    file = store_seed().file
    with tempfile.TemporaryDirectory(prefix="pttsync-corpus-") as tmp:
        v2 = _schema_2(file, Path(tmp))
        # An old store whose rows cannot be written back: the migration must not loop.
        stuck = "CREATE TRIGGER stuck BEFORE UPDATE ON oplogs BEGIN SELECT RAISE(IGNORE); END"
        return [file, v2, _tweaked(v2, stuck, Path(tmp))] + [
            _tweaked(file, sql, Path(tmp)) for sql in STORE_TWEAKS
        ]


def records() -> list[bytes]:
    """Every record of the store seed: genesis, roles, device, documents, co-signed ones."""
    return list(store_seed().records)


# ---------------------------------------------------------------------------
# Messages.


def _capture(a: SqliteStore, b: SqliteStore, rounds: int) -> list[Message]:
    """Every message of `rounds` real sync rounds, a requesting from b (as sync_local runs)."""
    # Small chunks and budgets, so that short rounds use every kind of message.
    config = SyncConfig(list_chunk=4, list_budget=8, want_per_request=3, window_list_max=2,
                        leaf_diff_max=32, pipeline=2)  # fmt: skip
    requester = Requester(SyncContext(a, TID, config=config), b"B" * 32)
    receiver = Receiver(SyncContext(b, TID, config=config), b"A" * 32)
    seen: list[Message] = []
    for n in range(rounds):
        outgoing = requester.start(NOW, round_id(b"fuzz", n))
        while outgoing:
            seen += outgoing
            answers = [r for m in outgoing for r in receiver.receive(m, NOW)]
            seen += answers
            outgoing = [r for m in answers for r in requester.receive(m, NOW)]
    return seen


@functools.cache
def sync_messages() -> list[Message]:
    """Messages of real rounds both ways between diverged copies, and one of every type."""
    a, b = SqliteStore.memory(), SqliteStore.memory()
    try:
        _fill(a)
        rep = found_topic(b, FOUNDER, TOPIC)
        rep.set_role(MEMBER.peer_id, Role.MEMBER, now=T0 + 1)
        for i in range(12):
            _put(rep, f"other-{i}", i, T0 + i * 7 * HOUR_NS + 3)
        captured = _capture(a, b, 2) + _capture(b, a, 2)
    finally:
        a.close()
        b.close()
    return captured + samples()


def samples() -> list[Message]:
    """One or more of every sync message type, with real records and leaves."""
    recs = tuple(records()[:6])
    hdr = {"topic": TID, "round": round_id(b"sample", 0)}
    leaves = tuple(Leaf(T0 + i, bytes([i]) * 32, bytes([255 - i]) * 32) for i in range(5))
    nodes = (ListNode(Level.YEAR, T0, b"y" * 32), ListNode(Level.HOUR, T0 + HOUR_NS, b"h" * 32))
    d0 = day_start(T0)  # a bitmap names children of a real node
    refs = tuple(ChildRef(d0 + k * HOUR_NS, bytes([k]) * 32) for k in range(3))
    items = (
        Item(Level.DAY, 0, d0, b"d" * 32, False, refs),
        Item(Level.HOUR, 0, T0, b"h" * 32, True, tuple(x.hash for x in leaves)),
        Item(Level.SLICE, 3, T0, b"s" * 32, True, (leaves[0].hash,)),
        Item(Level.MONTH, 0, T0, None, False, ()),
        Item(Level.DAY, 0, d0, b"d" * 8, False, tuple(ChildRef(r.start, r.hash[:8]) for r in refs)),
        Item(Level.MONTH, 0, T0, b"m" * 8, True, tuple(x.hash[:8] for x in leaves)),
    )
    want_fps = (FpWant(Level.HOUR, 0, T0, 8, b"f" * 16),)
    marks = tuple((x.time, x.hash[:8]) for x in leaves)
    # fmt: off
    return [
        SyncOplog(**hdr, seq=0, to_sync_time=T0, list_digest=b"L" * 64,
                  window_digest=b"W" * 32, pending=True),
        SyncOplogAck(**hdr, seq=1, list_differs=0b10011, nodes=nodes, lo=(T0, b""),
                     hi=(MAX_TIME, b"\xff" * 32), leaves=marks,
                     more=True, pending=False, last=False),
        SyncOplogAck(**hdr, seq=1, list_differs=0, nodes=(), lo=None, hi=None, leaves=(),
                     more=False, pending=True, last=True),
        SyncOplogNewOplogs(**hdr, seq=2, oplogs=recs, want_fps=want_fps,
                           want_ranges=((T0, T0 + HOUR_NS, (T0, b"")),
                                        (T0 + HOUR_NS, MAX_TIME + 1, (T0 + HOUR_NS, b"k" * 32))),
                           cont=(T0, b"c" * 32)),
        SyncOplogNewOplogsAck(**hdr, seq=2, oplogs=recs, next=(T0 + 5, b"n" * 32), last=False),
        ForceSyncOplogByMerkle(**hdr, seq=4, items=items),
        ForceSyncOplogByMerkleAck(**hdr, seq=4, items=items[1:], last=True),
        ForceSyncOplogByOplogAck(**hdr, seq=5, oplogs=recs[:2], want_fps=want_fps,
                                 last=False),
        SyncPendingOplog(**hdr, seq=6, oplogs=recs[-2:]),
        SyncPendingOplogAck(**hdr, seq=6, oplogs=(), last=True),
        SyncOplogReject(**hdr, seq=0, code=RejectCode.BUSY, reason="serving 8 rounds already"),
        SyncOplogReject(**hdr, seq=9, code=RejectCode.PROTOCOL, reason="é" * 20),
    ]
    # fmt: on


@functools.cache
def message_seeds() -> list[bytes]:
    """The encoded sync messages (decode_message's seeds), without duplicates."""
    return list(dict.fromkeys(encode_message(m) for m in sync_messages()))


@functools.cache
def node_message_seeds() -> list[bytes]:
    """Every node message type with real credentials and records, then the sync messages."""
    recs = records()
    node = [
        Hello("127.0.0.1:7400", (TID, TOPIC2.topic_id), "pttsync/0.1", tuple(recs[:2])),
        Hello("[::1]:1", (), ""),
        Hello("", (TID,), "agent", ()),
        Push(TID, tuple(recs[2:5]), pending=False),
        Push(TID, tuple(recs[-3:]), pending=True),
        Peers(((MEMBER.peer_id, "[::1]:7400"), (DEVICE.peer_id, "example.org:65535"))),
        Peers(()),
        Bye("not a member of any topic this node serves"),
        Route(TID, 0, True),
        Route(TID, 16, False),
        IHave(TID, (decode_oplog(recs[2]).oplog_id, b"\x00" * 32)),
        IWant(TID, (decode_oplog(recs[3]).oplog_id,)),
        Prune(TID),
    ]
    return [encode_node_message(m) for m in node] + message_seeds()[::3]


@functools.cache
def frame_streams() -> list[bytes]:
    """Byte streams of several frames, as a peer sends them after the handshake."""
    msgs = node_message_seeds()
    streams = [b"".join(encode_frame(m) for m in msgs[i : i + 4]) for i in range(0, len(msgs), 4)]
    return [*streams, encode_frame(b""), encode_frame(msgs[0])[:3]]
