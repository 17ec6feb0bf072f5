"""Canonical CBOR: the direct encoders match cbor2's canonical mode, decoding is strict."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core import codec


@pytest.mark.parametrize(
    "n",
    [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**40, 2**63 - 1, 2**64 - 1],
)
def test_uint_matches_cbor2(n: int) -> None:
    assert codec.uint(n) == cbor2.dumps(n, canonical=True)


@pytest.mark.parametrize("size", [0, 1, 23, 24, 32, 64, 255, 256, 65535, 65536])
def test_bstr_and_tstr_match_cbor2(size: int) -> None:
    assert codec.bstr(b"\x01" * size) == cbor2.dumps(b"\x01" * size, canonical=True)
    assert codec.tstr("é" * size) == cbor2.dumps("é" * size, canonical=True)


def test_array_and_null_match_cbor2() -> None:
    items = [b"a" * 32, 5, "x", None]
    encoded = [codec.bstr(b"a" * 32), codec.uint(5), codec.tstr("x"), codec.NULL]
    assert codec.array(encoded) == cbor2.dumps(items, canonical=True)
    assert codec.array([]) == cbor2.dumps([], canonical=True)


def test_head_refuses_values_over_64_bits() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        codec.head(0, 2**64)


def test_loads_round_trips_canonical_values() -> None:
    value = {"a": [1, b"x", None, "t"], "bb": {"c": 2**40}}
    assert codec.loads(codec.dumps(value), max_size=1000) == value


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (bytes.fromhex("a2616201616101"), "canonical"),  # keys out of order
        (bytes.fromhex("a2616101616102"), "well-formed"),  # duplicate key
        (bytes.fromhex("1817"), "canonical"),  # 23 in two bytes
        (bytes.fromhex("9f01ff"), "well-formed"),  # indefinite-length array
        (bytes.fromhex("c24101"), "canonical"),  # bignum tag for 1
        (bytes.fromhex("fb3ff0000000000000"), "canonical"),  # 1.0 as a double
        (bytes.fromhex("0102"), "canonical"),  # trailing bytes: cbor2 ignores them, we do not
        (bytes.fromhex("5a0000ffff"), "well-formed"),  # truncated byte string
        (b"", "well-formed"),
    ],
)
def test_loads_rejects_non_canonical_input(data: bytes, reason: str) -> None:
    with pytest.raises(codec.CBORFormatError, match=reason):
        codec.loads(data, max_size=1000)


def test_loads_rejects_oversize_before_decoding() -> None:
    with pytest.raises(codec.CBORFormatError) as info:
        codec.loads(codec.dumps(b"x" * 100), max_size=50)
    assert info.value.oversize


def test_loads_rejects_deep_nesting() -> None:
    deep = b"\x81" * 100 + b"\x01"
    with pytest.raises(codec.CBORFormatError):
        codec.loads(deep, max_size=1000)


def test_field_readers_are_strict() -> None:
    m = {"i": True, "b": "text", "l": [1] * 5, "n": None}
    with pytest.raises(codec.CBORFormatError, match="integer"):
        codec.get_int(m, "i", 0, 10)  # a bool is not an integer here
    with pytest.raises(codec.CBORFormatError, match="byte string"):
        codec.get_bytes(m, "b")
    with pytest.raises(codec.CBORFormatError) as info:
        codec.get_list(m, "l", max_items=4)
    assert info.value.oversize and info.value.field == "l"
    assert codec.get_optional_bytes(m, "n", size=32) is None
    with pytest.raises(codec.CBORFormatError, match="unknown"):
        codec.check_keys({"a": 1, "zz": 2}, frozenset({"a"}), "thing")
    with pytest.raises(codec.CBORFormatError, match="missing"):
        codec.check_keys({}, frozenset({"a"}), "thing")


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -5,
        2**64 - 1,
        1.5,
        "t",
        b"b",
        [1, [2, {"a": None}]],
        {1: "x", b"k": [], "s": {}},
    ],
)
def test_plain_values(value: object) -> None:
    assert codec.is_plain(value)
    assert codec.is_canonical(codec.dumps(value), max_size=1000)


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        frozenset(),
        (1, 2),
        2**64,
        -(2**64) - 1,
        cbor2.CBORTag(99, 1),
        {(1,): 2},
        cbor2.undefined,
    ],
)
def test_non_plain_values(value: object) -> None:
    assert not codec.is_plain(value)


def test_tagged_data_is_not_plain_canonical() -> None:
    assert not codec.is_canonical(cbor2.dumps({1, 2}, canonical=True), max_size=100)
    assert not codec.is_canonical(bytes.fromhex("c11a514b67b0"), max_size=100)  # a date


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=20),
    st.binary(max_size=40),
)  # fmt: skip


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=6), st.one_of(_scalars, st.lists(_scalars, max_size=5)),
                       max_size=8))  # fmt: skip
def test_the_unchecked_encoding_of_our_own_maps_is_the_canonical_one(
    value: dict[str, object],
) -> None:
    assert codec.dumps_text_keyed(value) == codec.dumps(value)
