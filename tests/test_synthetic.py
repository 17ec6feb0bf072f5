"""Synthetic history (pttsync/synthetic.py): what `pttsync gen` writes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core.identity import Identity
from pttsync.synthetic import synthetic_drafts

ME = Identity.from_seed(b"s" * 32)
TOPIC = b"t" * 32


@settings(max_examples=50, deadline=None, derandomize=True)
@given(st.integers(1, 300), st.integers(1, 10**12), st.integers(0, 2**32))
def test_property_in_order_times_increase_and_stay_in_range(
    count: int, span: int, seed: int
) -> None:
    start = 1_700_000_000 * 10**9
    times = [
        d.create_time
        for d in synthetic_drafts(
            ME.peer_id, TOPIC, count, start, start + span, seed, in_order=True
        )
    ]
    assert len(times) == count
    assert times == sorted(times)
    assert all(start <= t < start + span for t in times)
    # One in each of `count` equal slices (its start, if the slice is empty).
    for i, t in enumerate(times):
        lo, hi = start + span * i // count, start + span * (i + 1) // count
        assert lo <= t < hi or t == lo == hi


@pytest.mark.parametrize("in_order", [False, True])
def test_the_same_seed_gives_the_same_drafts(in_order: bool) -> None:
    def drafts() -> list[bytes]:
        it = synthetic_drafts(ME.peer_id, TOPIC, 50, 0, 10**15, 7, in_order=in_order)
        return [d.message for d in it]

    assert drafts() == drafts()
