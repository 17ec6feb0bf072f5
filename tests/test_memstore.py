"""MemoryStore against the SQLite store: random histories, every query compared."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pttsync.core.identity import Identity
from pttsync.core.merkle import Level
from pttsync.core.oplog import Oplog, OplogStatus, SignKind, cosign, create_oplog
from pttsync.core.store import FailedOplog, Store, chunks
from pttsync.core.store.memory import MemoryStore
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.core.topic import TopicInfo, new_topic
from pttsync.errors import UsageError

from .helpers import make_identity

T = parse_iso("2025-04-01T12:00Z")
STATUSES = list(OplogStatus)


def oplog(who: Identity, topic: TopicInfo, t: int, key: bytes, op: int) -> Oplog:
    return create_oplog(
        who, topic_id=topic.topic_id, object_id=key, op=op, value={"v": t}, create_time=t
    )


def snapshot(store: Store, topic: TopicInfo, probe: list[bytes]) -> dict[str, Any]:
    """Every read a store offers, on one topic."""
    tid = topic.topic_id
    tree = store.tree(tid)

    def pairs(items: list[Any]) -> list[tuple[bytes, int, bytes]]:
        return [(s.oplog.oplog_id, int(s.status), s.oplog.hash) for s in items]

    return {
        "count": [store.count(tid)] + [store.count(tid, s) for s in STATUSES],
        "has_pending": store.has_pending(tid),
        "oplogs": {
            s.name: [o.oplog_id for o in store.oplogs(tid, s, since=T + 3, limit=7)]
            for s in STATUSES
        },
        "all_valid": [o.oplog_id for o in store.oplogs(tid, OplogStatus.VALID, limit=10**6)],
        "get": [pairs([g]) if (g := store.get(tid, k)) else None for k in probe],
        "existing": sorted(pairs(list(store.existing(tid, probe).values()))),
        "bodies": store.bodies(tid, probe),
        "by_objects": sorted(pairs(store.by_objects(tid, [b"k1", b"k3", b"nope"]))),
        "by_op_range": sorted(pairs(store.by_op_range(tid, 2, 0x200))),
        "since": pairs(list(store.since(tid, T + 5, chunk=3))),
        "object_ids": [
            store.object_ids(tid, ops=(1, 3), after=b"k2", limit=3, inclusive=inc)
            for inc in (False, True)
        ]
        + [store.object_ids(tid, ops=(0x100, 0x200))],
        "failed": store.failed(tid, limit=5),
        "has_failed": [store.has_failed(tid, k) for k in probe],
        "leaves_from": store.leaves_from(tid, (T + 2, b""), T + 40 * HOUR_NS, 6),
        "digest": tree.digest(),
        "levels": [tree.level_nodes(level) for level in (Level.HOUR, Level.DAY, Level.YEAR)],
        "tree_list": tree.tree_list(T + 30 * HOUR_NS),
        "find": pairs(store.find(tid, probe[0].hex()[:3], limit=3)) if probe else [],
        "sync_time": store.sync_time(tid, b"p" * 32),
        "check": store.check(tid),
    }


def fingerprint_of(store: MemoryStore, topic: TopicInfo) -> int:
    """What `MemoryStore.fingerprint` keeps, worked out from the leaves."""
    leaves = store.tree(topic.topic_id).leaves(0, 2**63 - 1)
    return sum(int.from_bytes(leaf.hash) for leaf in leaves)


def random_step(
    rng: random.Random, people: list[Identity], topic: TopicInfo, made: list[Oplog], step: int,
    sql: SqliteStore, mem: MemoryStore,
) -> None:  # fmt: skip
    """One random batch written to both stores, with every read compared now and then."""
    puts: list[tuple[Oplog, OplogStatus]] = []
    for _ in range(rng.randint(0, 5)):
        if made and rng.random() < 0.4:  # a new copy of an earlier oplog
            base = rng.choice(made)
            t = base.create_time + rng.randint(0, 3 * HOUR_NS)
            o = cosign(base, rng.choice(people), SignKind.MASTER, t)
        else:  # many in one hour: the hour splits into slices
            t = T + rng.choice([rng.randint(0, 50), rng.randint(0, 40 * HOUR_NS)])
            key = f"k{rng.randint(0, 5)}".encode()
            op = rng.choice([1, 2, 0x101])
            o = oplog(rng.choice(people), topic, t, key, op)
            made.append(o)
        puts.append((o, rng.choice(STATUSES)))
    deletes = [rng.choice(made).oplog_id for _ in range(rng.randint(0, 1))] if made else []
    failed = []
    if made and rng.random() < 0.3:
        gone = rng.choice(made)
        failed.append(
            FailedOplog(gone.oplog_id, gone.object_id, gone.op, gone.creator, T, T + step, "x")
        )
    results = [s.write_batch(topic.topic_id, puts, deletes, failed) for s in (sql, mem)]
    assert results[0] == results[1], f"step {step}"
    assert mem.fingerprint(topic.topic_id) == fingerprint_of(mem, topic), f"step {step}"
    if rng.random() < 0.2:
        when = rng.randint(0, 100)
        for s in (sql, mem):
            s.set_sync_time(topic.topic_id, b"p" * 32, when)
    if rng.random() < 0.3:  # in between, the memory store's tree changes pile up unread
        probe = [o.oplog_id for o in rng.sample(made, min(6, len(made)))]
        assert snapshot(sql, topic, probe) == snapshot(mem, topic, probe), f"step {step}"


@pytest.mark.parametrize("seed", range(10))
def test_random_histories_read_the_same_from_both_stores(seed: int) -> None:
    rng = random.Random(seed)
    people = [make_identity(n) for n in ("a", "b", "c")]
    topic = new_topic(people[0], name="t", create_time=T - 10, nonce=b"m" * 16)
    sql, mem = SqliteStore.memory(), MemoryStore()
    for s in (sql, mem):
        s.add_topic(topic)
    made: list[Oplog] = []
    for step in range(40):
        random_step(rng, people, topic, made, step, sql, mem)
    assert mem.check(topic.topic_id) == []
    copy = mem.copy()
    probe = [o.oplog_id for o in made[:6]]
    assert snapshot(copy, topic, probe) == snapshot(mem, topic, probe)
    copy.write_batch(
        topic.topic_id, [(oplog(people[0], topic, T + 99, b"new", 1), OplogStatus.VALID)]
    )
    assert copy.tree(topic.topic_id).digest() != mem.tree(topic.topic_id).digest()  # independent
    # The fingerprints part with the digests, and each still sums its own leaves.
    assert copy.fingerprint(topic.topic_id) != mem.fingerprint(topic.topic_id)
    assert mem.fingerprint(topic.topic_id) == fingerprint_of(mem, topic)
    assert copy.fingerprint(topic.topic_id) == fingerprint_of(copy, topic)


def test_errors_match(alice: Identity, topic: TopicInfo) -> None:
    mem = MemoryStore()
    with pytest.raises(UsageError, match="not in this store"):
        mem.count(topic.topic_id)
    mem.add_topic(topic)
    with pytest.raises(UsageError, match="already in this store"):
        mem.add_topic(topic)
    other = new_topic(alice, name="other", create_time=T, nonce=b"o" * 16)
    stray = oplog(alice, other, T, b"k", 1)
    with pytest.raises(UsageError, match="belongs to topic"):
        mem.write_batch(topic.topic_id, [(stray, OplogStatus.VALID)])
    assert mem.count(topic.topic_id) == 0  # nothing was written
    with pytest.raises(UsageError, match="hex"):
        mem.find(topic.topic_id, "xyz")
    assert mem.topics() == [topic]


def sql_copy(store: SqliteStore) -> SqliteStore:
    copy = SqliteStore.memory()
    store._conn.backup(copy._conn)
    return copy


@pytest.mark.parametrize("seed", range(8))
def test_copies_share_what_they_held_and_change_apart(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copies taken along a history (and copies of copies) go on with histories of
    their own: each still reads as SQLite does with the same history, and none sees
    another's writes, whichever side of a copy writes (overlay.py, chunks.py)."""
    monkeypatch.setattr(chunks, "CHUNK", 2)  # chunks split and empty within the history
    rng = random.Random(seed)
    people = [make_identity(n) for n in ("a", "b", "c")]
    topic = new_topic(people[0], name="t", create_time=T - 10, nonce=b"m" * 16)
    sql, mem = SqliteStore.memory(), MemoryStore()
    sql.add_topic(topic)
    mem.add_topic(topic)
    made: list[Oplog] = []
    pairs = [(sql, mem)]
    for step in range(60):
        if step % 12 == 5:  # a copy of a random store so far, template or copy
            s, m = rng.choice(pairs)
            pairs.append((sql_copy(s), m.copy()))
        s, m = rng.choice(pairs)
        random_step(rng, people, topic, made, step, s, m)
    probe = [o.oplog_id for o in made[:8]]
    for s, m in pairs:
        assert m.check(topic.topic_id) == []
        assert snapshot(s, topic, probe) == snapshot(m, topic, probe)
    # Stores with one range key hold the same copies in that range (replica.py's
    # shared folds rest on it).
    for lo, hi in ((2, 0x200), (0x100, 0x200), (0, 2)):
        held: dict[object, object] = {}
        for _, m in pairs:
            key = m.range_key(topic.topic_id, lo, hi)
            found = sorted(
                (x.oplog.oplog_id, x.oplog.hash, x.status)
                for x in m.by_op_range(topic.topic_id, lo, hi)
            )
            if key is not None:
                assert held.setdefault(key, found) == found


def test_stores_of_a_process_share_a_valid_record_and_its_leaf(topic: TopicInfo) -> None:
    """Ten thousand simulated peers hold the same records: one StoredOplog and one leaf
    each (memory.py, memtree.py), not one a store; a pending copy is each store's own."""
    who = make_identity("a")
    valid, pending = oplog(who, topic, T + 1, b"k", 1), oplog(who, topic, T + 2, b"k", 2)
    stores = [MemoryStore(), MemoryStore()]
    for s in stores:
        s.add_topic(topic)
        s.write_batch(topic.topic_id, [(valid, OplogStatus.VALID), (pending, OplogStatus.PENDING)])
    a, b = (s.get(topic.topic_id, valid.oplog_id) for s in stores)
    assert a is not None and a is b
    la, lb = (s.leaves_from(topic.topic_id, (0, b""), T + HOUR_NS, 9) for s in stores)
    assert la == lb and la[0] is lb[0]
    pa, pb = (s.get(topic.topic_id, pending.oplog_id) for s in stores)
    assert pa == pb and pa is not pb


def test_copies_share_a_range_key_until_one_changes_that_range(topic: TopicInfo) -> None:
    tid, who = topic.topic_id, make_identity("a")
    template = MemoryStore()
    template.add_topic(topic)
    roles = [(oplog(who, topic, T + i, b"k%d" % i, 0x100), OplogStatus.VALID) for i in range(3)]
    template.write_batch(tid, roles)
    a, b = template.copy(), template.copy()
    key = a.range_key(tid, 0x100, 0x200)
    assert key is not None and key == b.range_key(tid, 0x100, 0x200)
    a.write_batch(tid, [(oplog(who, topic, T + 9, b"doc", 1), OplogStatus.VALID)])
    assert a.range_key(tid, 0x100, 0x200) == key  # a change outside the range
    b.write_batch(tid, [(oplog(who, topic, T + 9, b"k9", 0x100), OplogStatus.VALID)])
    assert b.range_key(tid, 0x100, 0x200) != key
    assert SqliteStore.memory().range_key(tid, 0x100, 0x200) is None


def test_replicas_on_copies_of_one_template_share_their_fold() -> None:
    """A simulation's peers open their replicas on copies of one template holding a
    ROLE oplog per member: folded once, not once a peer (24 ms each at 10,000)."""
    from pttsync.core.lifecycle.governance import Role  # noqa: PLC0415 - two tests
    from pttsync.core.lifecycle.replica import Replica  # noqa: PLC0415
    from pttsync.sim.setup import identity_of, make_topic  # noqa: PLC0415

    made = make_topic(5, peers=8, masters=1, admitted=8, expiry_s=3600.0, store_kind="memory")
    stores = [made.store_for(admitted=True) for _ in range(3)]
    first, second = (Replica(s, made.topic_id) for s in stores[:2])
    assert first.fold is second.fold
    founder = Replica(stores[2], made.topic_id, identity=made.identities[0])
    newcomer = identity_of(5, 99).peer_id
    founder.set_role(newcomer, Role.MEMBER, now=founder.fold.last[0] + 1)
    again = Replica(stores[2], made.topic_id)  # its own governance now: its own fold
    assert again.fold is not first.fold
    later = founder.fold.last[0] + 2
    assert again.fold.governance.role_at(newcomer, later) is Role.MEMBER
    assert first.fold.governance.role_at(newcomer, later) is not Role.MEMBER
    assert Replica(made.store_for(admitted=True), made.topic_id).fold is first.fold


def test_a_folds_credentials_are_a_peers_own_oplogs_and_every_promotion() -> None:
    """Fold.credentials answers from an index made once per fold; it gives what the
    scan every node's Hello made before gave."""
    from pttsync.core.lifecycle.governance import OP_GENESIS, OP_ROLE, Role, decode_role  # noqa: PLC0415
    from pttsync.core.lifecycle.replica import Replica  # noqa: PLC0415
    from pttsync.sim.setup import make_topic  # noqa: PLC0415

    made = make_topic(5, peers=9, masters=3, admitted=9, expiry_s=3600.0, store_kind="memory")
    fold = Replica(made.store_for(admitted=True), made.topic_id).fold
    for who in made.identities:
        me = who.peer_id
        scan = sorted(
            (
                o for o in fold.oplogs.values()
                if o.op != OP_GENESIS
                and (o.object_id == me or (o.op == OP_ROLE and decode_role(o)[1] is Role.MASTER))
            ),
            key=lambda o: (o.create_time, o.oplog_id),
        )  # fmt: skip
        assert fold.credentials(me) == scan and scan
