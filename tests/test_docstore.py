"""The document store end to end: writes, reads, pending writes, conflicts on three peers,
order independence, resolvers, expiry rollback, and that no version is ever dropped silently.

Every time is an explicit nanosecond integer; nothing reads the wall clock.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import pttsync
from pttsync import ChangeKind, Merged, OplogStatus, Role, WriteStatus
from pttsync.core.docop import OP_DELETE, OP_PUT, decode_doc_op, put_payload
from pttsync.core.documents.derive import winner_key
from pttsync.core.lifecycle.handle import OplogHandler
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store import Store

from .helpers import make_identity

T0 = pttsync.parse_iso("2026-02-01T10:00Z")
S = 10**9
M1 = make_identity("docstore-master")
M2 = make_identity("docstore-second-master")
ALICE = make_identity("docstore-alice")
BOB = make_identity("docstore-bob")
INFO = pttsync.new_topic(M1, name="docs", create_time=T0, nonce=b"d" * 16)
TID = INFO.topic_id
EXPIRY = INFO.expiry
assert EXPIRY == 3600 * S  # the default window the expiry tests rely on


@dataclass
class Peer:
    """One store with its replica, document store, and a log of every change it reported."""

    identity: pttsync.Identity
    docs: pttsync.DocumentStore
    events: list[pttsync.Change] = field(default_factory=list)

    @property
    def replica(self) -> pttsync.Replica:
        return self.docs.replica

    @property
    def store(self) -> Store:
        return self.docs.replica.store

    def state(self, key: str) -> pttsync.DocState:
        return shown(self.docs, key)

    def kinds(self, key: str | None = None) -> list[ChangeKind]:
        return [c.kind for c in self.events if key is None or c.key == key]


def _peer(
    identity: pttsync.Identity, replica: pttsync.Replica, resolver: pttsync.Resolver | None = None
) -> Peer:
    docs = pttsync.DocumentStore(replica, resolver=resolver)
    peer = Peer(identity, docs)
    docs.subscribe(peer.events.append)
    return peer


def founder(store: pttsync.Store | None = None, resolver: pttsync.Resolver | None = None) -> Peer:
    """M1's store: the topic founded there, M1 its only master."""
    replica = pttsync.found_topic(store or pttsync.Store.memory(), M1, INFO)
    return _peer(M1, replica, resolver)


def joiner(identity: pttsync.Identity, resolver: pttsync.Resolver | None = None) -> Peer:
    """A fresh store that knows the topic record only; the rest comes by sync."""
    store = pttsync.Store.memory()
    store.add_topic(INFO)
    return _peer(identity, pttsync.Replica(store, TID, identity=identity), resolver)


def sync(a: Peer, b: Peer, now: int) -> pttsync.LocalSyncReport:
    report = pttsync.sync_local(
        a.store,
        b.store,
        TID,
        peer_a=a.identity.peer_id,
        peer_b=b.identity.peer_id,
        now=now,
        replica_a=a.replica,
        replica_b=b.replica,
    )
    assert report.converged, report.as_json()
    assert report.rejected == 0, report.as_json()
    return report


def digest(p: Peer) -> bytes:
    return p.store.tree(TID).digest()


def converge(peers: list[Peer], now: int, passes: int = 4) -> None:
    """Pairwise sync (each pair both ways round) until every digest is equal and nothing pends."""
    for _ in range(passes):
        for a, b in itertools.combinations(peers, 2):
            sync(a, b, now)
        if len({digest(p) for p in peers}) == 1 and not any(
            p.store.has_pending(TID) for p in peers
        ):
            return
    raise AssertionError(f"no convergence after {passes} passes")


def with_members(*members: pttsync.Identity, now: int = T0 + 1) -> tuple[Peer, list[Peer]]:
    """The founder and one fresh peer per member, admitted (the ROLE oplogs reach them by sync)."""
    master = founder()
    peers = []
    for i, m in enumerate(members):
        _, status = master.replica.set_role(m.peer_id, Role.MEMBER, now=now + i)
        assert status is OplogStatus.VALID  # the single master's own write
        peers.append(joiner(m))
    return master, peers


def shown(docs: pttsync.DocumentStore, key: str) -> pttsync.DocState:
    state = docs.get(key)
    assert state is not None, f"{key!r} is unknown here"
    return state


def ids(versions: tuple[pttsync.Version, ...]) -> list[bytes]:
    return [v.oplog_id for v in versions]


def assert_nothing_dropped(peer: Peer) -> None:
    """Every valid version of every key is the winner, in the conflict set, or superseded.

    Worked out from the raw valid oplogs of the store, independently of `derive`:
    superseded means another valid version of the key names it as its previous
    log or in its `r` list; the heads are what is left, the winner the head
    with the later create time, then the larger oplog ID.
    """
    by_key: dict[bytes, list[pttsync.Oplog]] = defaultdict(list)
    for o in peer.store.oplogs(TID, OplogStatus.VALID, limit=10**6):
        if o.op in (OP_PUT, OP_DELETE):
            by_key[o.object_id].append(o)
    for object_id, valid in by_key.items():
        key = object_id.decode()
        state = peer.state(key)
        superseded = {o.prev_id for o in valid} | {
            r for o in valid for r in decode_doc_op(o).resolves
        }
        heads = sorted(
            (o for o in valid if o.oplog_id not in superseded),
            key=lambda o: (o.create_time, o.oplog_id),
            reverse=True,
        )
        assert heads, f"{key}: every valid version is superseded (a cycle?)"
        assert ids(state.heads) == [o.oplog_id for o in heads], key
        assert ids(state.conflicts) == [o.oplog_id for o in heads[1:]], key
        visible = {state.heads[0].oplog_id, *ids(state.conflicts)}
        for o in valid:
            assert o.oplog_id in visible or o.oplog_id in superseded, (
                f"{key}: valid version {o.oplog_id.hex()[:16]} was dropped silently"
            )
        if not state.pending and not state.merged and peer.docs.resolver is None:
            assert state.version.oplog_id == heads[0].oplog_id, key


# -- 1. writing and reading on one peer -----------------------------------------------------


def test_put_get_delete_put_again() -> None:
    p = founder()
    assert p.docs.get("note") is None
    w1 = p.docs.put("note", {"text": "hello", "n": [1, 2]}, now=T0 + 10)
    assert w1.key == "note" and w1.status is WriteStatus.CONFIRMED
    s1 = p.state("note")
    assert s1.exists and s1.value == {"text": "hello", "n": [1, 2]}
    assert s1.version.oplog_id == w1.oplog_id and s1.version.prev_id is None
    assert s1.version.creator == M1.peer_id and s1.version.create_time == T0 + 10
    assert not s1.pending and not s1.merged and not s1.in_conflict
    assert ids(s1.heads) == [w1.oplog_id] and s1.conflicts == () and s1.pending_versions == ()

    w2 = p.docs.delete("note", now=T0 + 20)
    s2 = p.state("note")  # a tombstone: known, not existing
    assert w2.status is WriteStatus.CONFIRMED
    assert not s2.exists and s2.value is None and s2.version.deleted
    assert s2.version.oplog_id == w2.oplog_id and s2.version.prev_id == w1.oplog_id
    assert ids(s2.heads) == [w2.oplog_id]

    w3 = p.docs.put("note", "back", now=T0 + 30)
    s3 = p.state("note")
    assert s3.exists and s3.value == "back" and not s3.version.deleted
    assert s3.version.oplog_id == w3.oplog_id and s3.version.prev_id == w2.oplog_id
    assert ids(s3.heads) == [w3.oplog_id]

    for w in (w1, w2, w3):
        assert p.docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
    assert p.docs.write_status(b"\x00" * 32) is WriteStatus.UNKNOWN
    assert [(c.kind, c.oplog_id, c.local) for c in p.events] == [
        (ChangeKind.PUT, w1.oplog_id, True),
        (ChangeKind.DELETE, w2.oplog_id, True),
        (ChangeKind.PUT, w3.oplog_id, True),
    ]
    assert [c.state for c in p.events][-1] == s3
    assert_nothing_dropped(p)


def test_items_in_key_order_with_prefix_after_limit_and_deleted() -> None:
    p = founder()
    keys = ["b/2", "a/1", "ü", "c", "a/2", "b/1", "ab", "a/3", "Z"]
    for i, k in enumerate(keys):
        p.docs.put(k, i, now=T0 + 10 + i)
    p.docs.delete("a/2", now=T0 + 50)
    existing = sorted(set(keys) - {"a/2"})  # code-point order is UTF-8 byte order

    assert [s.key for s in p.docs.items()] == existing
    assert [s.value for s in p.docs.items()] == [keys.index(k) for k in existing]
    assert [s.key for s in p.docs.items(deleted=True)] == sorted(keys)
    assert [s.exists for s in p.docs.items(deleted=True)] == [k != "a/2" for k in sorted(keys)]
    assert [s.key for s in p.docs.items(prefix="a/")] == ["a/1", "a/3"]
    assert [s.key for s in p.docs.items(prefix="a/", deleted=True)] == ["a/1", "a/2", "a/3"]
    assert [s.key for s in p.docs.items(prefix="a")] == ["a/1", "a/3", "ab"]
    assert [s.key for s in p.docs.items(prefix="b/", after="b/1")] == ["b/2"]
    assert [s.key for s in p.docs.items(after="a/3")] == ["ab", "b/1", "b/2", "c", "ü"]
    assert [s.key for s in p.docs.items(limit=3)] == existing[:3]
    assert p.docs.items(prefix="zz") == []

    # Paging with `after` and a small limit, across the deleted key, visits each once.
    seen: list[str] = []
    after = ""
    while page := p.docs.items(after=after, limit=2):
        assert len(page) <= 2
        seen += [s.key for s in page]
        after = page[-1].key
    assert seen == existing
    with pytest.raises(pttsync.UsageError):
        p.docs.items(limit=0)
    assert_nothing_dropped(p)


def test_items_prefix_includes_the_key_equal_to_the_prefix() -> None:
    p = founder()
    for i, k in enumerate(["a", "a/1", "b"]):
        p.docs.put(k, i, now=T0 + 10 + i)
    assert [s.key for s in p.docs.items(prefix="a")] == ["a", "a/1"]


def test_subscribe_and_unsubscribe() -> None:
    p = founder()
    more: list[pttsync.Change] = []
    unsubscribe = p.docs.subscribe(more.append)
    p.docs.put("k", 1, now=T0 + 10)
    unsubscribe()
    unsubscribe()  # twice is harmless
    p.docs.put("k", 2, now=T0 + 11)
    assert [c.state.value for c in more if c.state] == [1]
    assert [c.state.value for c in p.events if c.state] == [1, 2]  # the other subscriber stays
    p.docs.close()
    p.docs.put("k", 3, now=T0 + 12)  # closed: no longer observing the replica
    assert len(p.events) == 2
    assert p.state("k").value == 3  # reading still works


def test_durable_in_a_file_store(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with pttsync.Store.open(path, create=True) as store:
        p = founder(store)
        w = p.docs.put("kept", {"a": 1}, now=T0 + 10)
        p.docs.put("gone", 1, now=T0 + 11)
        p.docs.delete("gone", now=T0 + 12)
    with pttsync.Store.open(path) as store:
        docs = pttsync.DocumentStore(pttsync.Replica(store, TID, identity=M1))
        state = docs.get("kept")
        assert state is not None and state.value == {"a": 1}
        assert state.version.oplog_id == w.oplog_id and not state.pending
        assert docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
        gone = docs.get("gone")
        assert gone is not None and not gone.exists
        assert [s.key for s in docs.items()] == ["kept"]
        # And the reopened store writes on top of what it held.
        w2 = docs.put("kept", {"a": 2}, now=T0 + 20)
        assert shown(docs, "kept").version.prev_id == w.oplog_id
        assert w2.status is WriteStatus.CONFIRMED


# -- 2. a member's write: pending, then confirmed by the master's co-signature ----------------


@pytest.mark.parametrize("member_requests", [True, False], ids=["member-asks", "master-asks"])
def test_member_write_is_pending_until_the_master_cosigns(member_requests: bool) -> None:
    master, (alice,) = with_members(ALICE)
    base = master.docs.put("doc", "v0", now=T0 + 5)
    sync(alice, master, T0 + 6)
    assert alice.state("doc").value == "v0"

    w = alice.docs.put("doc", "v1", now=T0 + 10)
    assert w.status is WriteStatus.PENDING
    assert alice.docs.write_status(w.oplog_id) is WriteStatus.PENDING
    s = alice.state("doc")
    assert s.pending and s.value == "v1" and s.exists
    assert s.version.oplog_id == w.oplog_id and s.version.pending
    assert s.version.prev_id == base.oplog_id  # written on the valid winner
    assert ids(s.heads) == [base.oplog_id]  # the valid state underneath
    assert ids(s.pending_versions) == [w.oplog_id]
    assert [(c.kind, c.oplog_id, c.local) for c in alice.events[-1:]] == [
        (ChangeKind.PUT, w.oplog_id, True)
    ]
    assert alice.events[-1].state is not None and alice.events[-1].state.pending
    assert master.state("doc").value == "v0"  # not there yet
    assert master.docs.write_status(w.oplog_id) is WriteStatus.UNKNOWN

    before = len(alice.events)
    if member_requests:
        sync(alice, master, T0 + 20)
    else:
        sync(master, alice, T0 + 20)

    assert alice.docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
    assert master.docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
    for p in (alice, master):
        s = p.state("doc")
        assert s.value == "v1" and not s.pending and s.pending_versions == ()
        assert s.version.oplog_id == w.oplog_id and s.version.creator == ALICE.peer_id
        assert ids(s.heads) == [w.oplog_id]
        assert_nothing_dropped(p)
    new = alice.events[before:]
    assert [(c.kind, c.oplog_id, c.local) for c in new] == [
        (ChangeKind.CONFIRMED, w.oplog_id, True)
    ]  # the confirmation is the whole change: not also a put
    assert new[0].state == alice.state("doc")
    assert [(c.kind, c.oplog_id, c.local) for c in master.events[-1:]] == [
        (ChangeKind.PUT, w.oplog_id, False)
    ]
    assert digest(alice) == digest(master)


# -- 3. concurrent updates on three peers ------------------------------------------------------


def test_concurrent_updates_on_three_peers_show_one_winner_and_the_same_conflict() -> None:
    """Three stores write the same document at once, on the same previous version.

    The setup: M1 founds the topic (its only master); ALICE and BOB are
    members on their own stores.  M1's write is valid at once; each member's
    write is pending on its own store and becomes valid when M1 co-signs it in
    postsync.  So all three concurrent writes end up valid: a genuine three-way
    fork with no help from outside the protocol.
    """
    master, (alice, bob) = with_members(ALICE, BOB)
    peers = [master, alice, bob]
    v0 = master.docs.put("task", "v0", now=T0 + 5)
    converge(peers, T0 + 6)
    assert all(p.state("task").value == "v0" for p in peers)

    wm = master.docs.put("task", "by master", now=T0 + 10)
    wb = bob.docs.put("task", "by bob", now=T0 + 20)
    wa = alice.docs.put("task", "by alice", now=T0 + 30)  # the latest: the winner
    assert wm.status is WriteStatus.CONFIRMED
    assert wa.status is WriteStatus.PENDING and wb.status is WriteStatus.PENDING
    for p, w in ((master, wm), (alice, wa), (bob, wb)):
        assert p.state("task").version.prev_id == v0.oplog_id
        assert p.state("task").version.oplog_id == w.oplog_id  # each shows its own write
    marks = [len(p.events) for p in peers]

    converge(peers, T0 + 40)

    states = [p.state("task") for p in peers]
    assert states[0] == states[1] == states[2]  # the same document everywhere
    s = states[0]
    assert s.value == "by alice" and s.version.oplog_id == wa.oplog_id and not s.pending
    assert s.in_conflict and ids(s.heads) == [wa.oplog_id, wb.oplog_id, wm.oplog_id]
    assert ids(s.conflicts) == [wb.oplog_id, wm.oplog_id]  # the losers, later first
    assert [c.value for c in s.conflicts] == ["by bob", "by master"]
    for p, mark in zip(peers, marks, strict=True):
        assert [c.key for c in p.docs.conflicts()] == ["task"]
        assert p.docs.conflicts()[0] == s
        got = [c for c in p.events[mark:] if c.kind is ChangeKind.CONFLICT]
        assert got, "every peer reports the conflict"
        assert got[-1].key == "task" and got[-1].state == s
        assert got[-1].oplog_id == wa.oplog_id
        assert p.docs.write_status(wa.oplog_id) is WriteStatus.CONFIRMED
        assert p.docs.write_status(wb.oplog_id) is WriteStatus.CONFIRMED
        assert_nothing_dropped(p)
    assert [c.kind for c in alice.events[marks[1] :] if c.oplog_id == wa.oplog_id][:1] == [
        ChangeKind.CONFIRMED
    ]

    # One peer (a member: its resolution waits for the master too) closes the conflict.
    wr = bob.docs.resolve("task", "agreed", now=T0 + 50)
    assert wr.status is WriteStatus.PENDING
    pending = bob.state("task")
    assert pending.pending and pending.value == "agreed" and pending.in_conflict
    assert pending.version.prev_id == wa.oplog_id
    assert pending.version.resolves == tuple(sorted([wb.oplog_id, wm.oplog_id]))
    marks = [len(p.events) for p in peers]

    converge(peers, T0 + 60)

    for p, mark in zip(peers, marks, strict=True):
        s = p.state("task")
        assert s.value == "agreed" and not s.in_conflict and not s.pending
        assert ids(s.heads) == [wr.oplog_id] and s.conflicts == ()
        assert p.docs.conflicts() == []
        assert [c.oplog_id for c in p.events[mark:]] == [wr.oplog_id]
        assert p.events[-1].kind is (ChangeKind.CONFIRMED if p is bob else ChangeKind.PUT)
        assert p.events[-1].state == s
        assert_nothing_dropped(p)


def test_resolve_needs_a_conflict_and_a_resolving_delete() -> None:
    p = founder()
    with pytest.raises(pttsync.UsageError, match="not in conflict"):
        p.docs.resolve("nothing", 1, now=T0 + 1)
    a = p.docs.put("k", "a", now=T0 + 10)
    with pytest.raises(pttsync.UsageError, match="not in conflict"):
        p.docs.resolve("k", 1, now=T0 + 11)
    # A fork made directly: a second version on the same (absent) previous version.
    fork, status = p.replica.create(
        object_id=b"k", op=OP_PUT, value=put_payload("b"), now=T0 + 12, prev_id=None
    )
    assert status is OplogStatus.VALID
    s = p.state("k")
    assert ids(s.heads) == [fork.oplog_id, a.oplog_id] and s.value == "b"
    assert p.events[-1].kind is ChangeKind.CONFLICT
    w = p.docs.resolve("k", now=T0 + 20)  # no value: the resolution is a delete
    s = p.state("k")
    assert not s.exists and not s.in_conflict and ids(s.heads) == [w.oplog_id]
    assert s.version.resolves == (a.oplog_id,) and s.version.prev_id == fork.oplog_id
    assert [c.key for c in p.docs.items(deleted=True)] == ["k"] and p.docs.items() == []
    assert_nothing_dropped(p)


# -- 4. order independence ------------------------------------------------------------------------


def _history() -> tuple[Peer, list[pttsync.Oplog]]:
    """~40 valid oplogs over five documents: updates, deletes, forks, a 3-way fork, a
    create-time tie, and resolutions (by a put and by a delete)."""
    p = founder()
    rng = random.Random(11)
    keys = ["a/1", "a/2", "b/1", "b/2", "c"]
    first: dict[str, bytes] = {}
    t = T0 + 10
    for i in range(26):
        key = keys[i % 5] if i < 5 else rng.choice(keys)
        state = p.docs.get(key)
        if state is not None and state.exists and rng.random() < 0.25:
            w = p.docs.delete(key, now=t)
        else:
            w = p.docs.put(key, {"i": i}, now=t)
        first.setdefault(key, w.oplog_id)
        t += S

    def fork(key: str, value: object, at: int, prev: bytes | None) -> None:
        _, status = p.replica.create(
            object_id=key.encode(), op=OP_PUT, value=put_payload(value), now=at, prev_id=prev
        )
        assert status is OplogStatus.VALID

    for n, key in enumerate(keys):
        fork(key, f"fork {key}", T0 + 5 * S + n, first[key])  # older than the winners
    fork("c", "late fork", t + 5 * S, first["c"])  # newer: it wins
    fork("c", "tie x", t + 5 * S, first["c"])  # the same create time: the larger ID wins
    fork("b/1", "newest", t + 6 * S, None)  # a fork from nothing
    t += 10 * S
    p.docs.resolve("a/1", "resolved", now=t)
    p.docs.resolve("b/2", now=t + 1)  # resolved by a delete
    everything = p.store.oplogs(TID, OplogStatus.VALID, limit=10**6)
    return p, everything


def _snapshot(docs: pttsync.DocumentStore) -> dict[str, object]:
    def row(s: pttsync.DocState) -> tuple[object, ...]:
        return (
            s.key,
            s.exists,
            repr(s.value),
            s.version.oplog_id,
            ids(s.heads),
            ids(s.conflicts),
            s.pending,
            s.merged,
        )

    keys = [s.key for s in docs.items(deleted=True)]
    gets = [docs.get(k) for k in keys]
    return {
        "items": [row(s) for s in docs.items(deleted=True)],
        "existing": [row(s) for s in docs.items()],
        "prefix": [row(s) for s in docs.items(prefix="b/", deleted=True)],
        "gets": [row(s) for s in gets if s is not None],
        "conflicts": [row(s) for s in docs.conflicts()],
    }


def test_documents_do_not_depend_on_arrival_order() -> None:
    p, everything = _history()
    assert 35 <= len(everything) <= 45
    expected = _snapshot(p.docs)
    conflicted = {row[0]: row for row in expected["conflicts"]}  # type: ignore[attr-defined]
    assert set(conflicted) == {"a/2", "b/1", "c"}  # a/1 and b/2 were resolved
    assert len(conflicted["c"][4]) == 4  # a four-headed document
    c = p.state("c")
    late, tie = [v for v in c.heads if v.create_time == c.heads[0].create_time]
    assert {late.value, tie.value} == {"late fork", "tie x"}
    assert c.version.oplog_id == max(late.oplog_id, tie.oplog_id)  # the tie-break
    assert not p.state("b/2").exists and not p.state("b/2").in_conflict
    assert_nothing_dropped(p)

    for seed in range(10):
        order = list(everything)
        random.Random(seed).shuffle(order)
        store = pttsync.Store.memory()
        store.add_topic(INFO)
        for o in order:
            store.write_batch(TID, [(o, OplogStatus.VALID)])
        fresh = _peer(M1, pttsync.Replica(store, TID))
        assert _snapshot(fresh.docs) == expected, f"seed {seed}"
        assert digest(fresh) == digest(p)
        assert_nothing_dropped(fresh)


def test_arrival_order_through_the_replica_reports_the_shown_state() -> None:
    """Through the write path, one oplog a commit in a random order: the same documents,
    and the last change reported for each shows what the document finally shows."""
    p, everything = _history()
    expected = _snapshot(p.docs)
    for seed in range(5):
        order = list(everything)
        random.Random(100 + seed).shuffle(order)
        store = pttsync.Store.memory()
        store.add_topic(INFO)
        fresh = _peer(M1, pttsync.Replica(store, TID))
        for o in order:
            fresh.replica.commit([(o, OplogStatus.VALID)], now=T0 + 10**12)
        assert _snapshot(fresh.docs) == expected, f"seed {seed}"
        last: dict[str, pttsync.DocState | None] = {}
        for change in fresh.events:
            last[change.key] = change.state
        assert sorted(last) == ["a/1", "a/2", "b/1", "b/2", "c"]
        for key, reported in last.items():
            final = fresh.state(key)
            assert reported is not None, f"seed {seed}: {key}"
            assert (reported.exists, reported.value, reported.version) == (
                final.exists,
                final.value,
                final.version,
            ), f"seed {seed}: {key}"
        assert_nothing_dropped(fresh)


def _linear_history() -> list[pttsync.Oplog]:
    """first -> middle -> last: three versions of one document, no fork at all."""
    made: list[pttsync.Oplog] = []
    prev = None
    for n, value in enumerate(["first", "middle", "last"]):
        o = pttsync.create_oplog(
            M1, topic_id=TID, object_id=b"k", op=OP_PUT, value=put_payload(value),
            create_time=T0 + 10 + n, prev_id=prev,
        )  # fmt: skip
        made.append(o)
        prev = o.oplog_id
    return made


def test_a_linear_history_arriving_out_of_order_ends_without_a_conflict() -> None:
    first, middle, last = _linear_history()
    store = pttsync.Store.memory()
    store.add_topic(INFO)
    p = _peer(M1, pttsync.Replica(store, TID))
    for o in (first, last):  # the middle version is late
        p.replica.commit([(o, OplogStatus.VALID)], now=T0 + 100)
    gap = p.state("k")  # `last` names a version not here yet: for now it looks like a fork
    assert gap.value == "last" and ids(gap.heads) == [last.oplog_id, first.oplog_id]
    assert p.events[-1].kind is ChangeKind.CONFLICT
    p.replica.commit([(middle, OplogStatus.VALID)], now=T0 + 100)
    s = p.state("k")
    assert s.value == "last" and not s.in_conflict and ids(s.heads) == [last.oplog_id]
    assert p.docs.conflicts() == []
    assert_nothing_dropped(p)


def test_a_conflict_that_disappears_is_reported() -> None:
    first, middle, last = _linear_history()
    store = pttsync.Store.memory()
    store.add_topic(INFO)
    p = _peer(M1, pttsync.Replica(store, TID))
    for o in (first, last, middle):
        p.replica.commit([(o, OplogStatus.VALID)], now=T0 + 100)
    assert p.docs.conflicts() == []
    reported = p.events[-1].state
    assert reported is not None and not reported.in_conflict  # fails: still the 2-head state
    assert reported == p.state("k")


# -- 5. resolvers ---------------------------------------------------------------------------------


def union(key: str, heads: tuple[pttsync.Version, ...]) -> pttsync.Version | Merged:
    items: set[str] = set()
    for v in heads:
        if not v.deleted:
            items.update(v.value)
    return Merged(sorted(items))


def oldest(key: str, heads: tuple[pttsync.Version, ...]) -> pttsync.Version | Merged:
    return min(heads, key=winner_key)


def test_merged_resolver_on_every_peer_keeps_the_conflict_listed() -> None:
    """The same setup as the three-peer test (a master, two members), each with the resolver."""
    calls: list[tuple[str, int]] = []

    def counting_union(key: str, heads: tuple[pttsync.Version, ...]) -> pttsync.Version | Merged:
        calls.append((key, len(heads)))
        assert list(heads) == sorted(heads, key=winner_key, reverse=True)  # winner first
        return union(key, heads)

    master = founder(resolver=counting_union)
    alice, bob = joiner(ALICE, counting_union), joiner(BOB, counting_union)
    master.replica.set_role(ALICE.peer_id, Role.MEMBER, now=T0 + 1)
    master.replica.set_role(BOB.peer_id, Role.MEMBER, now=T0 + 1)
    peers = [master, alice, bob]
    master.docs.put("list", ["milk"], now=T0 + 5)
    converge(peers, T0 + 6)
    assert calls == []  # one head: the resolver is not asked
    assert not master.state("list").merged

    master.docs.put("list", ["milk", "eggs"], now=T0 + 10)
    alice.docs.put("list", ["milk", "bread"], now=T0 + 11)
    wb = bob.docs.put("list", ["tea"], now=T0 + 12)
    assert not alice.state("list").merged  # a pending write shows on top, unmerged
    converge(peers, T0 + 20)

    states = [p.state("list") for p in peers]
    assert states[0] == states[1] == states[2]
    s = states[0]
    assert s.merged and s.exists and not s.pending
    assert s.value == ["bread", "eggs", "milk", "tea"]
    assert s.version.oplog_id == wb.oplog_id  # the winner is still the version written on
    assert s.in_conflict and len(s.conflicts) == 2
    assert ("list", 3) in calls
    for p in peers:
        assert [c.key for c in p.docs.conflicts()] == ["list"]
        assert p.docs.conflicts()[0].merged
        reported = [c for c in p.events if c.kind is ChangeKind.CONFLICT]
        assert reported and reported[-1].state == s
        assert_nothing_dropped(p)

    # A plain view of the same replica shows the plain winner; the resolver changes nothing stored.
    plain = shown(pttsync.DocumentStore(master.replica), "list")
    assert plain.value == ["tea"] and not plain.merged


def test_resolver_picking_a_loser_and_a_merged_delete() -> None:
    p = founder()
    a = p.docs.put("k", "a", now=T0 + 10)
    b, _ = p.replica.create(object_id=b"k", op=OP_PUT, value=put_payload("b"), now=T0 + 20)
    picker = pttsync.DocumentStore(p.replica, resolver=oldest)
    s = picker.get("k")
    assert s is not None and s.value == "a" and s.version.oplog_id == a.oplog_id
    assert not s.merged and s.in_conflict
    assert ids(s.heads) == [b.oplog_id, a.oplog_id]  # the heads are unchanged
    assert [x.key for x in picker.conflicts()] == ["k"]
    assert p.state("k").value == "b"  # the default: the later write

    tomb = pttsync.DocumentStore(p.replica, resolver=lambda k, h: Merged(None, deleted=True))
    assert not shown(tomb, "k").exists and shown(tomb, "k").value is None
    assert tomb.items() == [] and [x.key for x in tomb.items(deleted=True)] == ["k"]

    def nonsense(key: str, heads: tuple[pttsync.Version, ...]) -> Any:
        return "nonsense"  # neither one of the heads nor Merged

    bad = pttsync.DocumentStore(p.replica, resolver=nonsense)
    with pytest.raises(pttsync.UsageError, match="resolver"):
        bad.get("k")

    # Resolving through the loser-picking view closes the conflict for every view.
    w = picker.resolve("k", "both", now=T0 + 30)
    for docs in (picker, tomb, p.docs):
        state = docs.get("k")
        assert state is not None and state.value == "both" and not state.in_conflict
        assert ids(state.heads) == [w.oplog_id] and docs.conflicts() == []
    assert_nothing_dropped(p)


# -- 6. expiry rollback ---------------------------------------------------------------------------


def _three_pending(member: Peer, t: int) -> dict[str, pttsync.Write]:
    writes = {
        "new": member.docs.put("new", "draft", now=t),  # a create
        "old": member.docs.put("old", "v2", now=t),  # an update
        "gone": member.docs.delete("gone", now=t),  # a delete
    }
    assert all(w.status is WriteStatus.PENDING for w in writes.values())
    assert member.state("new").value == "draft" and member.state("old").value == "v2"
    assert not member.state("gone").exists
    return writes


def _assert_rolled_back(p: Peer, base: dict[str, bytes]) -> None:
    assert p.docs.get("new") is None  # the create is gone
    old, gone = p.state("old"), p.state("gone")
    assert old.value == "v1" and not old.pending and old.version.oplog_id == base["old"]
    assert gone.exists and gone.value == "here" and gone.version.oplog_id == base["gone"]
    assert not gone.pending and gone.pending_versions == ()
    assert [s.key for s in p.docs.items()] == ["gone", "old"]


def test_expiry_rolls_back_each_unsigned_pending_write() -> None:
    master, (alice,) = with_members(ALICE)
    base = {
        "old": master.docs.put("old", "v1", now=T0 + 5).oplog_id,
        "gone": master.docs.put("gone", "here", now=T0 + 5).oplog_id,
    }
    sync(alice, master, T0 + 6)
    t = T0 + 10 * S
    writes = _three_pending(alice, t)  # never synced: nobody co-signs them
    mark = len(alice.events)

    assert pttsync.handle_failed(alice.replica, t + EXPIRY) == []  # not yet past
    assert len(alice.events) == mark
    rolled = pttsync.handle_failed(alice.replica, t + EXPIRY + 1)
    assert {o.oplog_id for o in rolled} == {w.oplog_id for w in writes.values()}

    _assert_rolled_back(alice, base)
    new = alice.events[mark:]
    assert sorted((c.key, c.kind) for c in new) == [
        ("gone", ChangeKind.FAILED),
        ("new", ChangeKind.FAILED),
        ("old", ChangeKind.FAILED),
    ]  # the failure is the whole change: no extra put or delete
    for c in new:
        assert c.local and c.oplog_id == writes[c.key].oplog_id
        assert c.reason.startswith("expired")
        assert c.state == alice.docs.get(c.key)  # the restored state (None: no version left)
        assert alice.docs.write_status(c.oplog_id) is WriteStatus.FAILED
    assert not alice.store.has_pending(TID)
    assert_nothing_dropped(alice)

    # Gone for good: the next sync brings nothing back and reports nothing.
    sync(alice, master, t + EXPIRY + 2)
    _assert_rolled_back(alice, base)
    assert len(alice.events) == mark + 3
    assert master.docs.get("new") is None


def test_expiry_reports_failed_to_the_author_and_rolled_back_to_a_cosigner() -> None:
    """Two masters (majority of two is both): M1 co-signs Alice's writes in postsync and
    holds them pending; M2 never sees them.  Both Alice and M1 expire them."""
    master, (alice,) = with_members(ALICE)
    _, status = master.replica.set_role(M2.peer_id, Role.MASTER, now=T0 + 2)
    assert status is OplogStatus.VALID  # M1 was the only master at T0 + 2
    base = {
        "old": master.docs.put("old", "v1", now=T0 + 1).oplog_id,  # before M2: valid
        "gone": master.docs.put("gone", "here", now=T0 + 1).oplog_id,
    }
    sync(alice, master, T0 + 6)
    t = T0 + 10 * S
    writes = _three_pending(alice, t)
    sync(alice, master, t + S)  # postsync: M1 signs, which is not enough
    for p in (alice, master):
        for key, w in writes.items():
            assert p.docs.write_status(w.oplog_id) is WriteStatus.PENDING
            stored = p.store.get(TID, w.oplog_id)
            assert stored is not None and [s.signer for s in stored.oplog.master_sigs] == [
                M1.peer_id
            ], key
    # The co-signer shows the writes it holds, flagged pending.
    assert master.state("new").pending and master.state("new").value == "draft"
    assert master.state("old").pending and not master.state("gone").exists
    marks = {id(p): len(p.events) for p in (alice, master)}

    for p, kind, local in (
        (alice, ChangeKind.FAILED, True),
        (master, ChangeKind.ROLLED_BACK, False),
    ):
        rolled = pttsync.handle_failed(p.replica, t + EXPIRY + 1)
        assert {o.oplog_id for o in rolled} == {w.oplog_id for w in writes.values()}
        _assert_rolled_back(p, base)
        new = p.events[marks[id(p)] :]
        assert sorted(c.key for c in new) == ["gone", "new", "old"]
        for c in new:
            assert c.kind is kind and c.local is local
            assert c.oplog_id == writes[c.key].oplog_id and c.reason.startswith("expired")
            assert c.state == p.docs.get(c.key)
            assert p.docs.write_status(c.oplog_id) is WriteStatus.FAILED
        assert_nothing_dropped(p)


def _late_confirmation() -> tuple[Peer, Peer, pttsync.Write, int]:
    """A master's signature made in time reaches the author only after it expired the write.

    M1 receives Alice's pending write (postsync's SyncPendingOplog, handled by
    HandlePendingOplogs) and co-signs it in time, so it is valid on M1; the
    answer is lost.  Alice expires the write, then syncs with M1 again.
    """
    master, (alice,) = with_members(ALICE)
    sync(alice, master, T0 + 6)
    t = T0 + 10 * S
    w = alice.docs.put("late", "draft", now=t)
    stored = alice.store.get(TID, w.oplog_id)
    assert stored is not None
    handler = OplogHandler(master.store, TID, replica=master.replica)
    result = handler.handle_pending_oplogs([encode_oplog(stored.oplog)], t + S)
    assert [o.oplog_id for o in result.added] == [w.oplog_id]
    assert master.docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
    assert [o.oplog_id for o in pttsync.handle_failed(alice.replica, t + EXPIRY + 1)] == [
        w.oplog_id
    ]
    assert alice.docs.write_status(w.oplog_id) is WriteStatus.FAILED
    assert alice.docs.get("late") is None
    mark = len(alice.events)
    sync(alice, master, t + EXPIRY + 2)
    return master, alice, w, mark


def test_a_late_confirmation_after_expiry_brings_the_write_back() -> None:
    master, alice, w, _ = _late_confirmation()
    assert alice.docs.write_status(w.oplog_id) is WriteStatus.CONFIRMED
    s = alice.state("late")
    assert s.value == "draft" and not s.pending and s.version.oplog_id == w.oplog_id
    assert s == master.state("late")
    assert_nothing_dropped(alice)


def test_a_late_confirmation_after_expiry_is_reported_as_confirmed() -> None:
    _, alice, w, mark = _late_confirmation()
    assert [(c.kind, c.oplog_id, c.local) for c in alice.events[mark:]] == [
        (ChangeKind.CONFIRMED, w.oplog_id, True)
    ]
