"""HandleOplogs: verification, select-existing, the previous-log buffer, one batch per call."""

from __future__ import annotations

import dataclasses

import pytest

from pttsync.core.identity import Identity
from pttsync.core.lifecycle.governance import OP_ROLE, Role, role_payload
from pttsync.core.lifecycle.handle import (
    DEFAULT_CLOCK_SKEW,
    ForeignTopicError,
    HandleResult,
    OplogHandler,
)
from pttsync.core.lifecycle.replica import Replica
from pttsync.core.lifecycle.rules import select_existing
from pttsync.core.oplog import Oplog, OplogStatus, SignKind, compute_hash, cosign, create_oplog
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import NS_PER_SECOND, parse_iso
from pttsync.core.topic import TopicInfo, new_topic

from .helpers import make_identity, make_oplog

T0 = parse_iso("2025-01-01")
NOW = T0 + 3600 * NS_PER_SECOND
LATE = T0 + 10**6
"""bob and carol become masters at LATE: after every oplog these tests create
(alice's alone stay valid, as the founder and sole master when they were made),
so their co-signatures are valid but not needed: copies that differ only in
signatures, as select-existing must handle."""


@pytest.fixture(autouse=True)
def late_masters(
    monkeypatch: pytest.MonkeyPatch,
    topic: TopicInfo,
    alice: Identity,
    bob: Identity,
    carol: Identity,
) -> None:
    """Give every handler of this module a governance with bob and carol as late masters.

    The ROLE oplogs are folded into each Replica's governance without being
    stored, so the stores hold exactly what each test puts in them.
    """

    def role(user: Identity, t: int, what: Role = Role.MASTER) -> Oplog:
        return create_oplog(
            alice,
            topic_id=topic.topic_id,
            object_id=user.peer_id,
            op=OP_ROLE,
            value=role_payload(what),
            create_time=t,
        )

    end = LATE + 10**6  # and stop being masters, before the later oplogs (NOW)
    roles = [
        role(bob, LATE - 2),
        cosign(role(carol, LATE - 1), bob, SignKind.MASTER, LATE - 1),
        cosign(role(bob, end, Role.NONE), carol, SignKind.MASTER, end),
        cosign(role(carol, end + 1, Role.NONE), carol, SignKind.MASTER, end + 1),
    ]
    build = Replica._build_fold
    monkeypatch.setattr(Replica, "_build_fold", lambda self, extra: build(self, [*roles, *extra]))


def enc(*oplogs: Oplog) -> list[bytes]:
    return [encode_oplog(o) for o in oplogs]


def child(identity: Identity, topic: TopicInfo, prev: Oplog, t: int, key: str = "doc") -> Oplog:
    return create_oplog(
        identity,
        topic_id=topic.topic_id,
        object_id=key.encode(),
        op=1,
        value={"v": {"after": prev.oplog_id.hex(), "t": t}},
        create_time=t,
        prev_id=prev.oplog_id,
    )


def stored(store: Store, topic: TopicInfo, o: Oplog) -> Oplog | None:
    s = store.get(topic.topic_id, o.oplog_id)
    if s is None:
        return None
    assert s.status == OplogStatus.VALID
    return s.oplog


def ids(oplogs: list[Oplog]) -> set[bytes]:
    return {o.oplog_id for o in oplogs}


@pytest.fixture
def carol() -> Identity:
    return make_identity("carol")


@pytest.fixture
def handler(store: Store, topic: TopicInfo) -> OplogHandler:
    return OplogHandler(store, topic.topic_id)


# ---------------------------------------------------------------------------
# Pre-processing: verification, topic, future times.


def test_mixed_batch_keeps_the_good_and_rejects_the_bad(
    store: Store, topic: TopicInfo, alice: Identity, handler: OplogHandler
) -> None:
    good1 = make_oplog(alice, topic, T0 + 1, "a")
    good2 = make_oplog(alice, topic, T0 + 2, "b")
    # A bad creator signature, with the hash made to match so only the signature is wrong.
    o = make_oplog(alice, topic, T0 + 3, "c")
    bad_sig = bytes(64)
    forged = dataclasses.replace(
        o, creator_sig=bad_sig, hash=compute_hash(o.oplog_id, bad_sig, (), (), o.update_time)
    )
    # Content changed under a kept ID and hash.
    t = make_oplog(alice, topic, T0 + 4, "d")
    tampered = dataclasses.replace(t, object_id=b"e")
    future = make_oplog(alice, topic, NOW + DEFAULT_CLOCK_SKEW + 1, "f")
    garbage = b"\xa1av\x02"

    result = handler.handle([*enc(good1, forged, tampered), garbage, *enc(future, good2)], NOW)

    assert ids(result.added) == ids([good1, good2])
    assert result.replaced == [] and result.unchanged == 0 and result.waiting == 0
    assert len(result.rejected) == 4
    forged_reason, tampered_reason, garbage_reason, future_reason = result.rejected
    assert forged_reason.startswith("cs:") and "signature" in forged_reason
    assert tampered_reason.startswith("id:")
    assert garbage_reason  # malformed: a reason, not an exception
    assert future_reason.startswith("ut:") and "future" in future_reason
    assert store.count(topic.topic_id) == 2
    assert stored(store, topic, good1) == good1 and stored(store, topic, good2) == good2
    for bad in (forged, tampered, future):
        assert store.get(topic.topic_id, bad.oplog_id) is None
    assert store.check(topic.topic_id) == []


def test_clock_skew_boundary(store: Store, topic: TopicInfo, alice: Identity) -> None:
    handler = OplogHandler(store, topic.topic_id, clock_skew=10)
    at_limit = make_oplog(alice, topic, NOW + 10, "a")
    past_limit = make_oplog(alice, topic, NOW + 11, "b")
    result = handler.handle(enc(at_limit, past_limit), NOW)
    assert ids(result.added) == ids([at_limit])
    assert len(result.rejected) == 1
    # The same record is fine once our clock catches up.
    assert ids(handler.handle(enc(past_limit), NOW + 1).added) == ids([past_limit])


@pytest.mark.parametrize("foreign_first", [False, True])
def test_foreign_topic_refuses_the_whole_batch(
    store: Store,
    topic: TopicInfo,
    alice: Identity,
    handler: OplogHandler,
    foreign_first: bool,
) -> None:
    other = new_topic(alice, name="other", create_time=T0, nonce=b"o" * 16)
    foreign = make_oplog(alice, other, T0 + 5)
    good = [make_oplog(alice, topic, T0 + i, f"k{i}") for i in range(3)]
    raw = enc(foreign, *good) if foreign_first else enc(*good, foreign)
    with pytest.raises(ForeignTopicError):
        handler.handle(raw, NOW)
    assert store.count(topic.topic_id) == 0
    assert handler.waiting == 0
    # The same good records alone are fine.
    assert len(handler.handle(enc(*good), NOW).added) == 3


def test_foreign_topic_with_a_missing_previous_log_does_not_wait(
    store: Store, topic: TopicInfo, alice: Identity, handler: OplogHandler
) -> None:
    parent = make_oplog(alice, topic, T0)
    waiting_child = child(alice, topic, parent, T0 + 1)
    other = new_topic(alice, name="other", create_time=T0, nonce=b"o" * 16)
    with pytest.raises(ForeignTopicError):
        handler.handle(enc(waiting_child, make_oplog(alice, other, T0)), NOW)
    assert handler.waiting == 0


# ---------------------------------------------------------------------------
# Select-existing.


@pytest.fixture
def copies(alice: Identity, bob: Identity, carol: Identity, topic: TopicInfo) -> list[Oplog]:
    """Three valid copies of one oplog, best first (earlier update time wins)."""
    base = make_oplog(alice, topic, T0)
    early = cosign(base, bob, SignKind.MASTER, LATE + 10)
    late = cosign(base, carol, SignKind.MASTER, LATE + 20)
    both = cosign(early, carol, SignKind.MASTER, LATE + 20)
    assert {early.oplog_id, late.oplog_id, both.oplog_id} == {base.oplog_id}
    assert len({base.hash, early.hash, late.hash, both.hash}) == 4
    return [base, early, late]


def test_select_existing_order(copies: list[Oplog], bob: Identity, carol: Identity) -> None:
    base, early, late = copies
    assert select_existing(base, early) and select_existing(early, late)
    assert not select_existing(late, early) and not select_existing(early, early)
    # Same update time: the smaller hash wins.
    x = cosign(base, bob, SignKind.MASTER, LATE + 30)
    y = cosign(base, carol, SignKind.MASTER, LATE + 30)
    small, big = sorted((x, y), key=lambda o: o.hash)
    assert select_existing(small, big) and not select_existing(big, small)


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0), (2, 0, 1)])
@pytest.mark.parametrize("one_batch", [False, True])
def test_select_existing_is_order_independent(
    store: Store, topic: TopicInfo, copies: list[Oplog], order: tuple[int, ...], one_batch: bool
) -> None:
    handler = OplogHandler(store, topic.topic_id)
    arrivals = [copies[i] for i in order]
    if one_batch:
        results = [handler.handle(enc(*arrivals), NOW)]
    else:
        results = [handler.handle(enc(o), NOW) for o in arrivals]
    assert stored(store, topic, copies[0]) == copies[0]  # the best copy, whatever the order
    assert store.count(topic.topic_id) == 1
    assert store.check(topic.topic_id) == []
    assert sum(len(r.added) for r in results) == 1
    if not one_batch:
        # Each arrival either replaced the copy we held or lost to it.
        wins = [i for i, r in enumerate(results) if r.stored]
        assert all(results[i].unchanged == 1 for i in range(len(results)) if i not in wins)
        assert all(r.stored[0] == arrivals[i] for i, r in enumerate(results) if r.stored)


def test_identical_copy_is_unchanged(
    store: Store, topic: TopicInfo, alice: Identity, handler: OplogHandler
) -> None:
    o = make_oplog(alice, topic, T0)
    first = handler.handle(enc(o), NOW)
    assert first.added == [o] and first.unchanged == 0
    again = handler.handle(enc(o, o), NOW)
    assert again == HandleResult(unchanged=2)
    assert store.count(topic.topic_id) == 1


def test_valid_copy_overwrites_stored_pending_copy(
    store: Store, topic: TopicInfo, copies: list[Oplog], handler: OplogHandler
) -> None:
    base, _early, late = copies
    # The pending copy is the better one by select-existing, yet a valid copy replaces it.
    store.write_batch(topic.topic_id, [(base, OplogStatus.PENDING)])
    result = handler.handle(enc(late), NOW)
    assert result.replaced == [late] and result.added == []
    assert stored(store, topic, late) == late
    assert store.count(topic.topic_id, OplogStatus.PENDING) == 0
    assert store.check(topic.topic_id) == []
    # An identical pending copy is promoted to valid too.
    store.write_batch(topic.topic_id, [(base, OplogStatus.PENDING)])
    result = handler.handle(enc(base), NOW)
    assert result.replaced == [base] and result.unchanged == 0
    assert stored(store, topic, base) == base


def test_worse_copy_loses_to_stored_valid_copy(
    store: Store, topic: TopicInfo, copies: list[Oplog], handler: OplogHandler
) -> None:
    base, early, late = copies
    handler.handle(enc(early), NOW)
    result = handler.handle(enc(late), NOW)
    assert result == HandleResult(unchanged=1)
    assert stored(store, topic, early) == early
    result = handler.handle(enc(base), NOW)
    assert result.replaced == [base]
    assert stored(store, topic, base) == base
    assert store.check(topic.topic_id) == []


# ---------------------------------------------------------------------------
# The previous-log check and its waiting buffer.


@pytest.fixture
def chain(alice: Identity, topic: TopicInfo) -> list[Oplog]:
    """parent <- kid <- grandkid."""
    parent = make_oplog(alice, topic, T0, "chain")
    kid = child(alice, topic, parent, T0 + 1)
    return [parent, kid, child(alice, topic, kid, T0 + 2)]


def test_child_waits_for_parent_in_a_later_batch(
    store: Store, topic: TopicInfo, chain: list[Oplog], handler: OplogHandler
) -> None:
    parent, kid, grandkid = chain
    r1 = handler.handle(enc(grandkid), NOW)
    r2 = handler.handle(enc(kid), NOW)
    assert r1 == HandleResult(waiting=1) and r2 == HandleResult(waiting=1)
    assert handler.waiting == 2 and store.count(topic.topic_id) == 0
    r3 = handler.handle(enc(parent), NOW)
    assert r3.added == [parent, kid, grandkid]  # released in order, in this one batch
    assert r3.waiting == 0 and handler.waiting == 0
    for o in chain:
        assert stored(store, topic, o) == o
    assert store.check(topic.topic_id) == []


@pytest.mark.parametrize("order", [(2, 1, 0), (1, 2, 0), (2, 0, 1), (0, 1, 2)])
def test_chain_in_one_batch_any_order(
    store: Store,
    topic: TopicInfo,
    chain: list[Oplog],
    handler: OplogHandler,
    order: tuple[int, ...],
) -> None:
    result = handler.handle(enc(*(chain[i] for i in order)), NOW)
    assert ids(result.added) == ids(chain) and len(result.added) == 3
    assert result.waiting == 0 and handler.waiting == 0
    assert store.count(topic.topic_id) == 3


def test_parent_already_stored(
    store: Store, topic: TopicInfo, chain: list[Oplog], handler: OplogHandler
) -> None:
    parent, kid, _ = chain
    store.write_batch(topic.topic_id, [(parent, OplogStatus.VALID)])
    assert handler.handle(enc(kid), NOW).added == [kid]


def test_waiting_buffer_drops_the_oldest(
    store: Store,
    topic: TopicInfo,
    alice: Identity,
    handler: OplogHandler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler._waiting.limit = 2
    parent = make_oplog(alice, topic, T0)
    kids = [child(alice, topic, parent, T0 + i, f"k{i}") for i in range(1, 4)]
    for k in kids:
        assert handler.handle(enc(k), NOW).waiting == 1
    assert handler.waiting == 2
    result = handler.handle(enc(parent), NOW)
    assert ids(result.added) == ids([parent, *kids[1:]])
    assert store.get(topic.topic_id, kids[0].oplog_id) is None  # the oldest was dropped
    assert handler.waiting == 0 and handler._waiting._by_prev == {}


def test_waiting_buffer_bound_within_one_batch(
    store: Store,
    topic: TopicInfo,
    alice: Identity,
    handler: OplogHandler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler._waiting.limit = 3
    parents = [make_oplog(alice, topic, T0 + i, f"p{i}") for i in range(5)]
    kids = [child(alice, topic, p, T0 + 10 + i, f"c{i}") for i, p in enumerate(parents)]
    result = handler.handle(enc(*kids), NOW)
    assert result.waiting == 3 and handler.waiting == 3
    assert set(handler._waiting._by_prev) == ids(parents[2:])  # the index forgets the dropped ones
    result = handler.handle(enc(*parents), NOW)
    assert ids(result.added) == ids(parents + kids[2:])
    assert handler.waiting == 0 and handler._waiting._by_prev == {}


def test_waiting_copies_of_one_oplog_keep_the_best(
    store: Store, topic: TopicInfo, alice: Identity, bob: Identity, carol: Identity
) -> None:
    parent = make_oplog(alice, topic, T0)
    kid = child(alice, topic, parent, T0 + 1)
    early = cosign(kid, bob, SignKind.MASTER, LATE + 10)
    late = cosign(kid, carol, SignKind.MASTER, LATE + 20)
    for first, second in ((early, late), (late, early)):
        with Store.memory() as s:
            s.add_topic(topic)
            handler = OplogHandler(s, topic.topic_id)
            handler.handle(enc(first), NOW)
            handler.handle(enc(second), NOW)
            assert handler.waiting == 1
            result = handler.handle(enc(parent), NOW)
            assert ids(result.added) == ids([parent, kid])
            assert stored(s, topic, kid) == early


def test_released_waiter_does_not_overwrite_a_better_stored_copy(
    store: Store, topic: TopicInfo, alice: Identity, bob: Identity, carol: Identity
) -> None:
    parent = make_oplog(alice, topic, T0)
    kid = child(alice, topic, parent, T0 + 1)
    worse = cosign(kid, carol, SignKind.MASTER, LATE + 20)
    mine = OplogHandler(store, topic.topic_id)
    other = OplogHandler(store, topic.topic_id)  # another session's handler on the same store
    assert mine.handle(enc(worse), NOW).waiting == 1
    other.handle(enc(parent, kid), NOW)
    result = mine.handle(enc(parent), NOW)  # releases `worse`
    assert stored(store, topic, kid) == kid
    assert result.added == [] and result.replaced == [] and result.unchanged == 2
    assert mine.waiting == 0
    assert store.check(topic.topic_id) == []


def test_released_waiter_replacing_a_pending_copy_is_reported_as_replaced(
    store: Store, topic: TopicInfo, chain: list[Oplog], handler: OplogHandler
) -> None:
    parent, kid, _ = chain
    assert handler.handle(enc(kid), NOW).waiting == 1
    store.write_batch(topic.topic_id, [(kid, OplogStatus.PENDING)])  # e.g. from postsync
    result = handler.handle(enc(parent), NOW)
    assert result.added == [parent] and result.replaced == [kid]
    assert stored(store, topic, kid) == kid


def test_waiter_stored_directly_leaves_the_buffer(
    store: Store, topic: TopicInfo, chain: list[Oplog], bob: Identity
) -> None:
    parent, kid, _ = chain
    better = kid
    held = cosign(kid, bob, SignKind.MASTER, LATE + 50)
    mine = OplogHandler(store, topic.topic_id)
    assert mine.handle(enc(held), NOW).waiting == 1
    store.write_batch(topic.topic_id, [(parent, OplogStatus.VALID)])  # parent arrives elsewhere
    # The same oplog again, now with its parent present: stored, and no longer waiting.
    result = mine.handle(enc(better), NOW)
    assert result.added == [better] and result.waiting == 0
    assert mine.waiting == 0 and mine._waiting._by_prev == {}
    # Arriving in the other order, the better held copy wins over the new one.
    with Store.memory() as s:
        s.add_topic(topic)
        h2 = OplogHandler(s, topic.topic_id)
        assert h2.handle(enc(better), NOW).waiting == 1
        s.write_batch(topic.topic_id, [(parent, OplogStatus.VALID)])
        result = h2.handle(enc(held), NOW)
        assert result.added == [better] and h2.waiting == 0
        assert stored(s, topic, kid) == better


# ---------------------------------------------------------------------------
# Post-processing and the store transaction.


def test_stored_is_exactly_what_each_call_saved(
    store: Store, topic: TopicInfo, alice: Identity, copies: list[Oplog], chain: list[Oplog]
) -> None:
    base, early, late = copies
    parent, kid, _ = chain
    handler = OplogHandler(store, topic.topic_id)
    fresh = make_oplog(alice, topic, T0 + 7, "fresh")
    results = []
    for raw in (
        enc(early, kid),  # early added, kid waits
        enc(late, base, fresh, parent),  # late loses; base replaces; kid released
        enc(late, early),  # nothing new
        [b"junk"],  # nothing valid
    ):
        result = handler.handle(raw, NOW)
        assert all(stored(store, topic, o) == o for o in result.stored)  # saved when returned
        results.append(result)
    # New ones first, then those that replaced our copy.
    assert [[o.hash for o in r.stored] for r in results] == [
        [early.hash],
        [fresh.hash, parent.hash, kid.hash, base.hash],
        [],
        [],
    ]


def test_one_write_per_batch(
    store: Store,
    topic: TopicInfo,
    alice: Identity,
    chain: list[Oplog],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[int] = []
    real = store.write_batch

    def counting(topic_id: bytes, puts: list[tuple[Oplog, OplogStatus]], **kw: object) -> object:
        writes.append(len(puts))
        return real(topic_id, puts)

    monkeypatch.setattr(store, "write_batch", counting)
    handler = OplogHandler(store, topic.topic_id)
    others = [make_oplog(alice, topic, T0 + 100 + i, f"o{i}") for i in range(5)]
    handler.handle(enc(*reversed(chain), *others), NOW)
    assert writes == [8]
    handler.handle(enc(*others), NOW)  # all unchanged: no write at all
    assert writes == [8]
