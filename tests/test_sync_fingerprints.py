"""Compact descent (fingerprint.py): short fingerprints never lose a difference.

With 1- and 2-byte fingerprints nearly every comparison collides; sync must
still converge, each collision being caught (a node whose fingerprint
differs while none of its children's does) and compared at full width.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core.merkle import Level
from pttsync.core.oplog import OplogStatus
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.sync.fingerprint import child_starts, encode_children, fingerprinted
from pttsync.core.sync.messages import (
    ChildRef,
    ForceSyncOplogByMerkle,
    FpWant,
    Item,
    SyncOplogAck,
)
from pttsync.core.sync.session import SyncConfig
from pttsync.core.sync.syncview import TreeView
from pttsync.core.timeutil import HOUR_NS, hour_start, parse_iso
from pttsync.errors import UsageError
from pttsync.localsync import round_id, run_round

from .synchelpers import NOW, TID, digest, gen, ids, new_store, pair_sessions, sync

YEAR = 365 * 24 * HOUR_NS
POOL = gen(240, NOW - 2 * YEAR, NOW - 2 * HOUR_NS, seed=41) + gen(
    40, NOW - 30 * HOUR_NS, NOW - HOUR_NS, seed=42
)  # old oplogs over two years, and some in the window
DENSE = gen(120, NOW - 20 * 24 * HOUR_NS, NOW - 19 * 24 * HOUR_NS, seed=43)  # 5 an hour


def stores(a: list[int], b: list[int]) -> tuple[Store, Store]:
    sa, sb = new_store(), new_store()
    sa.write_batch(TID, [(POOL[i], OplogStatus.VALID) for i in a])
    sb.write_batch(TID, [(POOL[i], OplogStatus.VALID) for i in b])
    return sa, sb


def converge(sa: Store, sb: Store, config: SyncConfig, rounds: int) -> int:
    """Sync until the digests agree; returns the collisions both sides met."""
    union = ids(sa) | ids(sb)
    report = sync(sa, sb, config=config, max_rounds=rounds)
    assert report.converged, report.as_json()
    assert digest(sa) == digest(sb)
    assert ids(sa) == ids(sb) == union
    return report.rejected


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    st.sampled_from([1, 2, 8, 32]),
    st.sampled_from([0, 4, 32]),
    st.lists(st.integers(0, 2), min_size=len(POOL), max_size=len(POOL)),
)
def test_property_any_width_converges(width: int, flat: int, sides: list[int]) -> None:
    """0: only A holds it, 1: only B, 2: both; at any width and flat threshold."""
    a = [i for i, s in enumerate(sides) if s in (0, 2)]
    b = [i for i, s in enumerate(sides) if s in (1, 2)]
    sa, sb = stores(a, b)
    assert converge(sa, sb, SyncConfig(fingerprint=width, flat_max=flat), rounds=16) == 0


def test_one_byte_fingerprints_collide_and_fall_back_to_full_width() -> None:
    """One oplog missing on B, for each of a busy day's: at 1 byte some fingerprints collide."""
    cfg = SyncConfig(fingerprint=1, flat_max=0)
    collisions = 0
    for i in range(len(DENSE)):
        sa, sb = new_store(), new_store()
        sa.write_batch(TID, [(o, OplogStatus.VALID) for o in DENSE])
        sb.write_batch(TID, [(o, OplogStatus.VALID) for j, o in enumerate(DENSE) if j != i])
        req, rcv = pair_sessions(sa, sb, cfg)
        for n in range(8):
            run_round(req, rcv, NOW, round_id(b"fp", n))
            if digest(sa) == digest(sb):
                break
        assert digest(sa) == digest(sb), i
        collisions += req.stats.collisions + rcv.stats.collisions
    assert collisions > 0


def test_default_width_is_far_smaller_than_full_hashes() -> None:
    """The same descent at 8 bytes costs under half what it costs at 32."""
    rng = random.Random(3)
    a = [i for i in range(len(POOL)) if rng.random() < 0.8]
    b = [i for i in range(len(POOL)) if rng.random() < 0.8]
    sizes = {}
    for width in (8, 32):
        sa, sb = stores(a, b)
        report = sync(sa, sb, config=SyncConfig(fingerprint=width, flat_max=0))
        kinds = report.rounds[0].bytes_by_type
        sizes[width] = kinds["ForceSyncOplogByMerkle"] + kinds["ForceSyncOplogByMerkleAck"]
    assert sizes[8] < sizes[32] / 2, sizes


@pytest.mark.parametrize(
    ("level", "start", "count"),
    [
        (6, parse_iso("2024-01-01"), 12),
        (5, parse_iso("2024-02-01"), 29),
        (5, parse_iso("2025-02-01"), 28),
        (4, parse_iso("2025-03-30"), 24),
        (3, parse_iso("2025-03-30T05:00:00Z"), 16),
    ],
)
def test_child_starts_name_every_possible_child(level: int, start: int, count: int) -> None:
    starts = child_starts(level, 0, start)
    assert len(starts) == count and starts[0] == start and list(starts) == sorted(set(starts))


def test_fingerprinted_cuts_every_hash() -> None:
    sa, _ = stores(list(range(60)), [])
    view = TreeView(sa, TID)
    year = view.tree.tree_list(NOW)[0]
    item = fingerprinted(view.item((year.level, 0, year.start)), 5)
    assert item.hash is not None and len(item.hash) == 5
    assert all(len(c.hash) == 5 for c in item.children)  # type: ignore[union-attr]


def test_a_listing_that_shows_nothing_falls_back_to_the_window_hours_at_full_width() -> None:
    """The window digests differed, yet every listed mark matches one of mine: the marks
    collide.  The requester compares every hour of the window at full width instead."""
    recent = POOL[-40:]
    sa, sb = stores(list(range(len(POOL))), list(range(len(POOL) - 1)))  # B lacks one
    req, rcv = pair_sessions(sa, sb)
    (first,) = req.start(NOW, round_id(b"win", 0))
    acks = rcv.receive(first, NOW)
    listing = [a for a in acks if isinstance(a, SyncOplogAck) and a.lo is not None]
    assert listing  # B listed its window: the digests differ
    # A forged last chunk that shows exactly A's own window: nothing to diff.
    mine = TreeView(sa, TID).leaves(listing[0].lo[0], 2**62)  # type: ignore[index]
    forged = dataclasses.replace(
        listing[-1],
        lo=listing[0].lo,
        hi=None,
        leaves=tuple((x.time, x.hash[:8]) for x in mine),
        more=False,
    )
    before = req.stats.collisions
    out = req.receive(forged, NOW)
    assert req.stats.collisions == before + 1
    items = [i for m in out if isinstance(m, ForceSyncOplogByMerkle) for i in m.items]
    hours = {hour_start(o.update_time) for o in recent if o.update_time >= listing[0].lo[0]}  # type: ignore[index]
    assert {i.start for i in items} >= hours
    assert all(i.hash is None or len(i.hash) == 32 for i in items)  # full width
    # And the round, carried on, converges.
    while out:
        replies = [r for m in out for r in rcv.receive(m, NOW)]
        out = [q for r in replies for q in req.receive(r, NOW)]
    assert digest(sa) == digest(sb)


def test_wants_are_cut_to_the_leaves_a_request_may_ask_for() -> None:
    """`SyncConfig.want_per_request` bounds the leaves one request asks for; a node's
    wants over it are cut, and the rest go first in the next request."""
    sa, sb = stores([], [])
    req, _ = pair_sessions(sa, sb)
    found = req._f
    first = FpWant(Level.HOUR, 0, 0, 4, bytes(range(40 * 4)))
    second = FpWant(Level.HOUR, 0, HOUR_NS, 4, b"\xff" * (10 * 4))
    found.want_fps.extend([first, second])
    taken = [found.take_wants(16, 10**6) for _ in range(4)]
    assert [[len(w.fps) // 4 for w in t] for t in taken] == [[16], [16], [8, 8], [2]]
    assert b"".join(w.fps for t in taken for w in t) == first.fps + second.fps
    assert not found.want_fps


@pytest.mark.parametrize("leaf_children", [True, False])
def test_an_item_whose_children_disagree_with_its_leaf_flag_is_refused_by_the_encoder(
    leaf_children: bool,
) -> None:
    """Found by the adversary test (its `leaf_flag` forgery): the encoder failed with an
    AttributeError deep inside instead of saying the message cannot be encoded."""
    start = parse_iso("2026-01-01")
    kids: tuple[ChildRef, ...] | tuple[bytes, ...] = (
        (ChildRef(start, b"\x01" * 8),) if leaf_children else (b"\x01" * 8,)
    )
    item = Item(Level.YEAR, 0, start, b"\x02" * 8, leaf_children, kids)
    with pytest.raises(UsageError, match="children must all be"):
        encode_children(item)
