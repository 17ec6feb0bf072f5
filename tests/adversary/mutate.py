"""Byte-level mutations: AFL-style havoc, splicing, and a few format-aware helpers.

Every mutator takes a `random.Random` and returns new bytes; none keeps state,
so a run is a pure function of its seed.  `havoc` stacks a few random edits:
bit flips, interesting bytes and integers, inserts, deletes, duplicated or
moved chunks, truncation, and splices with another input of the pool.
"""

from __future__ import annotations

import base64
import binascii
import random
import textwrap
from collections.abc import Callable, Sequence

Mutator = Callable[[random.Random, bytes, Sequence[bytes]], bytes]
"""A mutation: (rng, the input, the pool it came from) -> a new input."""

# CBOR heads and simple values, ASCII edges, and the usual boundary bytes.
INTERESTING_BYTES = bytes.fromhex(
    "00 01 0a 17 18 19 1a 1b 1c 1f 20 37 38 3f 40 41 57 58 5f 60 61 7f 80 81 9f a0 a1 bf c0 c2"
    " d8 d9 e0 f4 f5 f6 f7 f8 f9 fa fb fe ff"
)
# fmt: off
INTERESTING_INTS = (
    0, 1, 2, 7, 15, 16, 17, 23, 24, 31, 32, 33, 63, 64, 65, 127, 128, 200, 255, 256, 1023, 1024,
    4096, 4097, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**62, 2**63 - 1, 2**63,
    2**64 - 1, 256 * 1024, 256 * 1024 + 1, 80 * 1024, 9214646399999999999, 9214646400000000000,
)
# fmt: on


def _chunk_len(rng: random.Random, limit: int) -> int:
    """A small length, occasionally a larger one, never over `limit` (at least 1)."""
    if limit <= 1:
        return 1
    n = 1 << rng.randrange(0, 6) if rng.random() < 0.85 else rng.randrange(1, limit + 1)
    return min(n, limit)


def flip_bits(rng: random.Random, data: bytearray) -> None:
    for _ in range(rng.choice((1, 1, 1, 2, 4))):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)


def set_byte(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    data[i] = rng.choice(INTERESTING_BYTES) if rng.random() < 0.6 else rng.randrange(256)


def add_to_byte(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    data[i] = (data[i] + rng.choice((-2, -1, 1, 2, 8, -8))) % 256


def set_int(rng: random.Random, data: bytearray) -> None:
    """Overwrite 1, 2, 4 or 8 bytes with a boundary integer (big-endian, as CBOR and frames)."""
    width = rng.choice((1, 2, 4, 8))
    value = rng.choice(INTERESTING_INTS) + rng.choice((0, 0, 0, -1, 1))
    raw = (value % (1 << (8 * width))).to_bytes(width, "big")
    i = rng.randrange(len(data))
    data[i : i + width] = raw


def delete_chunk(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    del data[i : i + _chunk_len(rng, len(data) - i)]


def insert_bytes(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data) + 1)
    n = _chunk_len(rng, 64)
    if rng.random() < 0.5:
        data[i:i] = bytes(rng.randrange(256) for _ in range(n))
    else:
        data[i:i] = bytes([rng.choice(INTERESTING_BYTES)]) * n


def duplicate_chunk(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    chunk = data[i : i + _chunk_len(rng, len(data) - i)]
    j = rng.randrange(len(data) + 1)
    data[j:j] = chunk * rng.choice((1, 1, 2, 8))


def overwrite_chunk(rng: random.Random, data: bytearray) -> None:
    i = rng.randrange(len(data))
    chunk = data[i : i + _chunk_len(rng, len(data) - i)]
    j = rng.randrange(len(data))
    data[j : j + len(chunk)] = chunk


def truncate(rng: random.Random, data: bytearray) -> None:
    del data[rng.randrange(len(data)) :]


EDITS: tuple[Callable[[random.Random, bytearray], None], ...] = (
    flip_bits,
    flip_bits,
    set_byte,
    set_byte,
    add_to_byte,
    set_int,
    set_int,
    delete_chunk,
    insert_bytes,
    duplicate_chunk,
    overwrite_chunk,
    truncate,
)


def havoc(rng: random.Random, data: bytes, pool: Sequence[bytes], max_edits: int = 8) -> bytes:
    """A few stacked random edits, sometimes a splice with another input of `pool`."""
    out = bytearray(data)
    if pool and rng.random() < 0.1:
        out = bytearray(splice(rng, data, pool))
    for _ in range(1 + rng.randrange(max(1, rng.choice((1, 2, 4, max_edits))))):
        if not out:
            out += bytes([rng.choice(INTERESTING_BYTES)])
            continue
        rng.choice(EDITS)(rng, out)
    return bytes(out)


def splice(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """A prefix of `data` and a suffix of another input (at any offsets)."""
    other = rng.choice(pool)
    return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]


def light(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One small edit: most of the input still parses, so the edit reaches deep checks."""
    out = bytearray(data)
    if out:
        rng.choice((flip_bits, set_byte, add_to_byte, set_int))(rng, out)
    return bytes(out)


# ---------------------------------------------------------------------------
# Text formats.

PEM_LABELS = (
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "EC PRIVATE KEY",
    "RSA PRIVATE KEY",
    "DSA PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "PUBLIC KEY",
    "CERTIFICATE",
    "X",
)


def pem(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Mutate a PEM file's DER body (so the edit reaches the key parser) or its armour."""
    lines = data.split(b"\n")
    begin = next((i for i, line in enumerate(lines) if line.startswith(b"-----BEGIN ")), None)
    end = next((i for i, line in enumerate(lines) if line.startswith(b"-----END ")), None)
    if begin is None or end is None or end <= begin:
        return havoc(rng, data, pool)
    try:
        der = base64.b64decode(b"".join(lines[begin + 1 : end]))
    except (binascii.Error, ValueError):
        return havoc(rng, data, pool)
    roll = rng.random()
    head, tail = lines[: begin + 1], lines[end:]
    if roll < 0.7:
        der = light(rng, der, ()) if rng.random() < 0.5 else havoc(rng, der, (), max_edits=3)
    elif roll < 0.85:
        label = rng.choice(PEM_LABELS).encode()
        head = [*lines[:begin], b"-----BEGIN " + label + b"-----"]
        if rng.random() < 0.7:
            tail = [b"-----END " + label + b"-----", *lines[end + 1 :]]
    else:
        extra = rng.choice(
            (
                b"Proc-Type: 4,ENCRYPTED",
                b"DEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF",
                b"",
                b"x: y",
            )
        )
        head = [*head, extra]
    body = textwrap.wrap(base64.b64encode(der).decode(), rng.choice((64, 64, 76, 1, 1000)))
    return b"\n".join([*head, *(line.encode() for line in body), *tail])
