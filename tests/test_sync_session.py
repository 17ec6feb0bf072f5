"""Sync sessions end to end: convergence from many pairs of sets, and the state machine.

Every exchange runs through `localsync` (real encode, frame and decode), and
every outcome is checked on the stores themselves: equal digests, `check()`
clean, and the union of both sides' oplogs on both sides.

Round trips observed (one round each): identical stores 1 (2 messages, under
300 bytes), one side empty 2 (list, then one range push or fetch), window
differences 2, differences under a year of the tree list 4, hours split into
slices 5 (and also 5 with >512 leaves in the hour, slices split again).
"""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest

from pttsync.core.merkle import SPLIT_THRESHOLD
from pttsync.core.oplog import Oplog, OplogStatus, SignKind, cosign
from pttsync.core.sync.messages import MESSAGE_TYPES, Message, MsgType, RejectCode, SyncOplog
from pttsync.core.sync.msgcodec import decode_message, encode_message
from pttsync.core.sync.receiver import Receiver
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import ACCEPTS, Role, State
from pttsync.core.sync.syncview import TreeView, list_digest, window_digest, window_end
from pttsync.core.timeutil import HOUR_NS, hour_start, parse_iso
from pttsync.errors import RemoteProtocolError
from pttsync.localsync import run_round

from .synchelpers import (
    ADMIT,
    NOW,
    OLD_END,
    OLD_START,
    RECENT_START,
    TID,
    WRITER,
    all_oplogs,
    gen,
    member_write,
    new_store,
    pair,
    pair_sessions,
    put,
    rid,
    split_sets,
    sync_and_check,
)

DESCENT_MAX_ROUND_TRIPS = 5

OLD = gen(120, OLD_START, OLD_END, seed=1)
RECENT = gen(50, RECENT_START, NOW, seed=2)
POOL = OLD + RECENT


def one_round(sa: Any, sb: Any) -> Any:
    """Sync, and assert it took exactly one round; returns that round's report."""
    out = sync_and_check(sa, sb)
    assert len(out.report.rounds) == 1, out.report.as_json()
    assert out.report.rounds[0].completed
    return out.report.rounds[0]


# -- convergence ---------------------------------------------------------------------

# (only A, only B, both) probabilities of each shape of pair.
SHAPES = {
    "disjoint": (0.5, 0.5, 0.0),
    "overlapping": (0.2, 0.2, 0.5),
    "mostly-shared": (0.05, 0.05, 0.85),
    "a-empty": (0.0, 0.7, 0.0),
    "b-empty": (0.7, 0.0, 0.0),
    "a-subset": (0.0, 0.3, 0.6),
}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_random_pairs_converge_in_one_round(shape: str, seed: int) -> None:
    rng = random.Random(f"{shape}/{seed}")
    pool = rng.sample(POOL, rng.randint(20, len(POOL)))
    a, b = split_sets(pool, rng, *SHAPES[shape])
    sa, sb = pair(a, b)
    rr = one_round(sa, sb)
    assert rr.round_trips <= DESCENT_MAX_ROUND_TRIPS
    if not a or not b:
        # The empty side holds no node: whole ranges move at once.
        assert rr.round_trips <= 2


@pytest.mark.parametrize("direction", ["a-empty", "b-empty"])
def test_one_side_empty_moves_everything_in_two_round_trips(direction: str) -> None:
    a, b = (POOL, []) if direction == "b-empty" else ([], POOL)
    sa, sb = pair(a, b)
    rr = one_round(sa, sb)
    assert rr.round_trips == 2
    assert len(all_oplogs(sa)) == len(all_oplogs(sb)) == len(POOL)


def test_both_empty_and_identical_stores_take_one_small_round_trip() -> None:
    for a in ([], POOL):
        sa, sb = pair(a, a)
        rr = one_round(sa, sb)
        assert rr.round_trips == 1
        assert rr.messages == 2  # SyncOplog and one SyncOplogAck
        assert rr.bytes_sent + rr.bytes_received < 1024
        assert rr.oplogs_sent == rr.oplogs_received == 0


def test_window_only_differences_take_two_round_trips() -> None:
    a, b = split_sets(RECENT, random.Random(7), 0.3, 0.3, 0.4)
    sa, sb = pair(OLD + a, OLD + b)
    rr = one_round(sa, sb)
    assert rr.round_trips == 2


def test_old_year_differences_descend_the_tree() -> None:
    a, b = split_sets(OLD, random.Random(8), 0.1, 0.1, 0.8)
    sa, sb = pair(a + RECENT, b + RECENT)
    rr = one_round(sa, sb)
    assert 3 <= rr.round_trips <= 4


def test_second_round_after_convergence_is_in_sync() -> None:
    a, b = split_sets(POOL, random.Random(9), 0.3, 0.3, 0.3)
    sa, sb = pair(a, b)
    one_round(sa, sb)
    req, rcv = pair_sessions(sa, sb)
    rr = run_round(req, rcv, NOW + HOUR_NS, rid(1))
    assert rr.completed and rr.round_trips == 1 and rr.messages == 2


# -- co-signatures: the same oplog, two valid copies ----------------------------------


def _copies(o: Oplog, d1: int, d2: int) -> tuple[Oplog, Oplog, Oplog]:
    """Two valid copies of MEMBER's `o`: the master's signature at create time + d1, or + d2."""
    c1 = cosign(o, WRITER, SignKind.MASTER, o.create_time + d1)
    c2 = cosign(o, WRITER, SignKind.MASTER, o.create_time + d2)
    assert c1.oplog_id == c2.oplog_id and c1.hash != c2.hash
    winner = min((c1, c2), key=lambda c: (c.update_time, c.hash))
    return c1, c2, winner


@pytest.mark.parametrize(
    ("where", "d1", "d2"),
    [
        ("old", 5, 9),  # earlier update time wins
        ("old", 9, 5),
        ("old", 0, 59 * 60 * 10**9),  # the copies' leaves sit in different hours
        ("recent", 5, 9),
        ("recent", 0, 59 * 60 * 10**9),  # different hours inside the window
    ],
)
def test_cosigned_copies_converge_on_the_select_existing_winner(
    where: str, d1: int, d2: int
) -> None:
    """A member's oplog made valid twice, by signatures at different times.

    (Equal update times with different hashes are covered by test_handle.)
    """
    # Old enough that the later signature is not in the future.
    base = OLD[:30] if where == "old" else [o for o in RECENT if o.create_time < NOW - HOUR_NS]
    shared = [ADMIT, *OLD[30:40], *RECENT[30:40]]
    for n, p in enumerate(base[:3]):
        o = member_write(p.create_time, f"member-{n}")
        c1, c2, winner = _copies(o, d1 + n, d2 + n)
        for first, second in ((c1, c2), (c2, c1)):
            sa, sb = pair([first, *shared], [second, *shared])
            one_round(sa, sb)
            assert all_oplogs(sa)[o.oplog_id].hash == winner.hash
            assert all_oplogs(sb)[o.oplog_id].hash == winner.hash


# -- dense hours: buckets split into slices -------------------------------------------

DENSE_HOUR = parse_iso("2024-03-05T06:00:00Z")
DENSE = gen(600, DENSE_HOUR, DENSE_HOUR + HOUR_NS, seed=3)  # > 512: slices split again
RECENT_HOUR = NOW - NOW % HOUR_NS - 3 * HOUR_NS
RECENT_DENSE = gen(100, RECENT_HOUR, RECENT_HOUR + HOUR_NS, seed=4)


@pytest.mark.parametrize(
    ("name", "a_count", "b_count"),
    [
        ("split vs unsplit", 600, 20),
        ("unsplit vs split", 20, 600),
        ("just split vs unsplit", SPLIT_THRESHOLD + 8, SPLIT_THRESHOLD - 2),
        ("split vs split", 600, 80),
        ("split vs empty", 600, 0),
    ],
)
def test_dense_hour_prefixes(name: str, a_count: int, b_count: int) -> None:
    rng = random.Random(name)
    a = rng.sample(DENSE, a_count)
    b = rng.sample(DENSE, b_count)
    sa, sb = pair(a + OLD[:10], b + OLD[:10])
    rr = one_round(sa, sb)
    assert rr.round_trips <= DESCENT_MAX_ROUND_TRIPS


@pytest.mark.parametrize("seed", range(3))
def test_dense_hour_random_differences(seed: int) -> None:
    rng = random.Random(seed)
    a, b = split_sets(DENSE + RECENT_DENSE + OLD[:20], rng, 0.08, 0.08, 0.8)
    sa, sb = pair(a, b)
    rr = one_round(sa, sb)
    assert rr.round_trips <= DESCENT_MAX_ROUND_TRIPS


def test_dense_hour_in_the_window() -> None:
    a, b = split_sets(RECENT_DENSE, random.Random(5), 0.2, 0.2, 0.5)
    sa, sb = pair(a, b)
    rr = one_round(sa, sb)
    assert rr.round_trips == 2


# -- the state machine -----------------------------------------------------------------

_DEFAULTS: dict[str, object] = {
    "to_sync_time": NOW - 25 * HOUR_NS,
    "list_digest": b"\0" * 64,
    "window_digest": b"\0" * 32,
    "pending": False,
    "list_differs": 0,
    "nodes": (),
    "lo": None,
    "hi": None,
    "leaves": (),
    "more": False,
    "last": True,
    "oplogs": (),
    "want_fps": (),
    "want_ranges": (),
    "cont": None,
    "next": None,
    "items": (),
    "code": RejectCode.PROTOCOL,
    "reason": "test",
}


def minimal(t: MsgType, round_id: bytes, seq: int) -> Message:
    """The smallest well-formed message of type `t`, as a peer would send it."""
    cls = MESSAGE_TYPES[t]
    args: dict[str, Any] = {f.name: _DEFAULTS.get(f.name) for f in fields(cls)}
    args.update(topic=TID, round=round_id, seq=seq)
    msg = cls(**args)
    return decode_message(encode_message(msg))


Driven = tuple[Requester | Receiver, dict[MsgType, int]]

# The request each reply type answers.
ANSWERS = {
    MsgType.SYNC_OPLOG_ACK: MsgType.SYNC_OPLOG,
    MsgType.SYNC_OPLOG_NEW_OPLOGS_ACK: MsgType.SYNC_OPLOG_NEW_OPLOGS,
    MsgType.FORCE_SYNC_OPLOG_BY_MERKLE_ACK: MsgType.FORCE_SYNC_OPLOG_BY_MERKLE,
    MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK: MsgType.FORCE_SYNC_OPLOG_BY_MERKLE,
    MsgType.SYNC_PENDING_OPLOG_ACK: MsgType.SYNC_PENDING_OPLOG,
}


def _requester_in(state: State, *, fresh: bool = False) -> Driven:
    """A requester in `state`, and the seq of an in-flight request of each type.

    In SYNCING the SyncOplog is answered already (descent and window requests
    are in flight), unless `fresh`: then only the SyncOplog is.
    """
    sa, sb = pair(OLD[:40] + RECENT[:20], OLD[20:60] + RECENT[10:30])
    if state is State.POSTSYNC:
        sa, sb = pair([ADMIT, *OLD[:20]], [ADMIT, *OLD[:20]])
        sa.write_batch(TID, [(member_write(NOW - 60 * 10**9), OplogStatus.PENDING)])
    req, rcv = pair_sessions(sa, sb)
    if state is State.IDLE:
        return req, {}
    flight: list[Message] = req.start(NOW, rid(0))
    seqs = {m.TYPE: m.seq for m in flight}
    if state is State.FAILED:
        req.abort()
    elif state is State.SYNCING and not fresh:
        flight = [r for a in rcv.receive(flight[0], NOW) for r in req.receive(a, NOW)]
        seqs = {m.TYPE: m.seq for m in flight}
        assert {MsgType.FORCE_SYNC_OPLOG_BY_MERKLE, MsgType.SYNC_OPLOG_NEW_OPLOGS} <= set(seqs)
    elif state is not State.SYNCING:
        while flight and req.state is not state:
            flight = [r for m in flight for a in rcv.receive(m, NOW) for r in req.receive(a, NOW)]
            seqs.update({m.TYPE: m.seq for m in flight})
    assert req.state is state
    return req, seqs


def _receiver_in(state: State) -> Driven:
    sa, sb = pair(OLD[:40], OLD[20:60])
    req, rcv = pair_sessions(sa, sb)
    if state is State.SERVING:
        rcv.receive(req.start(NOW, rid(0))[0], NOW)
    assert rcv.state is state
    return rcv, {}


# What a minimal message of each accepted type leads to.
EXPECTED: dict[tuple[Role, State, MsgType], set[State]] = {
    (Role.REQUESTER, State.SYNCING, MsgType.SYNC_OPLOG_ACK): {State.DONE},
    (Role.REQUESTER, State.SYNCING, MsgType.SYNC_OPLOG_NEW_OPLOGS_ACK): {State.SYNCING},
    (Role.REQUESTER, State.SYNCING, MsgType.FORCE_SYNC_OPLOG_BY_MERKLE_ACK): {State.SYNCING},
    (Role.REQUESTER, State.SYNCING, MsgType.FORCE_SYNC_OPLOG_BY_OPLOG_ACK): {State.SYNCING},
    (Role.REQUESTER, State.SYNCING, MsgType.SYNC_OPLOG_REJECT): {State.FAILED},
    (Role.REQUESTER, State.POSTSYNC, MsgType.SYNC_PENDING_OPLOG_ACK): {State.DONE},
    (Role.REQUESTER, State.POSTSYNC, MsgType.SYNC_OPLOG_REJECT): {State.FAILED},
    (Role.RECEIVER, State.IDLE, MsgType.SYNC_OPLOG): {State.SERVING},
    (Role.RECEIVER, State.SERVING, MsgType.SYNC_OPLOG): {State.SERVING},
    (Role.RECEIVER, State.SERVING, MsgType.SYNC_OPLOG_NEW_OPLOGS): {State.SERVING},
    (Role.RECEIVER, State.SERVING, MsgType.FORCE_SYNC_OPLOG_BY_MERKLE): {State.SERVING},
    (Role.RECEIVER, State.SERVING, MsgType.SYNC_PENDING_OPLOG): {State.IDLE},
}


def test_expected_table_covers_accepts() -> None:
    accepted = {(r, s, t) for (r, s), types in ACCEPTS.items() for t in types}
    assert accepted == set(EXPECTED)


@pytest.mark.parametrize("t", list(MsgType), ids=lambda t: t.name)
@pytest.mark.parametrize("key", list(ACCEPTS), ids=lambda k: f"{k[0].value}-{k[1].value}")
def test_state_machine(key: tuple[Role, State], t: MsgType) -> None:
    """Every message type in every state: accepted into a defined state, or refused."""
    role, state = key
    if role is Role.RECEIVER:
        side, _ = _receiver_in(state)
        # A new round gets a fresh round ID; requests continue the round with seq 2.
        new_round = t is MsgType.SYNC_OPLOG
        msg = minimal(t, rid(5) if new_round else rid(0), 1 if new_round else 2)
    else:
        fresh = t in (MsgType.SYNC_OPLOG_ACK, MsgType.SYNC_OPLOG_REJECT)
        side, seqs = _requester_in(state, fresh=fresh)
        request = ANSWERS.get(t)
        if t is MsgType.SYNC_OPLOG_REJECT:
            request = MsgType.SYNC_PENDING_OPLOG if state is State.POSTSYNC else MsgType.SYNC_OPLOG
        seq = seqs.get(request, 1) if request is not None else 1
        msg = minimal(t, rid(0), seq)
    before = side.state
    if t in ACCEPTS[key]:
        side.receive(msg, NOW)
        assert side.state in EXPECTED[(role, state, t)], (before, side.state)
    else:
        with pytest.raises(RemoteProtocolError, match="out of order"):
            side.receive(msg, NOW)
        if role is Role.REQUESTER and state in (State.SYNCING, State.POSTSYNC):
            assert side.state is State.FAILED
        else:
            assert side.state is before


def test_requester_refuses_every_message_once_done() -> None:
    sa, sb = pair(POOL, POOL)
    req, rcv = pair_sessions(sa, sb)
    rr = run_round(req, rcv, NOW, rid(0))
    assert rr.completed and req.state is State.DONE
    for t in MsgType:
        with pytest.raises(RemoteProtocolError):
            req.receive(minimal(t, rid(0), 1), NOW)
        assert req.state is State.DONE


def test_first_round_window_is_the_last_day() -> None:
    sa = new_store()
    put(sa, OLD[:5])
    req, _ = pair_sessions(sa, new_store())
    msg = req.start(NOW, rid(3))[0]
    assert isinstance(msg, SyncOplog)
    assert decode_message(encode_message(msg)) == msg
    assert msg.to_sync_time == NOW - 25 * HOUR_NS  # never synced: a day, less the offset


def test_a_round_basis_is_remembered_until_the_tree_or_the_hour_changes() -> None:
    """The tree list, the window and their digests are read once per tree and hour:
    a round between peers in sync reads nothing else."""
    store = new_store()
    put(store, gen(30, OLD_START, NOW, seed=41))
    view = TreeView(store, TID)
    first = view.basis(NOW)
    assert view.basis(NOW + 1) is first  # the same hour, the same tree
    assert first.list_digest == list_digest(view.tree_list(NOW))
    assert first.window_digest == window_digest(view.leaves(hour_start(NOW), window_end(NOW)))
    put(store, gen(1, NOW - HOUR_NS, NOW - 1, seed=42))  # a commit: the tree changed
    second = view.basis(NOW)
    assert second is not first and second.list_digest != first.list_digest
    later = view.basis(NOW + HOUR_NS)  # another hour: read again
    assert later is not second
    assert later.list_digest == list_digest(view.tree_list(NOW + HOUR_NS))
