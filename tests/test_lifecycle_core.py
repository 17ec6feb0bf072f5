"""The lifecycle end to end: transitions, refusals, expiry rollback, conflicts, order, watch."""

from __future__ import annotations

import dataclasses
import random

import pytest
import trio

import pttsync
from pttsync import OplogStatus, Quorum, Role, SignKind
from pttsync.core.docop import put_payload
from pttsync.core.lifecycle.handle import OplogHandler
from pttsync.core.oplog import cosign
from pttsync.core.oplogcodec import encode_oplog
from pttsync.errors import NotAuthorizedError, UsageError

from .helpers import make_identity

T0 = pttsync.parse_iso("2026-01-05T09:00Z")
S = 10**9
HOUR = 3600 * S
M1, M2, M3 = make_identity("m1"), make_identity("m2"), make_identity("m3")
ALICE, PHONE, EVE = make_identity("alice"), make_identity("alice-phone"), make_identity("eve")


def doc(d: pttsync.DocumentStore, key: str) -> pttsync.DocState:
    state = d.get(key)
    assert state is not None
    return state


def topic(quorum: Quorum = Quorum.MAJORITY) -> pttsync.TopicInfo:
    return pttsync.new_topic(M1, name="t", create_time=T0, nonce=b"n" * 16, quorum=quorum)


def founded(info: pttsync.TopicInfo) -> pttsync.Replica:
    return pttsync.found_topic(pttsync.Store.memory(), M1, info)


def put(
    identity: pttsync.Identity, info: pttsync.TopicInfo, t: int, key: str = "k"
) -> pttsync.Oplog:
    return pttsync.create_oplog(
        identity,
        topic_id=info.topic_id,
        object_id=key.encode(),
        op=1,
        value=put_payload(t),
        create_time=t,
    )


def grant(
    r: pttsync.Replica, user: pttsync.Identity, role: Role, t: int, *cosigners: pttsync.Identity
) -> None:
    """A ROLE oplog by M1, co-signed as needed, stored valid."""
    o = pttsync.create_oplog(
        M1,
        topic_id=r.topic_id,
        object_id=user.peer_id,
        op=0x101,
        value={"role": int(role)},
        create_time=t,
    )
    for c in cosigners:
        o = cosign(o, c, SignKind.MASTER, t)
    assert r.assess(o) is OplogStatus.VALID
    r.commit([(o, OplogStatus.VALID)], now=t)


def three_masters(quorum: Quorum) -> tuple[pttsync.TopicInfo, pttsync.Replica]:
    info = topic(quorum)
    r = founded(info)
    grant(r, M2, Role.MASTER, T0 + 1)
    grant(r, M3, Role.MASTER, T0 + 2, M2)
    grant(r, ALICE, Role.MEMBER, T0 + 3, M2, M3)
    return info, r


# -- transitions -------------------------------------------------------------------


def test_single_master_and_member_transitions() -> None:
    info = topic()
    r = founded(info)
    assert r.assess(put(M1, info, T0 + 5)) is OplogStatus.VALID  # the master alone
    grant(r, ALICE, Role.MEMBER, T0 + 1)
    o = put(ALICE, info, T0 + 5)
    assert r.assess(o) is OplogStatus.PENDING  # a member: waits for the master
    assert r.assess(cosign(o, M1, SignKind.MASTER, T0 + 6)) is OplogStatus.VALID


@pytest.mark.parametrize(("quorum", "needed"), [(Quorum.MAJORITY, 2), (Quorum.ALL, 3)])
def test_quorum_of_three_masters(quorum: Quorum, needed: int) -> None:
    info, r = three_masters(quorum)
    o = put(ALICE, info, T0 + 10)
    statuses = [r.assess(o)]
    for m in (M1, M2, M3):
        o = cosign(o, m, SignKind.MASTER, T0 + 11)
        statuses.append(r.assess(o))
    valid_from = statuses.index(OplogStatus.VALID)
    assert valid_from == needed
    assert all(s is OplogStatus.PENDING for s in statuses[:valid_from])
    # A master's own write counts as its signature.
    assert r.assess(put(M1, info, T0 + 10)) is (
        OplogStatus.PENDING if needed > 1 else OplogStatus.VALID
    )


def test_devices_internal_pending_then_pending_then_valid() -> None:
    info = topic()
    r = founded(info)
    grant(r, ALICE, Role.MEMBER, T0 + 1)
    alice = pttsync.Replica(r.store, info.topic_id, identity=ALICE)
    _, status = alice.set_device(PHONE.peer_id, True, now=T0 + 2)
    assert status is OplogStatus.VALID  # the user's key is the certificate
    r.fold = alice.fold
    o = put(PHONE, info, T0 + 5)  # made on the phone
    assert r.assess(o) is OplogStatus.INTERNAL_PENDING  # 1 of 2 devices
    o = cosign(o, ALICE, SignKind.INTERNAL, T0 + 6)
    assert r.assess(o) is OplogStatus.PENDING  # device quorum; the master next
    assert r.assess(cosign(o, M1, SignKind.MASTER, T0 + 7)) is OplogStatus.VALID
    # Before the phone was certified, Alice had one device: no internal-pending.
    assert r.assess(put(ALICE, info, T0 + 1)) is OplogStatus.PENDING


def test_a_master_added_later_signs_but_does_not_count() -> None:
    info = topic()
    r = founded(info)
    grant(r, ALICE, Role.MEMBER, T0 + 1)
    o = put(ALICE, info, T0 + 5)
    grant(r, M2, Role.MASTER, T0 + 6)
    late = cosign(o, M2, SignKind.MASTER, T0 + 7)
    assert r.assess(late) is OplogStatus.PENDING  # M2 was not a master at T0 + 5
    assert r.assess(cosign(late, M1, SignKind.MASTER, T0 + 8)) is OplogStatus.VALID


# -- refusals ----------------------------------------------------------------------


def test_forged_cosignature_non_master_and_removed_member_are_refused() -> None:
    info = topic()
    r = founded(info)
    grant(r, ALICE, Role.MEMBER, T0 + 1)
    grant(r, EVE, Role.MEMBER, T0 + 1)
    handler = OplogHandler(r.store, info.topic_id, replica=r)
    o = put(ALICE, info, T0 + 5)
    signed = cosign(o, M1, SignKind.MASTER, T0 + 6)
    bad = dataclasses.replace(signed.master_sigs[0], sig=bytes(64))
    forged = pttsync.core.oplog.with_signatures(signed, master_sigs=(bad,), internal_sigs=())
    by_member = cosign(o, EVE, SignKind.MASTER, T0 + 6)
    with pytest.raises(NotAuthorizedError, match="not by a master"):
        r.assess(by_member)
    grant(r, ALICE, Role.NONE, T0 + 10)
    after_removal = cosign(put(ALICE, info, T0 + 11, "x"), M1, SignKind.MASTER, T0 + 12)
    outsider = put(make_identity("stranger"), info, T0 + 5, "y")
    for raw_handle in (handler.handle, handler.handle_pending_oplogs):
        result = raw_handle(
            [encode_oplog(x) for x in (forged, by_member, after_removal, outsider)], T0 + 20
        )
        assert result.stored == [] and len(result.rejected) == 4
    assert "signature" in result.rejected[0]
    assert "not by a master" in result.rejected[1]
    assert "not a member" in result.rejected[2] and "not a member" in result.rejected[3]
    assert r.store.count(info.topic_id) == 4  # the genesis and three ROLE oplogs only


def test_signature_after_expiry_is_refused() -> None:
    info = topic()
    r = founded(info)
    grant(r, ALICE, Role.MEMBER, T0 + 1)
    o = put(ALICE, info, T0 + 5)
    with pytest.raises(NotAuthorizedError, match="expired"):
        r.assess(cosign(o, M1, SignKind.MASTER, T0 + 5 + info.expiry + 1))


# -- expiry rollback, for each op -------------------------------------------------------


def test_expiry_rolls_back_each_op() -> None:
    info = topic()
    master = founded(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    mdocs = pttsync.DocumentStore(master)
    mdocs.put("old", "v1", now=T0 + 2)
    mdocs.put("gone", "here", now=T0 + 2)
    alice = pttsync.Replica(master.store, info.topic_id, identity=ALICE)  # Alice's write path
    docs = pttsync.DocumentStore(alice)
    seen: list[pttsync.Change] = []
    docs.subscribe(seen.append)
    t = T0 + 10
    writes = [
        docs.put("new", "draft", now=t),  # a create
        docs.put("old", "v2", now=t),  # an update
        docs.delete("gone", now=t),  # a delete
    ]
    assert all(w.status is pttsync.WriteStatus.PENDING for w in writes)
    assert doc(docs, "new").value == "draft" and doc(docs, "old").value == "v2"
    assert not doc(docs, "gone").exists
    assert pttsync.handle_failed(alice, t + info.expiry) == []  # not yet
    rolled = pttsync.handle_failed(alice, t + info.expiry + 1)
    assert {o.oplog_id for o in rolled} == {w.oplog_id for w in writes}
    assert docs.get("new") is None  # the create is gone
    assert doc(docs, "old").value == "v1"  # the update undone
    assert doc(docs, "gone").value == "here"  # the delete undone
    assert all(docs.write_status(w.oplog_id) is pttsync.WriteStatus.FAILED for w in writes)
    failed = [c for c in seen if c.kind is pttsync.ChangeKind.FAILED]
    assert {c.key for c in failed} == {"new", "old", "gone"} and all(c.local for c in failed)
    assert all(f.reason.startswith("expired") for f in alice.store.failed(info.topic_id))


def test_expiry_rolls_back_a_pending_role_change() -> None:
    info, r = three_masters(Quorum.MAJORITY)
    o, status = r.create(object_id=EVE.peer_id, op=0x101, value={"role": 1}, now=T0 + 10)
    assert status is OplogStatus.PENDING  # M1 alone of three masters
    assert r.fold.governance.role_at(EVE.peer_id, T0 + 20) is Role.NONE
    assert [x.oplog_id for x in pttsync.handle_failed(r, T0 + 11 + info.expiry)] == [o.oplog_id]
    assert r.store.get(info.topic_id, o.oplog_id) is None
    assert r.fold.governance.role_at(EVE.peer_id, T0 + 20) is Role.NONE


# -- three peers, conflicts, order ---------------------------------------------------------


def sync_all(docs: list[pttsync.DocumentStore], ids: list[pttsync.Identity], now: int) -> None:
    for _ in range(2):
        for i in range(len(docs)):
            j = (i + 1) % len(docs)
            pttsync.sync_local(
                docs[i].replica.store,
                docs[j].replica.store,
                docs[i].replica.topic_id,
                peer_a=ids[i].peer_id,
                peer_b=ids[j].peer_id,
                now=now,
                replica_a=docs[i].replica,
                replica_b=docs[j].replica,
            )


def test_concurrent_updates_on_three_peers_converge_with_the_conflict_visible() -> None:
    """The master and two members; the members' writes are co-signed in postsync."""
    info = topic()
    ids = [M1, ALICE, EVE]
    r0 = founded(info)
    grant(r0, ALICE, Role.MEMBER, T0 + 1)
    grant(r0, EVE, Role.MEMBER, T0 + 1)
    docs = [pttsync.DocumentStore(r0)]
    for who in ids[1:]:
        s = pttsync.Store.memory()
        s.add_topic(info)
        docs.append(pttsync.DocumentStore(pttsync.Replica(s, info.topic_id, identity=who)))
    events: list[list[pttsync.Change]] = [[] for _ in docs]
    for d, ev in zip(docs, events, strict=True):
        d.subscribe(ev.append)
    docs[0].put("task", {"v": 0}, now=T0 + 2)
    sync_all(docs, ids, T0 + 3)
    for n, d in enumerate(docs):
        d.put("task", {"v": n + 1}, now=T0 + 10 + n)
    sync_all(docs, ids, T0 + 20)
    states = [doc(d, "task") for d in docs]
    assert all(s.in_conflict for s in states)
    assert len({(s.value["v"], tuple(v.oplog_id for v in s.conflicts)) for s in states}) == 1
    assert states[0].value == {"v": 3} and len(states[0].conflicts) == 2  # the latest write wins
    assert all(any(c.kind is pttsync.ChangeKind.CONFLICT for c in ev) for ev in events)
    assert all([s.key for s in d.conflicts()] == ["task"] for d in docs)
    docs[1].resolve("task", {"v": 99}, now=T0 + 30)
    sync_all(docs, ids, T0 + 40)
    assert all(doc(d, "task").value == {"v": 99} and not doc(d, "task").in_conflict for d in docs)
    assert len({d.replica.store.tree(info.topic_id).digest() for d in docs}) == 1


def test_random_permutations_of_valid_oplogs_give_the_same_documents() -> None:
    info = topic()
    r = founded(info)
    docs = pttsync.DocumentStore(r)
    rng = random.Random(4)
    heads: dict[str, list[bytes]] = {}
    for i in range(60):
        key = f"d{rng.randrange(5)}"
        w = (
            docs.delete(key, now=T0 + 10 + i)
            if rng.random() < 0.2
            else docs.put(key, i, now=T0 + 10 + i)
        )
        heads.setdefault(key, []).append(w.oplog_id)
    # Forks: writes on an older version of a document, made directly.
    for i, key in enumerate(sorted(heads)):
        prev = heads[key][0]
        o = pttsync.create_oplog(
            M1, topic_id=info.topic_id, object_id=key.encode(), op=1, value=put_payload(-i),
            create_time=T0 + 100 + i, prev_id=prev,
        )  # fmt: skip
        r.commit([(o, OplogStatus.VALID)])
    everything = r.store.oplogs(info.topic_id, OplogStatus.VALID, limit=10**6)

    def snapshot(d: pttsync.DocumentStore) -> list[tuple[object, ...]]:
        return [
            (s.key, s.exists, repr(s.value), s.version.oplog_id, [v.oplog_id for v in s.conflicts])
            for s in d.items(deleted=True)
        ]

    expected = snapshot(docs)
    assert any(s.in_conflict for s in docs.items(deleted=True))
    for seed in range(10):
        order = list(everything)
        random.Random(seed).shuffle(order)
        s = pttsync.Store.memory()
        s.add_topic(info)
        for o in order:
            s.write_batch(info.topic_id, [(o, OplogStatus.VALID)])
        assert snapshot(pttsync.DocumentStore(pttsync.Replica(s, info.topic_id))) == expected


# -- misuse and watching ------------------------------------------------------------------


def test_non_member_cannot_write_and_resolve_needs_a_conflict() -> None:
    info = topic()
    r = founded(info)
    s = pttsync.Store.memory()
    s.add_topic(info)
    with pytest.raises(UsageError, match="not a member"):
        pttsync.DocumentStore(pttsync.Replica(s, info.topic_id, identity=EVE)).put(
            "k", 1, now=T0 + 1
        )
    with pytest.raises(UsageError, match="not in conflict"):
        pttsync.DocumentStore(r).resolve("k", 1, now=T0 + 1)


async def test_watch_streams_changes_and_overflows_without_blocking() -> None:
    info = topic()
    docs = pttsync.DocumentStore(founded(info))
    with trio.fail_after(5):
        with pttsync.watch(docs, buffer=2) as slow, pttsync.watch(docs) as fast:
            for i in range(5):
                docs.put(f"k{i}", i, now=T0 + 1 + i)  # never blocks on the slow watcher
            docs.delete("k0", now=T0 + 10)
        got = [c async for c in fast]
        assert [(c.kind.value, c.key) for c in got] == [
            *[("put", f"k{i}") for i in range(5)],
            ("delete", "k0"),
        ]
        assert [(await slow.__anext__()).key for _ in range(2)] == ["k0", "k1"]
        with pytest.raises(pttsync.WatchOverflowError):
            await slow.__anext__()
    with pytest.raises(UsageError), pttsync.watch(docs, buffer=0):
        pass


def test_the_last_master_cannot_step_down() -> None:
    """Otherwise a topic is left with no master: under "all" every write would be valid
    with no signature, under "majority" none could ever be."""
    info = topic(Quorum.ALL)
    r = founded(info)
    with pytest.raises(UsageError, match="at least one master"):
        r.set_role(M1.peer_id, Role.MEMBER, now=T0 + 1)
    grant(r, M2, Role.MASTER, T0 + 1)
    o = pttsync.create_oplog(
        M1, topic_id=info.topic_id, object_id=M1.peer_id, op=0x101, value={"role": 0},
        create_time=T0 + 2,
    )  # fmt: skip
    assert r.assess(cosign(o, M2, SignKind.MASTER, T0 + 2)) is OplogStatus.VALID
