"""The containers copies share (core/store/overlay.py, chunks.py) against plain models.

Each test runs random operations on a family of copies, on both the shared
containers and plain ones (a dict, a sorted list) copied the ordinary way,
and compares every read after each step: no copy may see another's change.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core.store import chunks
from pttsync.core.store.chunks import SortedChunks
from pttsync.core.store.overlay import Overlay, split

KEYS = st.integers(0, 40)
MAP_OPS = st.lists(
    st.tuples(st.sampled_from(["set", "del", "pop", "copy"]), st.integers(0, 7), KEYS, KEYS),
    max_size=80,
)


@settings(max_examples=200, deadline=None)
@given(MAP_OPS)
def test_overlays_read_as_dicts_copied_the_plain_way(ops: list[tuple[str, int, int, int]]) -> None:
    shared: list[Any] = [{}]  # dicts until their first copy, overlays after
    plain: list[dict[int, int]] = [{}]
    for op, which, key, value in ops:
        i = which % len(shared)
        if op == "set":
            shared[i][key] = value
            plain[i][key] = value
        elif op == "del":
            if key in plain[i]:
                del shared[i][key]
                del plain[i][key]
            else:
                with pytest.raises(KeyError):
                    del shared[i][key]
        elif op == "pop":
            assert shared[i].pop(key, None) == plain[i].pop(key, None)
        else:
            shared[i], copy = split(shared[i])
            shared.append(copy)
            plain.append(dict(plain[i]))
        for s, p in zip(shared, plain, strict=True):
            assert dict(s) == p and len(s) == len(p) and sorted(s) == sorted(p)
            assert all((k in s) == (k in p) and s.get(k) == p.get(k) for k in range(41))


def test_an_overlay_rebases_once_its_changes_outgrow_half_its_base() -> None:
    first, _ = split({k: k for k in range(10)})
    assert isinstance(first, Overlay)
    for k in range(10, 16):
        first[k] = k
    again, _ = split(first)  # 6 changes over a base of 10: a new base of 16
    assert isinstance(again, Overlay) and len(again.base) == 16 and not again.own
    assert split(again)[0] is again


CHUNK_OPS = st.lists(
    st.tuples(st.sampled_from(["add", "add", "remove", "copy"]), st.integers(0, 5), KEYS),
    max_size=120,
)


@settings(max_examples=200, deadline=None)
@given(CHUNK_OPS, st.integers(0, 40), st.integers(0, 40))
def test_sorted_chunks_read_as_sorted_lists_copied_the_plain_way(
    ops: list[tuple[str, int, int]], lo: int, hi: int
) -> None:
    old = chunks.CHUNK
    chunks.CHUNK = 2  # split and emptied chunks within a few dozen steps
    try:
        shared: list[SortedChunks[tuple[int, str]]] = [SortedChunks(lambda x: x[0])]
        plain: list[list[tuple[int, str]]] = [[]]
        for op, which, key in ops:
            i = which % len(shared)
            if op == "add":
                there = any(k == key for k, _ in plain[i])
                assert shared[i].add((key, f"v{key}")) is not there
                if not there:
                    plain[i] = sorted([*plain[i], (key, f"v{key}")])
            elif op == "remove":
                item = next((x for x in plain[i] if x[0] == key), None)
                if key % 2:
                    assert shared[i].pop(key) == item  # the item taken out, or None
                else:
                    assert shared[i].remove(key) is (item is not None)
                plain[i] = [x for x in plain[i] if x[0] != key]
            else:
                shared.append(shared[i].copy())
                plain.append(list(plain[i]))
            for s, p in zip(shared, plain, strict=True):
                assert list(s) == p and len(s) == len(p)
                assert s.find(key) == next((x for x in p if x[0] == key), None)
                assert s.between(lo, hi) == [x for x in p if lo <= x[0] < hi]
                assert s.from_key(lo, 3) == [x for x in p if x[0] >= lo][:3]
    finally:
        chunks.CHUNK = old
