"""CBOR-aware mutations: on the encoded items, and on the decoded value.

* Item-level (`item_edit`): the seed's data items are located once (`items`),
  then one is edited at the byte level: a non-minimal head, another integer
  or length, a duplicated, dropped, added or swapped map entry, an
  indefinite length, a tag, a float or simple value, a wrong major type,
  deep nesting, an item moved from elsewhere.  Mostly non-canonical: the
  strict decoders must refuse all of it with their typed errors.
* Value-level (`value_edit`): the seed is decoded once, one node of the value
  is replaced (a boundary integer, a byte string one byte short, a list one
  over its limit, a missing or unknown key, a wrong type...) and the result
  encoded canonically, so it passes the canonical check and reaches each
  field's own validation.  Byte strings that hold CBOR (a message's records,
  a record's data) are mutated the same way, inside.
"""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

import cbor2

from pttsync.core import codec

from .mutate import INTERESTING_INTS, havoc


class Span(NamedTuple):
    start: int
    head_end: int
    end: int
    major: int
    arg: int
    children: tuple[int, ...]  # indexes into the span list (map: key, value, key, value...)


def _head(data: bytes, i: int) -> tuple[int, int, int] | None:
    """(major type, argument, end of the head) of the item at `i`, definite lengths only."""
    b = data[i]
    major, info = b >> 5, b & 31
    if info < 24:
        return major, info, i + 1
    if info > 27:
        return None
    n = 1 << (info - 24)
    if i + 1 + n > len(data):
        return None
    return major, int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n


@functools.lru_cache(maxsize=4096)
def items(data: bytes) -> tuple[Span, ...]:
    """Every data item of a well-formed, definite-length encoding (empty if it is not one)."""
    out: list[Span] = []

    def walk(i: int, depth: int) -> int:
        if depth > 64 or i >= len(data):
            raise ValueError
        head = _head(data, i)
        if head is None:
            raise ValueError
        major, arg, j = head
        index = len(out)
        out.append(Span(i, j, j, major, arg, ()))
        kids: list[int] = []
        if major in (2, 3):
            j += arg
        elif major in (4, 5, 6):
            for _ in range(1 if major == 6 else arg * (2 if major == 5 else 1)):
                kids.append(len(out))
                j = walk(j, depth + 1)
        if j > len(data):
            raise ValueError
        out[index] = Span(i, head[2], j, major, arg, tuple(kids))
        return j

    try:
        if walk(0, 0) != len(data):
            return ()
    except (ValueError, IndexError):
        return ()
    return tuple(out)


def _enc_head(major: int, arg: int, width: int = 0) -> bytes:
    """A head with `arg` in the shortest form, or forced to 1/2/4/8 argument bytes."""
    if width == 0:
        return codec.head(major, arg % 2**64)
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + (arg % (1 << (8 * width))).to_bytes(width, "big")


def _hexes(text: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(h) for h in text.split())


# Null, booleans, zero, empty items, NaN, +infinity, undefined.
SHORT_ITEMS = _hexes("f6 f5 00 20 40 60 80 a0 f97e00 fb7ff0000000000000 f7")
# Tags: dates, bignums, 23, 24 (encoded CBOR), 32 (URI), self-describe, 28/29 (shared refs)...
TAGS = _hexes("c0 c1 c2 c3 d7 d818 d820 d9d9f7 d81c d81d d825 d880")
# Undefined, a simple value, simple 16, +infinity (half), NaN (single), a stray break.
SIMPLES = _hexes("f7 f820 f0 f97c00 fa7fc00000 ff")


def _other_item(rng: random.Random, pool: Sequence[bytes]) -> bytes:
    """Some item's bytes from some input of the pool (or a short literal)."""
    if pool and rng.random() < 0.8:
        src = rng.choice(pool)
        spans = items(src)
        if spans:
            s = rng.choice(spans)
            return src[s.start : s.end]
    return rng.choice(SHORT_ITEMS)


def item_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One byte-level edit of one data item (see the module text)."""
    spans = items(data)
    if not spans:
        return havoc(rng, data, pool)
    s = rng.choice(spans)
    body = data[s.head_end : s.end]
    whole = data[s.start : s.end]
    new: bytes
    roll = rng.randrange(13)
    if roll == 0:  # the same argument in a longer head: not minimal
        new = _enc_head(s.major, s.arg, rng.choice((1, 2, 4, 8))) + body
    elif roll == 1:  # another integer value, or another length or count
        arg = rng.choice((s.arg + 1, s.arg - 1, 0, *INTERESTING_INTS))
        new = _enc_head(s.major, max(0, arg)) + body
    elif roll in (2, 3, 4) and s.major in (4, 5) and s.children:
        new = _edit_container(rng, data, spans, s, roll, pool)
    elif roll == 5 and s.major in (2, 3, 4, 5):  # indefinite length
        new = bytes([s.major << 5 | 31]) + (whole if s.major in (2, 3) else body) + b"\xff"
    elif roll == 6:  # a tag in front
        tag = rng.choice(TAGS)
        new = tag + whole
    elif roll == 7 and s.major == 0:  # the integer as a float, or as a negative integer
        new = rng.choice(
            (
                cbor2.dumps(float(s.arg)),
                b"\xfb" + struct.pack(">d", float(s.arg)),
                _enc_head(1, s.arg),
                b"\xf9\x00\x00",
            )
        )
    elif roll == 8:  # a simple value or float
        new = rng.choice(SIMPLES)
    elif roll == 9:  # another major type, the same argument
        new = bytes([(rng.randrange(8) << 5) | (data[s.start] & 31)]) + data[s.start + 1 : s.end]
    elif roll == 10:  # nested deeper than any limit
        depth = rng.choice((31, 32, 33, 40, 200))
        new = b"\x81" * depth + whole
    else:  # another item in its place
        new = _other_item(rng, pool)
    return data[: s.start] + new + data[s.end :]


def _edit_container(
    rng: random.Random,
    data: bytes,
    spans: tuple[Span, ...],
    s: Span,
    roll: int,
    pool: Sequence[bytes],
) -> bytes:
    """Duplicate, drop or swap an element (a map entry: a key and its value), counts fixed."""
    step = 2 if s.major == 5 else 1
    elems = [
        data[spans[s.children[k]].start : spans[s.children[k + step - 1]].end]
        for k in range(0, len(s.children), step)
    ]
    i = rng.randrange(len(elems))
    if roll == 2:  # a duplicate key, or a repeated element
        elems.insert(i + rng.randrange(2), elems[i])
    elif roll == 3:
        if rng.random() < 0.5:
            del elems[i]
        else:  # an unknown key (or a stray element)
            extra = _other_item(rng, pool)
            key = rng.choice((b"\x61x", b"\x60", b"\x00", b"\x41v", b"\x61" + bytes([0x61 + i])))
            elems.insert(i, key + extra if step == 2 else extra)
    else:
        j = rng.randrange(len(elems))
        elems[i], elems[j] = elems[j], elems[i]
    count = len(elems) + rng.choice((0, 0, 0, 0, 1, -1))
    return _enc_head(s.major, max(0, count)) + b"".join(elems)


# ---------------------------------------------------------------------------
# Value-level edits.


@functools.lru_cache(maxsize=4096)
def decoded(data: bytes) -> tuple[Any, tuple[tuple[Any, ...], ...]]:
    """The seed's value and the paths of all its nodes (the root is the path ())."""
    try:
        value = cbor2.loads(data)
    except Exception:
        return None, ()
    paths: list[tuple[Any, ...]] = []

    def walk(v: Any, path: tuple[Any, ...]) -> None:
        paths.append(path)
        if len(paths) > 20000:
            return
        if type(v) is list:
            for i, x in enumerate(v):
                walk(x, (*path, i))
        elif type(v) is dict:
            for k, x in v.items():
                walk(x, (*path, k))

    walk(value, ())
    return value, tuple(paths)


# fmt: off
LIST_SIZES = (0, 1, 2, 3, 5, 15, 16, 17, 31, 32, 33, 64, 65, 256, 257, 512, 513, 2048, 2049,
              4096, 4097)
BYTE_SIZES = (0, 1, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200)
ODD_VALUES: tuple[Any, ...] = (
    None, True, False, 0, -1, 1.0, 0.5, float("nan"), float("inf"), -(2**64), 2**64 - 1, 2**64,
    -(2**64) - 1, "", "x", "\x07bell", "\u00e9" * 201, "\ud7ff", b"", b"\x00", [], {}, [None],
    {"": None}, {0: 1}, {b"k": 1},
)
# fmt: on


def _replacement(rng: random.Random, v: Any) -> Any:
    """Something to put in place of `v`: a boundary value of its type, or another type."""
    t = type(v)
    if rng.random() < 0.25:
        return rng.choice(ODD_VALUES)
    if t is int:
        return rng.choice((v + 1, v - 1, -v, v * 2, v // 2, *INTERESTING_INTS, -(2**63), -1))
    if t is bool:
        return not v if rng.random() < 0.5 else int(v)
    if t is bytes:
        inner = decoded(v)[0] if v[:1] and v[0] >> 5 in (4, 5) else None
        if inner is not None and rng.random() < 0.6:
            return value_edit(rng, v, ())
        n = rng.choice(BYTE_SIZES)
        if rng.random() < 0.5:
            return v[:n] if n <= len(v) else v + bytes(n - len(v))
        return v[:-1] if v and rng.random() < 0.5 else v + v[:1]
    if t is str:
        return rng.choice(
            ("", v + "\x00", v[:-1], v * 3, v.upper(), "\u202e" + v, v + "é", "a" * 301)
        )
    if t is list:
        out = list(v)
        op = rng.randrange(5)
        if op == 0 and out:
            del out[rng.randrange(len(out))]
        elif op == 1 and out:
            out.insert(rng.randrange(len(out) + 1), out[rng.randrange(len(out))])
        elif op == 2:
            n = rng.choice(LIST_SIZES)
            out = (out * (n // max(1, len(out)) + 1))[:n] if out else [0] * n
        elif op == 3:
            out.reverse()
        else:
            out.append(rng.choice(ODD_VALUES))
        return out
    if t is dict:
        out_d = dict(v)
        keys = list(out_d)
        op = rng.randrange(3)
        if op == 0 and keys:
            del out_d[rng.choice(keys)]
        elif op == 1:
            out_d[rng.choice(("x", "zz", "", 0, b"t", "v", "t", *keys))] = rng.choice(ODD_VALUES)
        elif keys:
            k = rng.choice(keys)
            out_d[k] = rng.choice(ODD_VALUES)
        return out_d
    return rng.choice(ODD_VALUES)


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """`value` with the node at `path` replaced (containers on the path copied)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if type(value) is list and type(head) is int:
        out = list(value)
        out[head] = _replace(out[head], rest, new)
        return out
    if type(value) is not dict:
        raise KeyError(head)  # an earlier edit retyped this path
    out_d = dict(value)
    out_d[head] = _replace(out_d[head], rest, new)
    return out_d


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        value = value[step]
    return value


def encode(value: Any) -> bytes:
    """Canonical CBOR when possible, else cbor2's (bignums as tags, for instance)."""
    try:
        return codec.dumps(value)
    except (TypeError, ValueError):
        return cbor2.dumps(value, canonical=True)


def value_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Replace 1-3 nodes of the decoded seed and encode it canonically."""
    value, paths = decoded(data)
    if not paths:
        return havoc(rng, data, pool)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        path = rng.choice(paths)
        try:
            value = _replace(value, path, _replacement(rng, _get(value, path)))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed or retyped this path
    return encode(value)
