"""Helpers shared by the sync-session tests: stores, populations, copies, checks."""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pttsync.core.identity import Identity
from pttsync.core.lifecycle.governance import OP_ROLE, Role, role_payload
from pttsync.core.oplog import Oplog, OplogStatus, create_oplog
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.sync.receiver import Receiver
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import SyncConfig, SyncContext
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.core.topic import TopicInfo, new_topic
from pttsync.localsync import LocalSyncReport, round_id, sync_local
from pttsync.synthetic import populate

from .helpers import make_identity

NOW = parse_iso("2026-03-15T12:30:00Z")
"""The sync time every test uses (a real nanosecond time, never the wall clock)."""

PEER_A = b"A" * 32
PEER_B = b"B" * 32
WRITER = make_identity("sync-writer")
OTHER = make_identity("sync-other")
TOPIC = new_topic(WRITER, name="sync", create_time=parse_iso("2020-01-01"), nonce=b"s" * 16)
FOREIGN = new_topic(WRITER, name="elsewhere", create_time=parse_iso("2020-01-01"), nonce=b"f" * 16)
TID = TOPIC.topic_id
MEMBER = make_identity("sync-member")
"""A member of TOPIC (WRITER, its founder, is the only master): its writes are pending."""
ADMIT = create_oplog(
    WRITER,
    topic_id=TID,
    object_id=MEMBER.peer_id,
    op=OP_ROLE,
    value=role_payload(Role.MEMBER),
    create_time=parse_iso("2020-01-01T01:00Z"),
)
"""The valid ROLE oplog that makes MEMBER a member."""


def member_write(t: int, key: str = "doc", value: object = 1) -> Oplog:
    """A put by MEMBER at `t`: pending until WRITER co-signs it."""
    return create_oplog(
        MEMBER, topic_id=TID, object_id=key.encode(), op=1, value={"v": value}, create_time=t
    )


def new_store(*topics: TopicInfo) -> Store:
    """An in-memory store holding TOPIC (and any other topics given)."""
    store = Store.memory()
    for t in (TOPIC, *topics):
        store.add_topic(t)
    return store


def copy_store(store: Store) -> Store:
    """A fresh in-memory copy of `store` (SQLite's online backup)."""
    copy = Store.memory()
    store._conn.backup(copy._conn)
    return copy


def all_oplogs(store: Store, topic_id: bytes = TID) -> dict[bytes, Oplog]:
    """Every valid oplog of the topic, by ID."""
    return {o.oplog_id: o for o in store.oplogs(topic_id, OplogStatus.VALID, limit=1 << 30)}


def ids(store: Store, topic_id: bytes = TID) -> set[bytes]:
    return set(all_oplogs(store, topic_id))


def digest(store: Store, topic_id: bytes = TID) -> bytes:
    return store.tree(topic_id).digest()


def put(store: Store, oplogs: Iterable[Oplog]) -> None:
    store.write_batch(TID, [(o, OplogStatus.VALID) for o in oplogs])


@functools.cache
def _gen(
    count: int, start: int, end: int, seed: int, identity: Identity, topic: TopicInfo
) -> tuple[Oplog, ...]:
    with Store.memory() as scratch:
        scratch.add_topic(topic)
        populate(scratch, identity, topic.topic_id, count=count, start=start, end=end, seed=seed)
        found = all_oplogs(scratch, topic.topic_id).values()
        return tuple(sorted(found, key=lambda o: o.oplog_id))


def gen(
    count: int,
    start: int,
    end: int,
    seed: int,
    identity: Identity = WRITER,
    topic: TopicInfo = TOPIC,
) -> list[Oplog]:
    """`count` signed synthetic oplogs with times in [start, end) (deterministic, cached)."""
    return list(_gen(count, start, end, seed, identity, topic))


def split_sets(
    pool: Sequence[Oplog], rng: random.Random, p_a: float, p_b: float, p_both: float
) -> tuple[list[Oplog], list[Oplog]]:
    """Deal `pool` out: each oplog to A only, B only, both, or (the rest) nowhere."""
    a: list[Oplog] = []
    b: list[Oplog] = []
    for o in pool:
        r = rng.random()
        if r < p_both:
            a.append(o)
            b.append(o)
        elif r < p_both + p_a:
            a.append(o)
        elif r < p_both + p_a + p_b:
            b.append(o)
    return a, b


def pair(a: Iterable[Oplog], b: Iterable[Oplog]) -> tuple[Store, Store]:
    sa, sb = new_store(), new_store()
    put(sa, a)
    put(sb, b)
    return sa, sb


def sync(
    sa: Store, sb: Store, *, config: SyncConfig | None = None, max_rounds: int = 4
) -> LocalSyncReport:
    return sync_local(
        sa, sb, TID, peer_a=PEER_A, peer_b=PEER_B, now=NOW, config=config, max_rounds=max_rounds
    )


@dataclass
class Outcome:
    report: LocalSyncReport
    union: set[bytes]


def sync_and_check(sa: Store, sb: Store, *, max_rounds: int = 4) -> Outcome:
    """Sync A with B, then assert they converged onto the union, consistently."""
    union = ids(sa) | ids(sb)
    report = sync(sa, sb, max_rounds=max_rounds)
    assert report.converged, report.as_json()
    assert digest(sa) == digest(sb)
    assert sa.check(TID) == []
    assert sb.check(TID) == []
    assert ids(sa) == union
    assert ids(sb) == union
    assert report.rejected == 0
    return Outcome(report, union)


def pair_sessions(
    sa: Store, sb: Store, config: SyncConfig | None = None, *, signers: bool = False
) -> tuple[Requester, Receiver]:
    """A requester on A and a receiver on B, as sync_local makes them.

    With `signers`, A is MEMBER's device and B is WRITER's (the master), so
    postsync routes A's pending writes to B, which co-signs them.
    """
    ia, ib = (MEMBER, WRITER) if signers else (None, None)
    peer_a, peer_b = (MEMBER.peer_id, WRITER.peer_id) if signers else (PEER_A, PEER_B)
    req = Requester(SyncContext(sa, TID, config=config, identity=ia), peer_b)
    rcv = Receiver(SyncContext(sb, TID, config=config, identity=ib), peer_a)
    return req, rcv


def rid(n: int) -> bytes:
    return round_id(b"test", n)


RECENT_START = NOW - 20 * HOUR_NS
"""Inside the window of a first sync (the last day before NOW, less the offset)."""
OLD_START = parse_iso("2021-02-01")
OLD_END = parse_iso("2024-11-01")
