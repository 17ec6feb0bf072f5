"""The tree list is compared segment by segment, and a dense window through its hours.

SyncOplog carries one digest per segment of the tree list (years, months,
days, hours); the receiver sends only the segments that differ.  A window
with more leaves than `window_list_max` is not listed: its hour nodes are
sent and descended like the list.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from pttsync.core.merkle import SPLIT_THRESHOLD, Level
from pttsync.core.sync.messages import WINDOW_NODES, ListNode, SyncOplogAck
from pttsync.core.sync.session import SyncConfig
from pttsync.core.sync.syncview import LIST_LEVELS, differing_segments, list_digest
from pttsync.core.timeutil import HOUR_NS, parse_iso
from pttsync.errors import RemoteProtocolError, UsageError
from pttsync.localsync import sync_local

from .synchelpers import (
    NOW,
    OLD_END,
    OLD_START,
    TID,
    gen,
    pair,
    pair_sessions,
    rid,
    split_sets,
    sync_and_check,
)

OLD = gen(120, OLD_START, OLD_END, seed=41)
THIS_MONTH = gen(40, parse_iso("2026-03-01"), parse_iso("2026-03-13"), seed=42)
WINDOW = gen(400, NOW - 20 * HOUR_NS, NOW, seed=43)


def first_ack(sa: object, sb: object, config: SyncConfig | None = None) -> SyncOplogAck:
    req, rcv = pair_sessions(sa, sb, config)  # type: ignore[arg-type]
    (sync_oplog,) = req.start(NOW, rid(1))
    ack = rcv.receive(sync_oplog, NOW)[0]
    assert isinstance(ack, SyncOplogAck)
    return ack


def test_segment_digests_name_the_segments_that_differ() -> None:
    year = ListNode(Level.YEAR, parse_iso("2024-01-01"), b"y" * 32)
    month = ListNode(Level.MONTH, parse_iso("2026-01-01"), b"m" * 32)
    assert len(list_digest([])) == 32 + 8 * len(LIST_LEVELS)
    assert differing_segments(list_digest([year, month]), list_digest([year, month])) == 0
    assert differing_segments(list_digest([year]), list_digest([year, month])) == 0b10
    other = ListNode(Level.YEAR, year.start, b"z" * 32)
    assert differing_segments(list_digest([other, month]), list_digest([year, month])) == 0b01
    # Segment fingerprints that collide while the lists differ: every segment is sent.
    mine, theirs = list_digest([other, month]), list_digest([year, month])
    forged = theirs[:32] + mine[32:]
    assert differing_segments(mine, forged) == 0b1111


def test_only_the_differing_segment_is_sent() -> None:
    a, b = split_sets(THIS_MONTH, random.Random(1), 0.2, 0.2, 0.6)
    sa, sb = pair(OLD + a, OLD + b)
    ack = first_ack(sa, sb)
    assert ack.list_differs & ~WINDOW_NODES == 0b0100  # days of this month only
    assert ack.nodes and all(n.level == Level.DAY for n in ack.nodes)
    sync_and_check(sa, sb)


def test_a_dense_window_is_descended_not_listed() -> None:
    a, b = split_sets(WINDOW, random.Random(2), 0.1, 0.1, 0.8)
    assert len(b) > SyncConfig().window_list_max
    sa, sb = pair(OLD + a, OLD + b)
    ack = first_ack(sa, sb)
    assert ack.list_differs == WINDOW_NODES and ack.lo is None and not ack.leaves
    assert ack.nodes and all(
        n.level == Level.HOUR and n.start >= NOW - 26 * HOUR_NS for n in ack.nodes
    )
    outcome = sync_and_check(sa, sb)
    assert len(outcome.report.rounds) == 1 and outcome.report.rounds[0].round_trips <= 5


def test_a_sparse_window_is_listed() -> None:
    a, b = split_sets(WINDOW[:60], random.Random(3), 0.1, 0.1, 0.8)
    sa, sb = pair(a, b)
    req, rcv = pair_sessions(sa, sb)
    (sync_oplog,) = req.start(NOW, rid(1))
    first, *chunks = rcv.receive(sync_oplog, NOW)
    assert isinstance(first, SyncOplogAck) and first.list_differs == 0 and not first.nodes
    assert chunks and all(isinstance(c, SyncOplogAck) and c.lo is not None for c in chunks)
    sync_and_check(sa, sb)


@pytest.mark.parametrize("window_list_max", [0, 10, 10_000])
def test_both_window_paths_converge_to_the_same_stores(window_list_max: int) -> None:
    a, b = split_sets(WINDOW + OLD, random.Random(4), 0.15, 0.15, 0.6)
    sa, sb = pair(a, b)
    config = SyncConfig(window_list_max=window_list_max)
    report = sync_local(sa, sb, sa.topics()[0].topic_id, peer_a=b"A" * 32, peer_b=b"B" * 32,
                        now=NOW, config=config)  # fmt: skip
    assert report.converged and len(report.rounds) == 1


def _tamper(ack: SyncOplogAck, **changes: object) -> SyncOplogAck:
    return replace(ack, **changes)  # type: ignore[arg-type]


def test_nodes_of_a_segment_not_flagged_are_refused() -> None:
    a, b = split_sets(THIS_MONTH, random.Random(1), 0.2, 0.2, 0.6)
    sa, sb = pair(OLD + a, OLD + b)
    req, rcv = pair_sessions(sa, sb)
    (sync_oplog,) = req.start(NOW, rid(1))
    ack = rcv.receive(sync_oplog, NOW)[0]
    assert isinstance(ack, SyncOplogAck)
    sneaky = _tamper(ack, list_differs=0b0001)  # claims the years differ, sends days
    with pytest.raises(RemoteProtocolError, match="not in the list"):
        req.receive(sneaky, NOW)


def test_window_hours_without_the_flag_are_refused() -> None:
    a, b = split_sets(WINDOW, random.Random(2), 0.1, 0.1, 0.8)
    sa, sb = pair(a, b)
    req, rcv = pair_sessions(sa, sb)
    (sync_oplog,) = req.start(NOW, rid(1))
    ack = rcv.receive(sync_oplog, NOW)[0]
    assert isinstance(ack, SyncOplogAck) and ack.list_differs == WINDOW_NODES
    with pytest.raises(RemoteProtocolError, match="not asked for"):
        req.receive(_tamper(ack, list_differs=0b0001), NOW)


@pytest.mark.parametrize(
    "bad",
    [
        {"list_chunk": 5000},
        {"want_per_request": 0},
        {"pipeline": 0},
        {"clock_skew": -1},
        {"reply_budget": 1.5},
    ],
)
def test_sync_config_refuses_settings_a_peer_would_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(UsageError, match="SyncConfig"):
        SyncConfig(**bad)  # type: ignore[arg-type]


def test_a_receiver_with_a_huge_hour_descends_instead_of_sending_it_all() -> None:
    """A sends its ≤32 leaves of an hour where B holds more than leaf_diff_max: B
    answers with its slices (a bounded reply, one round trip more), and the round
    still converges.

    The hour is in a month of the list's months segment, so the descent reaches
    it with A sending leaves (month → B's hours of the day → A's leaves).
    """
    hour = parse_iso("2026-02-10T04:00:00Z")
    dense = gen(200, hour, hour + HOUR_NS, seed=44)
    trips = []
    # Nothing flat, so A sends its hour as leaves (fingerprint.py sends small nodes flat).
    for config in (SyncConfig(flat_max=0), SyncConfig(flat_max=0, leaf_diff_max=SPLIT_THRESHOLD)):
        sa, sb = pair(OLD + dense[:20], OLD + dense)
        report = sync_local(sa, sb, TID, peer_a=b"A" * 32, peer_b=b"B" * 32, now=NOW, config=config)
        assert report.converged and len(report.rounds) == 1
        assert report.rounds[0].oplogs_received == 180
        trips.append(report.rounds[0].round_trips)
    assert trips[1] == trips[0] + 1  # the limit made B descend instead of answering in full
