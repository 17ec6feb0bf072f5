"""`pttsync inspect diff`: the core tree diff, the pull-only remote fetch, the command.

The core diff (core/store/diff.py) runs on MemoryStores (and once on the SQLite
store); a property test checks it against the symmetric difference of the two
stores' oplogs, listed directly.  The fetch (net/fetchtree.py) runs against
real nodes: on the in-memory network under trio's MockClock, and over TCP for
the command.  Every wait on the network is under a deadline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from pttsync.cli.main import main
from pttsync.core.merkle import Level
from pttsync.core.oplog import Oplog, OplogStatus, SignKind, cosign, create_oplog
from pttsync.core.store import Store
from pttsync.core.store import diff as diff_module
from pttsync.core.store.diff import TreeDiff, diff_stores
from pttsync.core.store.memory import MemoryStore
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.sync.messages import SyncOplogNewOplogs, SyncPendingOplog
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.datadir import DataDir
from pttsync.errors import ConnectionLostError
from pttsync.net.config import NodeConfig, trio_wall_clock
from pttsync.net.fetchtree import FetchReport, RefusedError, _Client, fetch_tree
from pttsync.net.serve import open_node

from .nethelpers import SECOND, T0, digest, make_cluster, wait_until
from .synchelpers import MEMBER, OTHER, TID, TOPIC, WRITER

Run = Any

VALID, PENDING, INTERNAL = OplogStatus.VALID, OplogStatus.PENDING, OplogStatus.INTERNAL_PENDING


def write(t: int, key: str = "doc") -> Oplog:
    return create_oplog(
        WRITER, topic_id=TID, object_id=key.encode(), op=1, value={"v": t}, create_time=t
    )


def mem(*puts: tuple[Oplog, OplogStatus]) -> MemoryStore:
    store = MemoryStore()
    store.add_topic(TOPIC)
    if puts:
        store.write_batch(TID, puts)
    return store


def ids(listing: Any) -> set[bytes]:
    return {d.oplog_id for d in listing.items}


def levels(result: TreeDiff) -> list[tuple[str, int, bool, bool]]:
    """Each differing node: (level, nesting, on A, on B)."""
    return [
        (n.level.name.lower(), n.nesting, n.a is not None, n.b is not None)
        for n in result.nodes.items
    ]


# Shared oplogs: a few a month over 2025, and a busy hour (split into slices).
BASE_T = parse_iso("2025-01-03T10:00Z")
BUSY = parse_iso("2025-06-10T14:00Z")


@functools.cache
def base() -> tuple[Oplog, ...]:
    spread = [write(BASE_T + i * 9 * 24 * HOUR_NS + i, f"k{i}") for i in range(30)]
    busy = [write(BUSY + i * 60 * SECOND, f"busy{i}") for i in range(40)]
    return tuple(spread + busy)


def valid(oplogs: Any) -> list[tuple[Oplog, OplogStatus]]:
    return [(o, VALID) for o in oplogs]


# -- the core diff ------------------------------------------------------------------


def test_equal_stores_are_equal() -> None:
    a, b = mem(*valid(base())), mem(*valid(reversed(base())))
    result = diff_stores(a, b, TID)
    assert result.equal and result.digest_a == result.digest_b
    assert result.nodes.total == 0 and not result.nodes.items
    assert (result.only_a.total, result.only_b.total, result.different.total) == (0, 0, 0)
    assert result.leaves_a == result.leaves_b == len(base())
    empty = diff_stores(mem(), mem(), TID)
    assert empty.equal and empty.leaves_a == 0


def test_an_oplog_only_in_a_in_a_shared_hour() -> None:
    extra = write(BASE_T + 5 * SECOND, "extra")  # in the hour of base()[0]
    a, b = mem(*valid([*base(), extra])), mem(*valid(base()))
    result = diff_stores(a, b, TID)
    assert not result.equal
    assert levels(result) == [
        ("year", 0, True, True),
        ("month", 1, True, True),
        ("day", 2, True, True),
        ("hour", 3, True, True),
    ]
    hour = result.nodes.items[-1]
    assert hour.a is not None and hour.b is not None
    assert (hour.a.leaves, hour.b.leaves) == (2, 1)
    assert ids(result.only_a) == {extra.oplog_id} and result.only_a.total == 1
    only = result.only_a.items[0]
    assert only.b is None and only.a is not None
    assert (only.a.status, only.a.hash) == (VALID, extra.hash)
    assert only.a.update_time == extra.update_time
    assert result.only_b.total == result.different.total == 0


def test_one_sided_hours_days_months_and_years() -> None:
    """Each side's extras at every level: a node the other side lacks is not descended."""
    new_hour = write(BASE_T + 2 * HOUR_NS, "new-hour")  # a day both have, an hour only A has
    new_day = write(BASE_T + 24 * HOUR_NS + 7, "new-day")  # a month both have, a new day
    new_month = write(parse_iso("2025-11-25T08:00Z"), "new-month")  # only B
    new_year = write(parse_iso("2021-05-05T05:05Z"), "new-year")  # only B
    a = mem(*valid([*base(), new_hour, new_day]))
    b = mem(*valid([*base(), new_month, new_year]))
    result = diff_stores(a, b, TID)
    assert ids(result.only_a) == {new_hour.oplog_id, new_day.oplog_id}
    assert ids(result.only_b) == {new_month.oplog_id, new_year.oplog_id}
    assert result.different.total == 0
    rows = levels(result)
    assert rows[0] == ("year", 0, False, True)  # 2021: only B, not descended
    assert ("month", 1, False, True) in rows  # 2025-12
    assert ("day", 2, True, False) in rows  # the day after BASE_T
    assert ("hour", 3, True, False) in rows  # BASE_T's day, two hours later
    assert all(not (on_a and on_b) for lv, _, on_a, on_b in rows if lv == "hour")
    assert result.nodes_by_level == {"year": 2, "month": 2, "day": 2, "hour": 1}


def test_pending_on_one_side_and_valid_on_the_other() -> None:
    t = parse_iso("2025-02-02T02:00Z")
    pending = create_oplog(
        MEMBER, topic_id=TID, object_id=b"m", op=1, value={"v": 1}, create_time=t
    )
    signed = cosign(pending, WRITER, SignKind.MASTER, t + SECOND)
    a = mem(*valid(base()), (signed, VALID))
    b = mem(*valid(base()), (pending, PENDING))
    result = diff_stores(a, b, TID)
    assert result.only_a.total == result.only_b.total == 0
    assert ids(result.different) == {pending.oplog_id} and result.different.total == 1
    d = result.different.items[0]
    assert d.a is not None and d.b is not None
    assert (d.a.status, d.a.hash, d.a.update_time) == (VALID, signed.hash, t + SECOND)
    assert (d.b.status, d.b.hash, d.b.update_time) == (PENDING, pending.hash, t)
    # The same, the other way round; and a pending oplog one side lacks.
    lonely = create_oplog(MEMBER, topic_id=TID, object_id=b"n", op=1, value={"v": 2}, create_time=t)
    swapped = diff_stores(mem(*valid(base()), (pending, PENDING), (lonely, INTERNAL)), a, TID)
    assert ids(swapped.different) == {pending.oplog_id}
    assert swapped.different.items[0].a is not None
    assert swapped.different.items[0].a.status is PENDING
    assert ids(swapped.only_a) == {lonely.oplog_id} and swapped.only_b.total == 0
    # Without the not-yet-valid comparison (a remote B), a pending copy on A is not listed.
    assert diff_stores(mem(*valid(base()), (lonely, PENDING)), mem(*valid(base())), TID,
                       pending=False).equal  # fmt: skip


def test_other_master_signatures() -> None:
    """Two valid copies: at other update times (other leaves), or at one (one leaf key)."""
    t = parse_iso("2025-04-04T04:00Z")
    o = create_oplog(MEMBER, topic_id=TID, object_id=b"m", op=1, value={"v": 1}, create_time=t)
    early = cosign(o, WRITER, SignKind.MASTER, t + SECOND)
    late = cosign(o, WRITER, SignKind.MASTER, t + 2 * HOUR_NS)  # another hour
    twice = cosign(cosign(o, OTHER, SignKind.MASTER, t + SECOND), WRITER, SignKind.MASTER,
                   t + 2 * HOUR_NS)  # fmt: skip
    assert twice.update_time == late.update_time and twice.hash != late.hash
    for x, y in ((early, late), (late, twice)):
        result = diff_stores(mem(*valid(base()), (x, VALID)), mem(*valid(base()), (y, VALID)), TID)
        assert result.only_a.total == result.only_b.total == 0
        assert ids(result.different) == {o.oplog_id} and result.different.total == 1
        d = result.different.items[0]
        assert d.a is not None and d.b is not None
        assert (d.a.hash, d.b.hash) == (x.hash, y.hash)
        assert (d.a.update_time, d.b.update_time) == (x.update_time, y.update_time)


def test_a_split_hour_against_an_unsplit_one() -> None:
    """40 leaves (slices) on A against 20 of them (a plain hour) on B."""
    busy = [o for o in base() if o.object_id.startswith(b"busy")]
    rest = [o for o in base() if not o.object_id.startswith(b"busy")]
    a, b = mem(*valid(base())), mem(*valid([*rest, *busy[::2]]))
    result = diff_stores(a, b, TID)
    assert ids(result.only_a) == {o.oplog_id for o in busy[1::2]}
    assert result.only_b.total == result.different.total == 0
    slices = [n for n in result.nodes.items if n.level is Level.SLICE]
    assert slices and all(n.nesting == 4 and n.depth == 1 for n in slices)
    hour = next(n for n in result.nodes.items if n.level is Level.HOUR)
    assert hour.a is not None and hour.b is not None
    assert (hour.a.leaves, hour.b.leaves) == (40, 20)
    # A slice of A against the same slice of B's virtual split: both sides shown.
    assert any(n.a is not None and n.b is not None for n in slices)
    # And the other way round.
    flipped = diff_stores(b, a, TID)
    assert ids(flipped.only_b) == ids(result.only_a)
    assert levels(flipped) == [(lv, k, y, x) for lv, k, x, y in levels(result)]


def test_the_listing_is_bounded_and_the_totals_exact() -> None:
    extras = [write(BASE_T + i * 9 * 24 * HOUR_NS + 10 * SECOND, f"x{i}") for i in range(30)]
    a, b = mem(*valid([*base(), *extras])), mem(*valid(base()))
    result = diff_stores(a, b, TID, limit=5)
    assert result.only_a.total == 30 and len(result.only_a.items) == 5
    assert result.only_a.omitted == 25
    assert result.nodes.total > 5 and len(result.nodes.items) == 5
    full = diff_stores(a, b, TID, limit=0)
    assert ids(full.only_a) == {o.oplog_id for o in extras}
    assert len(full.nodes.items) == full.nodes.total


def test_a_one_sided_node_is_read_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diff_module, "CHUNK", 7)
    a, b = mem(*valid(base())), mem()
    result = diff_stores(a, b, TID, limit=0)
    assert ids(result.only_a) == {o.oplog_id for o in base()}
    assert levels(result) == [("year", 0, True, False)]


def test_sqlite_stores_give_the_same_diff() -> None:
    extra = write(BASE_T + 5 * SECOND, "extra")

    def sqlite(oplogs: list[Oplog]) -> SqliteStore:
        s = SqliteStore.memory()
        s.add_topic(TOPIC)
        s.write_batch(TID, valid(oplogs))
        return s

    with sqlite([*base(), extra]) as a, sqlite(list(base())) as b:
        got = diff_stores(a, b, TID)
    want = diff_stores(mem(*valid([*base(), extra])), mem(*valid(base())), TID)
    assert levels(got) == levels(want) and ids(got.only_a) == ids(want.only_a)


# -- the property: what the diff reports is exactly the symmetric difference ----------

POOL_T = parse_iso("2024-12-31T23:00Z")
POOL = 96
BUSY_POOL = 72


@functools.cache
def pool() -> tuple[tuple[Oplog, ...], ...]:
    """Oplogs, each in four copies (pending; valid; valid, signed again later; the same
    update time with other signatures): most in
    one busy hour (split into slices when over 32 are valid), the rest over a month,
    and signatures that move copies across hour, day, month and year boundaries."""
    rng = random.Random(11)
    out = []
    for i in range(POOL):
        spread = 40 * SECOND if i < BUSY_POOL else 800 * HOUR_NS
        t = POOL_T + rng.randrange(spread)
        o = create_oplog(MEMBER, topic_id=TID, object_id=b"p%d" % i, op=1, value={"v": i},
                         create_time=t)  # fmt: skip
        first = cosign(o, WRITER, SignKind.MASTER, t + rng.randrange(2 * HOUR_NS))
        second = cosign(first, OTHER, SignKind.MASTER, t + 3 * HOUR_NS)
        # `second`'s update time (so its leaf key), with other signatures: another hash.
        third = cosign(cosign(o, OTHER, SignKind.MASTER, t), WRITER, SignKind.MASTER,
                       t + 3 * HOUR_NS)  # fmt: skip
        out.append((o, first, second, third))
    return tuple(out)


def listed(store: Store, tid: bytes = TID) -> dict[bytes, tuple[OplogStatus, bytes]]:
    """Every oplog of the topic, listed directly: ID -> (status, hash)."""
    return {
        o.oplog_id: (status, o.hash)
        for status in OplogStatus
        for o in store.oplogs(tid, status, limit=10**6)
    }


choice = st.integers(0, 5)  # absent, then: pending, valid, valid later, internal, valid alt
picks = st.lists(choice, min_size=POOL, max_size=POOL)


def build(chosen: list[int]) -> MemoryStore:
    store = mem()
    puts = []
    for (o, first, second, third), pick in zip(pool(), chosen, strict=True):
        if pick:
            copies = ((o, PENDING), (first, VALID), (second, VALID), (o, INTERNAL), (third, VALID))
            puts.append(copies[pick - 1])
    if puts:
        store.write_batch(TID, puts)
    return store


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks,
    picks,
    st.sampled_from(["apart", "same", "edited"]),
    st.lists(st.tuples(st.integers(0, POOL - 1), choice), max_size=4),
)
def test_the_diff_is_the_symmetric_difference(
    pa: list[int], pb: list[int], how: str, edits: list[tuple[int, int]]
) -> None:
    """Two random stores (`apart`), equal ones (`same`), or one a few edits from the other."""
    if how != "apart":
        pb = list(pa)
        for i, pick in edits if how == "edited" else ():
            pb[i] = pick
    a, b = build(pa), build(pb)
    la, lb = listed(a), listed(b)
    result = diff_stores(a, b, TID, limit=0)
    assert ids(result.only_a) == la.keys() - lb.keys()
    assert ids(result.only_b) == lb.keys() - la.keys()
    assert ids(result.different) == {k for k in la.keys() & lb.keys() if la[k] != lb[k]}
    reported = [d.oplog_id for x in (result.only_a, result.only_b, result.different)
                for d in x.items]  # fmt: skip
    assert len(reported) == len(set(reported))  # each oplog once
    for d in result.different.items:
        assert d.a is not None and d.b is not None
        assert (d.a.status, d.a.hash) == la[d.oplog_id]
        assert (d.b.status, d.b.hash) == lb[d.oplog_id]
    assert result.equal == (la == lb)
    if la == lb:
        assert not result.nodes.items  # no false positives
    for n in result.nodes.items:  # a node both sides have is listed only if it differs
        assert n.a is None or n.b is None or n.a.hash != n.b.hash


# -- the remote fetch, in memory ---------------------------------------------------------


async def test_fetch_pulls_the_peer_tree_and_sends_nothing(autojump_clock: MockClock) -> None:
    """B is a node; A (the topic's founder) diffs its store against B's fetched tree."""
    cluster = make_cluster(2)
    store_a, store_b = cluster.stores
    founder = cluster.identities[0]
    tid = cluster.topic_id

    def put(key: bytes, t: int) -> Oplog:
        return create_oplog(founder, topic_id=tid, object_id=key, op=1, value={"v": 1},
                            create_time=t)  # fmt: skip

    shared = [put(b"s%d" % i, T0 - 3600 * SECOND + i) for i in range(20)]
    only_b = put(b"b", T0 - 7 * 24 * 3600 * SECOND)
    store_a.write_batch(tid, valid(shared))  # and A holds the genesis and a ROLE oplog
    store_b.write_batch(tid, valid([*store_a.oplogs(tid, VALID, limit=100), only_b]))
    extra_a = put(b"a", T0 - 30 * 24 * 3600 * SECOND)
    store_a.write_batch(tid, [(extra_a, VALID)])
    member = cluster.identities[1]  # B's own write: pending until A (the master) signs it
    waiting = create_oplog(member, topic_id=tid, object_id=b"w", op=1, value={"v": 3},
                           create_time=T0 - 60 * SECOND)  # fmt: skip
    store_b.write_batch(tid, [(waiting, PENDING)])
    before_b = listed(store_b, tid)
    async with cluster.node(1) as node_b:
        fetched = MemoryStore()
        fetched.add_topic(cluster.info)
        with trio.fail_after(60):
            report = await fetch_tree(
                fetched, cluster.info, founder, cluster.address(1), network=cluster.network,
                clock=trio_wall_clock(T0), timeout=30,
            )  # fmt: skip
        assert node_b.store.tree(tid).digest() == fetched.tree(tid).digest()
    assert report.settled and report.rounds == 2 and report.withheld == 0
    assert report.peer_id == cluster.identities[1].peer_id
    assert report.oplogs_stored == store_b.count(tid, VALID)
    assert listed(store_b, tid) == before_b  # nothing was sent to B, nothing co-signed
    assert fetched.count(tid, PENDING) == 0  # postsync never ran
    result = diff_stores(store_a, fetched, tid, pending=False)
    assert ids(result.only_a) == {extra_a.oplog_id}
    assert ids(result.only_b) == {only_b.oplog_id}
    assert result.different.total == 0


async def test_a_full_peer_is_fetched_as_a_visit(autojump_clock: MockClock) -> None:
    """B has one slot, taken by C: the fetch comes as a visit (network.md, "Visits"),
    so B lets it in all the same, and keeps its link."""
    cluster = make_cluster(3)
    async with cluster.run():
        pass  # every node holds the governance
    async with AsyncExitStack() as stack:
        node_b = await stack.enter_async_context(cluster.node(1, max_peers=1))
        node_c = await stack.enter_async_context(
            cluster.node(2, max_peers=1, join=(cluster.address(1),))
        )
        await wait_until([node_b, node_c], lambda: len(node_b.links) == 1, limit=30)
        fetched = MemoryStore()
        fetched.add_topic(cluster.info)
        with trio.fail_after(60):
            report = await fetch_tree(
                fetched, cluster.info, cluster.identities[0], cluster.address(1),
                network=cluster.network, clock=trio_wall_clock(T0), timeout=30,
            )  # fmt: skip
        assert report.settled
        assert fetched.tree(cluster.topic_id).digest() == digest(node_b)
        assert list(node_b.links) == [node_c.peer_id]
        assert node_b.status()["visits"]["taken"] == 1


async def test_fetch_sends_no_record_and_opens_no_postsync() -> None:
    """The last guard: what the requester would send is stripped of its records."""
    sent: list[Any] = []

    class Link:
        peer_id = b"B" * 32

        async def send(self, msg: Any) -> None:
            sent.append(msg)

    report = FetchReport("b:1")
    client = _Client(Link(), mem(), TID, report, None, lambda: T0)  # type: ignore[arg-type]
    push = SyncOplogNewOplogs(TID, b"r" * 16, 2, (b"record",), (), (), None)
    assert await client._send([push]) is False
    assert sent == [SyncOplogNewOplogs(TID, b"r" * 16, 2, (), (), (), None)]
    assert report.withheld == 1
    assert await client._send([SyncPendingOplog(TID, b"r" * 16, 3, ())]) is True
    assert len(sent) == 1  # postsync is not opened


async def test_fetch_is_refused_for_a_non_member(autojump_clock: MockClock) -> None:
    cluster = make_cluster(3, members=1)  # peer 2 is not a member
    async with cluster.node(0):
        fetched = MemoryStore()
        fetched.add_topic(cluster.info)
        with trio.fail_after(60), pytest.raises(RefusedError, match="not a member"):
            await fetch_tree(
                fetched, cluster.info, cluster.identities[2], cluster.address(0),
                network=cluster.network, clock=trio_wall_clock(T0),
            )  # fmt: skip
        assert fetched.count(cluster.topic_id) == 0


async def test_fetch_gives_up_at_its_deadline(autojump_clock: MockClock) -> None:
    cluster = make_cluster(1)

    async def silent(stream: trio.abc.Stream, _remote: str) -> None:
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(cluster.network.serve, "mute:1", silent)
        fetched = MemoryStore()
        fetched.add_topic(cluster.info)
        with trio.fail_after(60), pytest.raises(ConnectionLostError, match="after 5 s"):
            await fetch_tree(
                fetched, cluster.info, cluster.identities[0], address,
                network=cluster.network, timeout=5,
            )  # fmt: skip
        nursery.cancel_scope.cancel()


# -- the command, on data directories ------------------------------------------------


def _fingerprint(d: Path) -> tuple[str, dict[bytes, tuple[OplogStatus, bytes]], bytes]:
    """A store's file digest, its oplogs (ID -> status, hash) and its tree digest."""
    data = (d / "store.sqlite3").read_bytes()
    with DataDir(d).open_store() as store:
        tid = store.topics()[0].topic_id
        return hashlib.sha256(data).hexdigest(), listed(store, tid), store.tree(tid).digest()


@pytest.fixture
def dirs(tmp_path: Path, run: Run) -> tuple[Path, Path, set[bytes], set[bytes]]:
    """A (master) and B (member) in sync on 60 oplogs, then 3 more only in A and 2 only in B."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    span = ("--from", "2025-01-01", "--to", "2026-01-01")
    assert run("init", "--data", str(a))[0] == 0
    assert run("-q", "gen", "--data", str(a), "--count", "60", *span, "--seed", "1")[0] == 0
    assert run("init", "--data", str(b), "--topic-of", str(a))[0] == 0
    assert run("-q", "sync", "--local", str(a), str(b))[0] == 0
    with DataDir(a).open_store() as store:
        before = {o.oplog_id for o in store.oplogs(store.topics()[0].topic_id, VALID, limit=999)}
    c.mkdir(mode=0o700)  # A's twin (same identity), to write what only B will hold
    for name in ("identity.key", "store.sqlite3"):
        (c / name).write_bytes((a / name).read_bytes())
    (c / "identity.key").chmod(0o600)
    day = ("--from", "2025-03-14", "--to", "2025-03-15")
    assert run("-q", "gen", "--data", str(a), "--count", "3", *day, "--seed", "2")[0] == 0
    assert run("-q", "gen", "--data", str(c), "--count", "2", *span, "--seed", "3")[0] == 0
    assert run("-q", "sync", "--local", str(c), str(b))[0] == 0

    def valid_ids(d: Path) -> set[bytes]:
        with DataDir(d).open_store() as store:
            tid = store.topics()[0].topic_id
            return {o.oplog_id for o in store.oplogs(tid, VALID, limit=999)}

    return a, b, valid_ids(a) - before, valid_ids(b) - valid_ids(a)


def test_cli_human_output_and_exit_codes(dirs: Any, run: Run) -> None:
    a, b, only_a, only_b = dirs
    prints = {p: _fingerprint(p) for p in (a, b)}
    code, out, err = run("inspect", "diff", str(a), str(b))
    assert code == 1, err
    assert "differ:" in out and "3 only in A, 2 only in B, 0 held differently" in out
    assert any(line.startswith(("├── year", "└── year")) for line in out.splitlines())
    assert "    └── " in out or "│   └── " in out or "    ├── " in out  # nested rows
    assert "only in A (3):" in out and "only in B (2):" in out
    for oid in only_a | only_b:
        assert oid.hex() in out  # in full
    # A listed ID is one `inspect oplog` takes.
    code, shown, _ = run("inspect", "oplog", "--data", str(a), next(iter(only_a)).hex())
    assert code == 0 and "valid" in shown
    assert {p: _fingerprint(p) for p in (a, b)} == prints  # neither store changed
    code, out, _ = run("inspect", "diff", str(a), str(a))
    assert code == 0 and "equal: A and B hold the same oplogs" in out
    code, out, _ = run("inspect", "diff", str(a), str(b), "--limit", "1")
    assert code == 1 and "… and 2 more (--limit)" in out and "… and 1 more (--limit)" in out


def test_cli_json_carries_everything(dirs: Any, run: Run) -> None:
    a, b, only_a, only_b = dirs
    code, out, _ = run("inspect", "diff", str(a), str(b), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["equal"] is False and doc["pending_compared"] is True
    assert {x["oplog_id"] for x in doc["only_in_a"]["oplogs"]} == {i.hex() for i in only_a}
    assert {x["oplog_id"] for x in doc["only_in_b"]["oplogs"]} == {i.hex() for i in only_b}
    assert doc["only_in_a"]["total"] == 3 and doc["different"]["total"] == 0
    first = doc["only_in_a"]["oplogs"][0]
    assert first["b"] is None and first["a"]["status"] == "valid"
    assert len(first["a"]["hash"]) == 64 and first["a"]["update_time"].endswith("Z")
    nodes = doc["nodes"]
    assert nodes["total"] == len(nodes["listed"]) == sum(nodes["by_level"].values())
    assert nodes["listed"][0]["level"] == "year" and nodes["listed"][0]["nesting"] == 0
    assert doc["a"]["digest"] != doc["b"]["digest"]
    assert doc["a"]["valid"] - doc["b"]["valid"] == 1  # 3 against 2
    code, out, _ = run("inspect", "diff", str(a), str(b), "--json", "--limit", "1")
    doc = json.loads(out)
    assert doc["only_in_a"]["total"] == 3 and len(doc["only_in_a"]["oplogs"]) == 1
    assert doc["only_in_a"]["omitted"] == 2
    code, out, _ = run("inspect", "diff", str(b), str(b), "--json")
    assert code == 0 and json.loads(out)["equal"] is True


def test_cli_bad_input_is_one_line(
    tmp_path: Path, dirs: Any, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, _, _ = dirs
    other = tmp_path / "other"
    assert run("init", "--data", str(other))[0] == 0
    cases = {
        (str(tmp_path), str(b)): "is not a pttsync data directory",
        (str(a), str(tmp_path / "nowhere")): "is not a peer's HOST:PORT",
        (str(a), str(other)): "does not hold topic",
        (str(a), "127.0.0.1:1"): "cannot connect",
    }
    for (x, y), message in cases.items():
        code, out, err = run("inspect", "diff", x, y, "--timeout", "5")
        assert code == 2 and message in err and "Traceback" not in err, (x, y, err)
        assert err.count("\n") == 1 and out == ""
    code, _, err = run("inspect", "diff", str(a), str(b), "--topic", "ffff")
    assert code == 2 and "no topic" in err
    with pytest.raises(SystemExit) as exited:
        run("inspect", "diff", "--help")
    assert exited.value.code == 0
    assert "exit status: 0 if A and B hold the same oplogs" in capsys.readouterr().out


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """The CLI in a worker thread (it runs its own trio loop): (code, stdout, stderr)."""

    async def _cli(*argv: str) -> tuple[int, str, str]:
        # abandon_on_cancel: the test's deadline ends the wait even if the CLI hangs
        code: int = await trio.to_thread.run_sync(main, list(argv), abandon_on_cancel=True)
        out, err = capsys.readouterr()
        return code, out, err

    return _cli


async def test_cli_against_a_running_peer(dirs: Any, cli: Any, tmp_path: Path) -> None:
    """B as HOST:PORT: a node on B's directory, over TCP and Noise, A's identity."""
    a, b, only_a, only_b = dirs
    stranger = tmp_path / "stranger"  # on the topic, never admitted
    code, token, _ = await cli("invite", "--data", str(a))
    assert code == 0
    assert await cli("init", "--data", str(stranger), "--invite", token.strip()) == (0, ANY, "")
    print_a = _fingerprint(a)
    config = NodeConfig(listen="127.0.0.1:0", control=False)
    async with open_node(b, config=config) as node:
        tid = node.select_topic().topic_id
        before_b = listed(node.store, tid)
        address = node.listen_address
        assert address is not None
        with trio.fail_after(60):
            code, out, err = await cli("inspect", "diff", str(a), address, "--timeout", "30")
        assert code == 1, err
        assert "pending not fetched" in out and "3 only in A, 2 only in B" in out
        with trio.fail_after(60):
            code, out, err = await cli("inspect", "diff", str(a), address, "--json")
        assert code == 1, err
        doc = json.loads(out)
        assert doc["pending_compared"] is False and doc["b"]["pending"] is None
        assert doc["b"]["fetch"]["settled"] is True and doc["b"]["fetch"]["withheld"] == 0
        assert doc["b"]["digest"] == node.store.tree(tid).digest().hex()
        assert {x["oplog_id"] for x in doc["only_in_b"]["oplogs"]} == {i.hex() for i in only_b}
        assert {x["oplog_id"] for x in doc["only_in_a"]["oplogs"]} == {i.hex() for i in only_a}
        with trio.fail_after(60):
            code, out, err = await cli("inspect", "diff", str(stranger), address)
        assert code == 2 and out == "" and "refused: not a member" in err
        assert listed(node.store, tid) == before_b  # B was sent nothing
    assert _fingerprint(a) == print_a
