"""Interrupted rounds: cut a real exchange after every message, then check nothing broke.

For every k from 0 to M (M: the messages of the uninterrupted round), the
same initial stores sync with every message after the first k dropped.  Then
both stores must be consistent, neither may have lost an oplog it held, and
a following sync must converge on the union.
"""

from __future__ import annotations

import random

import pytest

from pttsync.core.oplog import OplogStatus
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.sync.session import SyncConfig
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.localsync import run_round

from .synchelpers import (
    ADMIT,
    NOW,
    OLD_END,
    OLD_START,
    RECENT_START,
    TID,
    copy_store,
    digest,
    gen,
    ids,
    member_write,
    pair,
    pair_sessions,
    rid,
    split_sets,
)

HOUR = parse_iso("2023-09-10T04:00:00Z")
POOL = (
    gen(40, OLD_START, OLD_END, seed=31)  # descent through years
    + gen(50, HOUR, HOUR + HOUR_NS, seed=32)  # a split hour
    + gen(25, RECENT_START, NOW, seed=33)  # the window
)
PENDING = member_write(NOW - 600 * 10**9, "member-doc")  # MEMBER's write, pending on A

CONFIGS = {
    "default": None,
    # Small chunks and one request in flight: many more messages to cut between.
    "small": SyncConfig(
        pipeline=1, want_per_request=4, reply_budget=3000, list_chunk=4, list_budget=8
    ),
}


def initial() -> tuple[Store, Store]:
    a, b = split_sets(POOL, random.Random(30), 0.25, 0.25, 0.4)
    sa, sb = pair([ADMIT, *a], [ADMIT, *b])
    assert ids(sa) - ids(sb) and ids(sb) - ids(sa)
    sa.write_batch(TID, [(PENDING, OplogStatus.PENDING)])  # so postsync runs, and B co-signs
    return sa, sb


def held(store: Store) -> set[bytes]:
    """Every oplog ID the store holds, in any status."""
    return ids(store) | {o.oplog_id for o in store.oplogs(TID, OplogStatus.PENDING)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_cut_after_every_message(name: str) -> None:
    config = CONFIGS[name]
    base_a, base_b = initial()
    held_a, held_b = held(base_a), held(base_b)
    union = ids(base_a) | ids(base_b)
    final = union | {PENDING.oplog_id}  # the member's write becomes valid everywhere

    sa, sb = copy_store(base_a), copy_store(base_b)
    req, rcv = pair_sessions(sa, sb, config, signers=True)
    full = run_round(req, rcv, NOW, rid(0))
    assert full.completed and digest(sa) == digest(sb)
    assert ids(sa) == ids(sb) == final  # co-signed by B in postsync, and back to A
    total = full.messages
    assert total >= 8 and full.round_trips >= 3  # descent, window and postsync all ran

    for k in range(total + 1):
        sa, sb = copy_store(base_a), copy_store(base_b)
        req, rcv = pair_sessions(sa, sb, config, signers=True)
        cut = run_round(req, rcv, NOW, rid(0), cut_after=k)
        assert cut.messages == k
        assert cut.completed == (k == total)
        assert sa.check(TID) == [] and sb.check(TID) == [], k
        assert held_a <= held(sa) and held_b <= held(sb), k
        assert ids(sa) <= final and ids(sb) <= final
        # The member's write is never lost: pending on A, or valid (co-signed) somewhere.
        assert PENDING.oplog_id in held(sa), k
        if k % 2 == 0:
            req, rcv = pair_sessions(sa, sb, config, signers=True)  # a new connection
        # Another round (on odd k the same sessions: the receiver is mid-round).
        rr = run_round(req, rcv, NOW, rid(1))
        assert rr.completed, k
        assert digest(sa) == digest(sb), k
        assert ids(sa) == ids(sb) == final, k
        assert sa.check(TID) == [] and sb.check(TID) == []
