"""Canonical CBOR: the one encoding for everything that is hashed, signed or stored.

Encoding follows RFC 8949 section 4.2.1 (core deterministic encoding): the
shortest form of every integer and length, definite lengths only, floats in
their shortest exact form, and map keys sorted by the bytewise order of their
encodings.  (cbor2's own `canonical=True` sorts keys length-first, the older
RFC 7049 rule, which differs for keys of mixed types; so pttsync encodes
itself and uses cbor2 only to decode, and for single floats.)

Only CBOR's *plain* data model is encoded: null, booleans, integers within
64 bits, floats, text, byte strings, arrays, and maps with text, integer or
byte-string keys.  No tags, so every implementation decodes the same values.

Decoding is strict: the bytes must be exactly the canonical encoding of what
they decode to.  That one rule rejects duplicate keys, unsorted keys,
non-minimal integers, indefinite lengths, floats that could be shorter, tags
and trailing bytes, so a record has exactly one byte form and hashing it is
stable.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, NoReturn

import cbor2

if TYPE_CHECKING:
    from collections.abc import Mapping

# Nesting deeper than this is refused before it can cost anything.
MAX_DEPTH = 32


class CBORFormatError(ValueError):
    """Bytes that are not canonical CBOR, or a field of the wrong shape.

    Internal to the core: callers convert it to the public error that says
    whose fault it is (a malformed oplog, a remote protocol violation...).
    `field` names the offending key, `oversize` tells a size limit from a type error.
    """

    def __init__(self, message: str, *, field: str = "", oversize: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.oversize = oversize


# ---------------------------------------------------------------------------
# Direct canonical encoding of fixed-shape values, for the hot paths.
#
# Records, signing messages and node hashes have a fixed shape made of
# unsigned integers, byte strings, text, null and arrays; building their
# canonical bytes directly costs a fraction of a general encoder call.  The
# tests check every use byte for byte against `dumps`.


def head(major: int, n: int) -> bytes:
    """The canonical head of a data item: major type and argument, shortest form."""
    if n < 0:
        raise ValueError(f"a CBOR head argument cannot be negative ({_short(n)})")
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")
    if n < 0x10000000000000000:
        return bytes((major << 5 | 27,)) + n.to_bytes(8, "big")
    raise ValueError(f"{_short(n)} does not fit in 64 bits")


_UINT_SMALL = [head(0, n) for n in range(256)]
_BSTR_HEADS = [head(2, n) for n in range(256)]
_U64 = struct.Struct(">BQ").pack


def uint(n: int) -> bytes:
    if 0 <= n < 0x100:
        return _UINT_SMALL[n]
    if n >= 0x100000000:  # times in nanoseconds, the common large case
        return _U64(0x1B, n) if n < 0x10000000000000000 else head(0, n)
    return head(0, n)


def bstr(b: bytes) -> bytes:
    n = len(b)
    return (_BSTR_HEADS[n] if n < 0x100 else head(2, n)) + b


def tstr(text: str) -> bytes:
    raw = text.encode("utf-8")
    return head(3, len(raw)) + raw


def array(items: list[bytes]) -> bytes:
    """An array of already-encoded items."""
    return head(4, len(items)) + b"".join(items)


NULL = b"\xf6"


def dumps(value: object) -> bytes:
    """Encode a plain value as canonical CBOR (RFC 8949 core deterministic encoding).

    Raises:
        TypeError: the value is outside the plain data model (see `is_plain`).
        ValueError: an integer does not fit in 64 bits.
    """
    if _text_keyed(value, MAX_DEPTH, False):
        # cbor2's canonical form sorts keys length-first; for text keys that is
        # exactly RFC 8949's bytewise order of the encoded keys (the head holds
        # the length), so cbor2's C encoder gives the same bytes, much faster.
        return cbor2.dumps(value, canonical=True)
    out: list[bytes] = []
    _encode(value, out, MAX_DEPTH)
    return b"".join(out)


def dumps_text_keyed(value: dict[str, object]) -> bytes:
    """`dumps` of a map our own code built: text keys, and values that are null,
    booleans, integers well inside 64 bits, text, bytes, or lists of them.

    The same bytes as `dumps` (tests/test_codec.py compares them), without the
    walk `dumps` makes first to check that cbor2's C encoder may take the value:
    a node message is sent once per link and batch, so the check was the larger
    part of encoding one (net/wire.py).
    """
    return cbor2.dumps(value, canonical=True)


_INT_RANGE = range(-(2**64), 2**64)


def _text_keyed(v: object, depth: int, sorted_keys: bool) -> bool:
    """True if `v` holds only null, booleans, 64-bit integers, text, bytes, lists and
    maps whose keys are all text (and, with `sorted_keys`, already in canonical order).

    The values the fast paths of `dumps` and `loads` may leave to cbor2's C code.
    """
    if depth < 0:
        return False
    t = type(v)
    if t is bytes or t is str or t is bool or v is None:
        return True
    if t is int:
        return v in _INT_RANGE
    if t is list:
        for x in v:  # type: ignore[attr-defined]
            tx = type(x)
            if tx is bytes or tx is str:  # the usual items (records, IDs): no call
                continue
            if not _text_keyed(x, depth - 1, sorted_keys):
                return False
        return True
    if t is dict:
        last: tuple[int, bytes] | None = None
        for k, x in v.items():  # type: ignore[attr-defined]
            if type(k) is not str:
                return False
            if sorted_keys:
                raw = k.encode()
                key = (len(raw), raw)
                if last is not None and key <= last:
                    return False
                last = key
            tx = type(x)
            if tx is bytes or tx is str or tx is bool:  # the usual values: no call
                continue
            if not _text_keyed(x, depth - 1, sorted_keys):
                return False
        return True
    return False  # floats (their shortest form is checked the slow way), tags, others


def _encode(v: object, out: list[bytes], depth: int) -> None:
    if depth < 0:
        raise ValueError("value is nested too deeply")
    match v:
        case None:
            out.append(NULL)
        case bool():  # before int: a bool is an int in Python, not in CBOR
            out.append(b"\xf5" if v else b"\xf4")
        case int():
            out.append(uint(v) if v >= 0 else head(1, -1 - v))
        case str():
            out.append(tstr(v))
        case bytes():
            out.append(bstr(v))
        case float():
            out.append(cbor2.dumps(v, canonical=True))  # the shortest exact float form
        case list():
            out.append(head(4, len(v)))
            for item in v:
                _encode(item, out, depth - 1)
        case dict():
            pairs = []
            for k, item in v.items():
                if isinstance(k, bool) or not isinstance(k, str | int | bytes):
                    raise TypeError(f"a map key must be text, an integer or bytes, not {k!r}")
                pairs.append((dumps(k), item))
            pairs.sort(key=lambda pair: pair[0])  # RFC 8949: bytewise order of encoded keys
            out.append(head(5, len(pairs)))
            for k, item in pairs:
                out.append(k)
                _encode(item, out, depth - 1)
        case _:
            raise TypeError(f"{type(v).__name__} is not in CBOR's plain data model")


def loads(data: bytes, *, max_size: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode canonical CBOR strictly.

    Raises:
        CBORFormatError: the input is over `max_size`, is not well-formed, has
            trailing bytes, or is not the canonical encoding of its value.
    """
    value = loads_unchecked(data, max_size=max_size, max_depth=max_depth)
    # Fast path: plain values whose maps have text keys in canonical order are
    # canonical exactly when cbor2 re-encodes them (in the order read) to `data`.
    if _text_keyed(value, max_depth, True) and cbor2.dumps(value) == data:
        return value
    try:
        again = dumps(value)
    except (TypeError, ValueError) as exc:  # tags, bignums, undefined...
        raise CBORFormatError(f"not plain CBOR ({exc})") from None
    if again != data:
        raise CBORFormatError("not in canonical (RFC 8949 deterministic) form")
    return value


def loads_unchecked(data: bytes, *, max_size: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode well-formed CBOR within limits, *without* the canonical check.

    Only for callers that check canonical form themselves, by re-encoding what
    they built from the value and comparing it with `data` (decode_oplog does,
    with its fast fixed-shape encoder).
    """
    if len(data) > max_size:
        raise CBORFormatError(f"{len(data)} bytes is over the limit of {max_size}", oversize=True)
    try:
        return cbor2.loads(
            data, max_depth=max_depth, allow_indefinite=False, allow_duplicate_keys=False
        )
    except Exception as exc:  # cbor2 raises several types, all meaning "bad bytes"
        raise CBORFormatError(f"not well-formed CBOR ({exc})") from None


def is_plain(value: object) -> bool:
    """True if `value` is in CBOR's plain data model, so `dumps` can encode it.

    That is null, booleans, integers within 64 bits, floats, text, byte
    strings, arrays (lists) and maps (dicts) with text, integer or byte-string
    keys: no tags (sets, dates, bignums, decimals...), tuples or undefined.
    """
    try:
        dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def is_canonical(data: bytes, *, max_size: int) -> bool:
    """True if `data` is one canonical, plain CBOR item within `max_size` bytes."""
    try:
        loads(data, max_size=max_size)
    except CBORFormatError:
        return False
    return True


# ---------------------------------------------------------------------------
# Field readers for strict decoding of maps.


def _fail(field: str, message: str, *, oversize: bool = False) -> NoReturn:
    raise CBORFormatError(message, field=field, oversize=oversize)


def check_keys(m: object, required: frozenset[str], what: str) -> Mapping[str, Any]:
    """Check that `m` is a map with exactly the `required` text keys."""
    if not isinstance(m, dict):
        _fail("", f"{what} must be a CBOR map, not {type(m).__name__}")
    keys = set(m)
    unknown = keys - required
    if unknown:
        _fail(sorted(_short(k) for k in unknown)[0], f"unknown field in {what}")
    missing = required - keys
    if missing:
        _fail(sorted(missing)[0], f"missing field in {what}")
    return m


def get_int(m: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]; booleans are not integers here."""
    v = m[key]
    if type(v) is not int:
        _fail(key, f"must be an integer, not {type(v).__name__}")
    if not lo <= v <= hi:
        _fail(key, f"{_short(v)} is out of range [{lo}, {hi}]")
    return v


def _short(value: object) -> str:
    """A short printable form of a value from an untrusted peer."""
    if type(value) is int and not -(10**18) < value < 10**18:
        return "<a very large integer>"
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:37] + "..."


def get_bytes(
    m: Mapping[str, Any], key: str, *, size: int | None = None, max_size: int | None = None
) -> bytes:
    """A byte string, of exactly `size` bytes or at most `max_size` bytes."""
    return as_bytes(m[key], key, size=size, max_size=max_size)


def as_bytes(
    v: object, field: str, *, size: int | None = None, max_size: int | None = None
) -> bytes:
    if type(v) is not bytes:
        _fail(field, f"must be a byte string, not {type(v).__name__}")
    if size is not None and len(v) != size:
        _fail(field, f"must be {size} bytes, not {len(v)}")
    if max_size is not None and len(v) > max_size:
        _fail(field, f"{len(v)} bytes is over the limit of {max_size}", oversize=True)
    return v


def get_optional_bytes(m: Mapping[str, Any], key: str, *, size: int) -> bytes | None:
    """Null, or a byte string of exactly `size` bytes."""
    v = m[key]
    if v is None:
        return None
    return as_bytes(v, key, size=size)


def get_list(m: Mapping[str, Any], key: str, *, max_items: int) -> list[Any]:
    """An array of at most `max_items` items."""
    v = m[key]
    if type(v) is not list:
        _fail(key, f"must be an array, not {type(v).__name__}")
    if len(v) > max_items:
        _fail(key, f"{len(v)} items is over the limit of {max_items}", oversize=True)
    return v
