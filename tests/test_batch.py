"""plan_batch: the one bookkeeping both stores carry out (core/store/batch.py)."""

from __future__ import annotations

import pytest

from pttsync.core.merkle import Leaf
from pttsync.core.oplog import Oplog, OplogStatus
from pttsync.core.store.batch import Held, plan_batch
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import new_topic
from pttsync.errors import UsageError

from .helpers import make_identity, make_oplog

T0 = parse_iso("2025-01-01")
ALICE = make_identity("alice")
TOPIC = new_topic(ALICE, name="t", create_time=T0, nonce=b"n" * 16)
V, P = OplogStatus.VALID, OplogStatus.PENDING


def held(o: Oplog, status: OplogStatus = V) -> Held:
    return (status, o.update_time, o.hash)


def leaf(o: Oplog) -> Leaf:
    return Leaf(o.update_time, o.oplog_id, o.hash)


A, B, C = (make_oplog(ALICE, TOPIC, T0 + i, f"k{i}") for i in range(3))


def test_new_oplogs_are_added_with_leaves_for_the_valid_ones() -> None:
    plan = plan_batch(TOPIC.topic_id, [(A, V), (B, P)], [], {})
    assert plan.result.added == [A.oplog_id, B.oplog_id]
    assert plan.writes == [(A, V), (B, P)]
    assert plan.add_leaves == [leaf(A)] and plan.remove_leaves == []


def test_an_identical_copy_is_unchanged_and_not_written() -> None:
    plan = plan_batch(TOPIC.topic_id, [(A, V)], [], {A.oplog_id: held(A)})
    assert plan.result.unchanged == [A.oplog_id]
    assert plan.writes == [] and plan.add_leaves == [] and plan.remove_leaves == []


def test_a_status_change_replaces_and_moves_the_leaf() -> None:
    to_valid = plan_batch(TOPIC.topic_id, [(A, V)], [], {A.oplog_id: held(A, P)})
    assert to_valid.result.replaced == [A.oplog_id] and to_valid.add_leaves == [leaf(A)]
    to_pending = plan_batch(TOPIC.topic_id, [(A, P)], [], {A.oplog_id: held(A)})
    assert to_pending.result.replaced == [A.oplog_id]
    assert to_pending.add_leaves == [] and to_pending.remove_leaves == [leaf(A)]


def test_a_second_put_of_one_id_in_a_batch_replaces_the_first() -> None:
    plan = plan_batch(TOPIC.topic_id, [(A, P), (A, V)], [], {})
    assert plan.result.added == [A.oplog_id] and plan.result.replaced == []
    assert plan.writes == [(A, P), (A, V)] and plan.add_leaves == [leaf(A)]


def test_deletes_find_stored_and_just_written_ids_and_ignore_unknown_ones() -> None:
    plan = plan_batch(
        TOPIC.topic_id, [(B, V)], [A.oplog_id, B.oplog_id, C.oplog_id], {A.oplog_id: held(A)}
    )
    assert plan.result.added == [B.oplog_id]
    assert plan.result.deleted == plan.deletes == [A.oplog_id, B.oplog_id]
    assert plan.add_leaves == []  # B's leaf never lands
    assert plan.remove_leaves == [leaf(A)]


def test_an_oplog_of_another_topic_refuses_the_batch_and_held_is_untouched() -> None:
    other = new_topic(ALICE, name="other", create_time=T0, nonce=b"o" * 16)
    foreign = make_oplog(ALICE, other, T0)
    before = {A.oplog_id: held(A)}
    with pytest.raises(UsageError, match="belongs to topic"):
        plan_batch(TOPIC.topic_id, [(B, V), (foreign, V)], [A.oplog_id], before)
    assert before == {A.oplog_id: held(A)}
