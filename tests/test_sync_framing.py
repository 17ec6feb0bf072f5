"""Every message a session builds fits in one frame and its peer's limits, whatever it carries.

Found by tools/bench_sync.py at n = 10,000, d = 20,000: a SyncOplogNewOplogs
filled its records up to MAX_BODY and then added 512 wanted IDs and the
wanted ranges (267,729 bytes), and a ForceSyncOplogByOplogAck paired MAX_BODY
of records with up to 4,096 wanted IDs (264,609 bytes).  Encoding raised
UsageError; in a node, the connection failed in every round and the two
peers never converged.  The records now fill only what the IDs and ranges
leave of the frame.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core.merkle import Level
from pttsync.core.oplog import OplogStatus
from pttsync.core.sync.frames import MAX_FRAME_SIZE
from pttsync.core.sync.messages import (
    MAX_ITEM_LEAVES,
    MAX_OPLOGS,
    MAX_WANT_NODES,
    ForceSyncOplogByOplogAck,
    FpWant,
    SyncOplogNewOplogs,
)
from pttsync.core.sync.msgcodec import encode_message
from pttsync.core.sync.session import SyncConfig, pack_with_wants
from pttsync.core.sync.syncview import window_end
from pttsync.core.timeutil import HOUR_NS
from pttsync.errors import UsageError

from .synchelpers import NOW, TID, gen, ids, new_store, pair_sessions, sync

ROUND = b"r" * 16


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(st.integers(150, 4000), max_size=2500),
    st.integers(0, 3 * MAX_WANT_NODES),
    st.integers(1, 32),
    st.integers(1, MAX_ITEM_LEAVES),
)
def test_property_records_paired_with_wants_fit_in_a_frame(
    sizes: list[int], wants: int, width: int, per_node: int
) -> None:
    bodies = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
    want = [
        FpWant(Level.HOUR, 0, i * HOUR_NS, width, bytes([i % 251]) * (width * per_node))
        for i in range(wants)
    ]
    messages = pack_with_wants(bodies, want)
    for g, w in messages:
        msg = ForceSyncOplogByOplogAck(TID, ROUND, 1, tuple(g), tuple(w), False)
        assert len(encode_message(msg)) <= MAX_FRAME_SIZE
        assert len(g) <= MAX_OPLOGS and len(w) <= MAX_WANT_NODES
    # Everything is carried, once and in order.
    assert [b for g, _ in messages for b in g] == bodies
    assert [x for _, w in messages for x in w] == want


def test_a_request_with_records_ids_and_ranges_fits_in_a_frame() -> None:
    records = gen(1500, NOW - 300 * 24 * 3600 * 10**9, NOW - 10**12, seed=11)
    store = new_store()
    store.write_batch(TID, [(o, OplogStatus.VALID) for o in records])
    requester, _ = pair_sessions(store, new_store())
    requester.start(NOW, ROUND)
    # What a descent queues when both sides miss a lot: records to push, leaves
    # (by fingerprint) and time ranges to fetch.  (The queues are the round's own;
    # a natural round fills them this full only at tens of thousands of differences.)
    rng = random.Random(5)
    found = requester._f
    found.push_ids.extend(o.oplog_id for o in records)
    found.want_fps.extend(
        FpWant(Level.HOUR, 0, h * HOUR_NS, 8, rng.randbytes(8 * 32)) for h in range(2000)
    )
    step = 10**12
    found.want_ranges.extend((t, t + step // 2, (t, b"")) for t in range(0, 300 * step, step))
    pushed = 0
    while (msg := requester._next_request()) is not None:
        assert isinstance(msg, SyncOplogNewOplogs)
        assert len(encode_message(msg)) <= MAX_FRAME_SIZE
        pushed += len(msg.oplogs)
        requester._out.clear()
    assert pushed == len(records)


def test_a_peer_holding_records_far_ahead_of_the_round_still_syncs() -> None:
    """A peer with records hundreds of hours ahead of T (its clock jumped forward)
    listed every hour up to them in its window: 600 hours made a tree list of over
    512 nodes, which the requester refused as malformed, so that peer could sync with
    no one.  The window now ends 48 hours after hour(T) (syncview.WINDOW_SPAN)."""
    hour = 3600 * 10**9
    old = gen(200, NOW - 300 * 24 * hour, NOW - 2 * hour, seed=12)
    ahead = gen(600, NOW + hour, NOW + 600 * hour, seed=13)
    requester, receiver = new_store(), new_store()
    requester.write_batch(TID, [(o, OplogStatus.VALID) for o in old[:100]])
    receiver.write_batch(TID, [(o, OplogStatus.VALID) for o in old[100:] + ahead])
    report = sync(requester, receiver)  # raised RemoteProtocolError (a malformed list)
    # Everything up to now is exchanged.  Of the rest, what is in the window is sent and
    # refused as too new (more than clock_skew ahead); what lies beyond waits.
    skew = SyncConfig().clock_skew
    assert ids(requester) == {o.oplog_id for o in old} | {
        o.oplog_id for o in ahead if o.update_time <= NOW + skew
    }
    assert {o.oplog_id for o in old} <= ids(receiver)
    in_window = [
        o for o in ahead if NOW + skew < o.update_time < window_end(NOW - 25 * hour)
    ]  # T: never synced
    assert 0 < len(in_window) < len(ahead) // 10
    assert all(r.oplogs_received <= 100 + len(in_window) for r in report.rounds)


def test_a_window_too_long_for_the_protocol_is_refused() -> None:
    hour = 3600 * 10**9
    SyncConfig(max_window=40 * hour)
    with pytest.raises(UsageError, match="48-hour window"):
        SyncConfig(max_window=47 * hour)
