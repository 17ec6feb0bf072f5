"""The Merkle tree: exact parents, order independence, the tree list, bounded insert cost."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import random
from collections.abc import Sequence
from typing import Any

import cbor2
import pytest

from pttsync.core import merkle
from pttsync.core.identity import Identity
from pttsync.core.merkle import FANOUT, SPLIT_THRESHOLD, Leaf, Level, MerkleNode
from pttsync.core.oplog import Oplog, OplogStatus
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import HOUR_NS, MAX_TIME, NS_PER_SECOND, parse_iso, to_iso
from pttsync.core.topic import TopicInfo

from .helpers import make_oplog

UTC = dt.UTC


# ---------------------------------------------------------------------------
# An independent reference: the tree as the docs define it, built naively.


def _ref_hash(level: int, start: int, end: int, hashes: list[bytes]) -> bytes:
    body = cbor2.dumps(["pttsync/node/1", level, start, end, hashes], canonical=True)
    return hashlib.sha256(body).digest()


def _ns(d: dt.datetime) -> int:
    return int(d.timestamp()) * NS_PER_SECOND


def _calendar(level: Level, t: int) -> tuple[int, int]:
    d = dt.datetime.fromtimestamp(t // NS_PER_SECOND, UTC)
    if level is Level.HOUR:
        s = d.replace(minute=0, second=0)
        return _ns(s), _ns(s) + HOUR_NS
    if level is Level.DAY:
        s = d.replace(hour=0, minute=0, second=0)
        return _ns(s), _ns(s + dt.timedelta(days=1))
    if level is Level.MONTH:
        s = d.replace(day=1, hour=0, minute=0, second=0)
        e = s.replace(year=s.year + 1, month=1) if s.month == 12 else s.replace(month=s.month + 1)
        return _ns(s), _ns(e)
    s = d.replace(month=1, day=1, hour=0, minute=0, second=0)
    return _ns(s), _ns(s.replace(year=s.year + 1))


def reference_tree(leaves: Sequence[Leaf]) -> dict[tuple[int, int, int], tuple[Any, ...]]:
    """{(level, depth, start): (end, hash, children, leaves)} for every node."""
    out: dict[tuple[int, int, int], tuple[Any, ...]] = {}
    ordered = sorted(leaves, key=lambda leaf: (leaf.time, leaf.oplog_id))

    def bucket(level: Level, depth: int, s: int, e: int, ls: list[Leaf]) -> bytes:
        if len(ls) > SPLIT_THRESHOLD and e - s >= FANOUT:
            kids = []
            for i in range(FANOUT):
                cs, ce = s + (e - s) * i // FANOUT, s + (e - s) * (i + 1) // FANOUT
                sub = [leaf for leaf in ls if cs <= leaf.time < ce]
                if sub:
                    kids.append(bucket(Level.SLICE, depth + 1, cs, ce, sub))
            h = _ref_hash(level, s, e, kids)
            out[(level, depth, s)] = (e, h, len(kids), len(ls))
        else:
            h = _ref_hash(level, s, e, [leaf.hash for leaf in ls])
            out[(level, depth, s)] = (e, h, len(ls), len(ls))
        return h

    hours: dict[tuple[int, int], list[Leaf]] = {}
    for leaf in ordered:
        hours.setdefault(_calendar(Level.HOUR, leaf.time), []).append(leaf)
    for (s, e), ls in hours.items():
        bucket(Level.HOUR, 0, s, e, ls)
    for level in (Level.DAY, Level.MONTH, Level.YEAR):
        child = Level(level - 1)
        groups: dict[tuple[int, int], list[tuple[int, Any]]] = {}
        for (lvl, _, s), v in sorted(out.items()):
            if lvl == child:
                groups.setdefault(_calendar(level, s), []).append((s, v))
        for (s, e), kids in groups.items():
            kids.sort()
            h = _ref_hash(level, s, e, [v[1] for _, v in kids])
            out[(level, 0, s)] = (e, h, len(kids), sum(v[3] for _, v in kids))
    return out


def stored_tree(store: Store, topic: TopicInfo) -> dict[tuple[int, int, int], tuple[Any, ...]]:
    """Every stored node of the topic, read straight from the table."""
    rows = store._conn.execute(
        "SELECT level, depth, start_time, end_time, hash, children, leaves FROM nodes"
        " WHERE topic=(SELECT topic FROM topics WHERE topic_id=?)",
        (topic.topic_id,),
    )
    return {(r[0], r[1], r[2]): tuple(r[3:]) for r in rows}


def leaves_of(oplogs: Sequence[Oplog]) -> list[Leaf]:
    return [Leaf(o.update_time, o.oplog_id, o.hash) for o in oplogs]


def put(store: Store, topic: TopicInfo, oplogs: Sequence[Oplog]) -> None:
    store.write_batch(topic.topic_id, [(o, OplogStatus.VALID) for o in oplogs])


def spread(identity: Identity, topic: TopicInfo, times: Sequence[int]) -> list[Oplog]:
    return [make_oplog(identity, topic, t, key=f"k{i}", value=i) for i, t in enumerate(times)]


def mixed_times(rng: random.Random, n: int) -> list[int]:
    """Times that exercise every level: sparse years, a dense hour, a dense microsecond."""
    base = parse_iso("2024-06-15T10:00Z")
    times = [rng.randrange(parse_iso("2019-01-01"), parse_iso("2026-01-01")) for _ in range(n)]
    times += [base + rng.randrange(HOUR_NS) for _ in range(n)]  # a hot hour: slices
    times += [base + 7 * NS_PER_SECOND + rng.randrange(2000) for _ in range(n)]  # deep slices
    times += [parse_iso("2025-01-01"), parse_iso("2024-12-31T23:59:59.999999999Z"), 0]
    return times


# ---------------------------------------------------------------------------


def test_tree_list_cascade(alice: Identity, topic: TopicInfo, store: Store) -> None:
    """go-pttai's unit test: two oplogs at 2009-02-13 23:31 UTC."""
    t = parse_iso("2009-02-13T23:31:30Z")
    put(store, topic, spread(alice, topic, [t, t + NS_PER_SECOND]))
    tree = store.tree(topic.topic_id)

    def listed(at: int) -> list[tuple[str, str]]:
        return [(n.level.name, to_iso(n.start)) for n in tree.tree_list(at)]

    assert listed(t + HOUR_NS) == [("DAY", "2009-02-13T00:00:00Z")]
    assert listed(t + 32 * 24 * HOUR_NS) == [("MONTH", "2009-02-01T00:00:00Z")]
    assert listed(t + 370 * 24 * HOUR_NS) == [("YEAR", "2009-01-01T00:00:00Z")]
    assert listed(t) == []  # the oplogs' own hour is not complete yet
    assert sum(n.leaves for n in tree.tree_list(t + 370 * 24 * HOUR_NS)) == 2


def test_tree_list_covers_everything_before_the_hour(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    rng = random.Random(5)
    oplogs = spread(alice, topic, mixed_times(rng, 60))
    put(store, topic, oplogs)
    tree = store.tree(topic.topic_id)
    for at in [
        parse_iso("2024-06-15T10:30Z"),
        parse_iso("2024-06-15T11:00Z"),
        parse_iso("2025-03-01T00:00Z"),
        parse_iso("2030-01-01"),
    ]:
        nodes = tree.tree_list(at)
        assert [n.start for n in nodes] == sorted(n.start for n in nodes)
        boundary = at - at % HOUR_NS
        assert sum(n.leaves for n in nodes) == sum(1 for o in oplogs if o.update_time < boundary)
        for a, b in itertools.pairwise(nodes):
            assert a.end <= b.start  # no overlap


@pytest.mark.parametrize("seed", range(4))
def test_incremental_tree_equals_reference(
    alice: Identity, topic: TopicInfo, store: Store, seed: int
) -> None:
    rng = random.Random(seed)
    oplogs = spread(alice, topic, mixed_times(rng, 50))
    rng.shuffle(oplogs)
    present: list[Oplog] = []
    while oplogs:  # random batch sizes, with deletes mixed in
        batch = [oplogs.pop() for _ in range(min(len(oplogs), rng.randrange(1, 40)))]
        gone = rng.sample(present, min(len(present), rng.randrange(0, 8)))
        store.write_batch(
            topic.topic_id, [(o, OplogStatus.VALID) for o in batch], [o.oplog_id for o in gone]
        )
        present = [o for o in present if o not in gone] + batch
        assert stored_tree(store, topic) == reference_tree(leaves_of(present))
    assert store.check(topic.topic_id) == []


def test_insert_order_does_not_matter(alice: Identity, topic: TopicInfo) -> None:
    rng = random.Random(1)
    oplogs = spread(alice, topic, mixed_times(rng, 40))
    results = []
    for order in range(4):
        shuffled = oplogs[:]
        random.Random(order).shuffle(shuffled)
        with Store.memory() as s:
            s.add_topic(topic)
            if order == 0:
                put(s, topic, shuffled)  # one batch
            else:
                for i in range(0, len(shuffled), order * 7):  # many batches
                    put(s, topic, shuffled[i : i + order * 7])
            results.append((stored_tree(s, topic), s.tree(topic.topic_id).digest()))
    assert all(r == results[0] for r in results)


def test_deleting_an_oplog_restores_the_previous_hashes(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    rng = random.Random(2)
    put(store, topic, spread(alice, topic, mixed_times(rng, 40)))
    before, digest = stored_tree(store, topic), store.tree(topic.topic_id).digest()
    extra = [make_oplog(alice, topic, t, key="extra") for t in mixed_times(rng, 3)]
    for o in extra:
        put(store, topic, [o])
        assert store.tree(topic.topic_id).digest() != digest
        store.write_batch(topic.topic_id, deletes=[o.oplog_id])
        assert stored_tree(store, topic) == before
        assert store.tree(topic.topic_id).digest() == digest


def test_crossing_the_split_threshold_both_ways(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    hour = parse_iso("2025-05-05T05:00Z")
    oplogs = spread(alice, topic, [hour + i * 1000 for i in range(SPLIT_THRESHOLD + 1)])
    tree = store.tree(topic.topic_id)
    put(store, topic, oplogs[:-1])
    node = tree.node_at(Level.HOUR, hour)
    assert node is not None and node.children == SPLIT_THRESHOLD  # leaf form
    put(store, topic, oplogs[-1:])
    node = tree.node_at(Level.HOUR, hour)
    assert node is not None and node.leaves == SPLIT_THRESHOLD + 1
    slices = tree.children(node)
    assert slices and all(isinstance(s, MerkleNode) and s.level is Level.SLICE for s in slices)
    store.write_batch(topic.topic_id, deletes=[oplogs[0].oplog_id])
    node = tree.node_at(Level.HOUR, hour)
    assert node is not None and node.children == SPLIT_THRESHOLD
    assert not [key for key in stored_tree(store, topic) if key[0] == Level.SLICE]
    assert store.check(topic.topic_id) == []


def test_children_combine_to_their_parent(alice: Identity, topic: TopicInfo, store: Store) -> None:
    rng = random.Random(3)
    put(store, topic, spread(alice, topic, mixed_times(rng, 80)))
    tree = store.tree(topic.topic_id)
    stack: list[MerkleNode] = tree.level_nodes(Level.YEAR)
    seen = 0
    while stack:
        node = stack.pop()
        kids = tree.children(node)
        assert len(kids) == node.children <= max(SPLIT_THRESHOLD, 31)
        assert (
            merkle.node_hash(node.level, node.start, node.end, [k.hash for k in kids]) == node.hash
        )
        nested = [k for k in kids if isinstance(k, MerkleNode)]
        assert sum(k.leaves for k in nested) == (node.leaves if nested else 0)
        stack.extend(nested)
        seen += 1
    assert seen > 20


def test_leaves_in_a_range(alice: Identity, topic: TopicInfo, store: Store) -> None:
    times = [parse_iso("2025-01-01T00:00Z") + i * HOUR_NS // 3 for i in range(30)]
    oplogs = spread(alice, topic, times)
    put(store, topic, oplogs)
    start, end = times[5], times[17]
    got = store.tree(topic.topic_id).leaves(start, end)
    assert [leaf.time for leaf in got] == times[5:17]
    assert [leaf.key for leaf in got] == sorted(leaf.key for leaf in got)


def test_digest_tracks_content(alice: Identity, topic: TopicInfo, store: Store) -> None:
    tree = store.tree(topic.topic_id)
    empty = tree.digest()
    assert empty == merkle.topic_digest(topic.topic_id, [])
    put(store, topic, spread(alice, topic, [parse_iso("2025-02-02")]))
    assert tree.digest() != empty


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("UPDATE nodes SET hash=zeroblob(32) WHERE level=2", "SLICE node"),
        ("UPDATE nodes SET leaves=leaves+1 WHERE level=3", "HOUR node"),
        ("DELETE FROM nodes WHERE level=4", "missing DAY node"),
        ("UPDATE nodes SET children=0 WHERE level=5", "MONTH node"),
        ("DELETE FROM nodes WHERE level=6", "missing YEAR node"),
        (
            "INSERT INTO nodes SELECT topic, 2, 9, start_time, end_time, hash, 1, 1 FROM nodes"
            " WHERE level=3 LIMIT 1",
            "stray SLICE node",
        ),
        (
            "DELETE FROM leaves WHERE (topic, time, oplog_id) IN"
            " (SELECT topic, time, oplog_id FROM leaves LIMIT 1)",
            "has no matching leaf",
        ),
    ],
)
def test_check_finds_every_kind_of_damage(
    alice: Identity, topic: TopicInfo, store: Store, damage: str, problem: str
) -> None:
    rng = random.Random(4)
    put(store, topic, spread(alice, topic, mixed_times(rng, 40)))
    assert store.check(topic.topic_id) == []
    store._conn.execute(damage)
    problems = store.check(topic.topic_id)
    assert any(problem in p for p in problems), problems


def test_extreme_times(alice: Identity, topic: TopicInfo, store: Store) -> None:
    put(store, topic, spread(alice, topic, [0, 1, MAX_TIME, MAX_TIME - 1]))
    tree = store.tree(topic.topic_id)
    years = tree.level_nodes(Level.YEAR)
    assert [to_iso(y.start)[:4] for y in years] == ["1970", "2261"]
    assert store.check(topic.topic_id) == []


def test_many_leaves_in_one_nanosecond_stay_listed(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    t = parse_iso("2025-07-07T07:07:07Z")
    same = [make_oplog(alice, topic, t, key=f"same{i}") for i in range(SPLIT_THRESHOLD + 10)]
    put(store, topic, same)
    assert store.check(topic.topic_id) == []
    assert stored_tree(store, topic) == reference_tree(leaves_of(same))


class CountingStorage:
    """Wraps a TreeStorage and counts the rows each call reads or writes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.rows = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)

        def counted(*args: Any) -> Any:
            result = attr(*args)
            if isinstance(result, list | dict):
                self.rows += len(result)
            for arg in args:
                if isinstance(arg, list | tuple) and arg and not isinstance(arg[0], int):
                    self.rows += len(arg)
            self.rows += 1
            return result

        return counted


def test_insert_cost_does_not_grow_with_the_store(
    alice: Identity, topic: TopicInfo, store: Store
) -> None:
    """Rows touched by one insert stay bounded as the store (and one hot hour) grow."""
    hot = parse_iso("2025-03-03T03:00Z")
    rng = random.Random(9)
    costs = []
    for size in (100, 1000, 4000):
        filler = [
            make_oplog(alice, topic, hot + rng.randrange(HOUR_NS), key=f"f{size}-{i}")
            for i in range(size)
        ]
        put(store, topic, filler)
        tree = store.tree(topic.topic_id)
        counting = CountingStorage(tree._s)
        counted_tree = merkle.MerkleTree(topic.topic_id, counting)
        probe = make_oplog(alice, topic, hot + rng.randrange(HOUR_NS), key=f"probe{size}")
        counted_tree.update([Leaf(probe.update_time, probe.oplog_id, probe.hash)], [])
        costs.append(counting.rows)
    assert max(costs) < 400, costs  # bounded: a path of <=32-child nodes, not the hour
    assert costs[-1] <= costs[0] * 3, costs
