"""Format-aware mutators: frame streams, resealed oplogs, tokens, JSON lines, SQLite files.

Each knows one input format well enough to keep most of it intact and break
one thing, so the edit reaches the decoder's deeper checks instead of the
first one: a frame whose payload is mutated but whose length still fits, a
record whose ID, hash and signatures are recomputed after the edit, a token
whose inner CBOR is edited, a request with one odd value, a store file with
one page or header field changed.
"""

from __future__ import annotations

import base64
import binascii
import json
import random
from collections.abc import Sequence
from typing import Any

from pttsync.core.oplog import (
    Oplog,
    Signature,
    SignKind,
    compute_hash,
    compute_oplog_id,
    cosign_message,
    creator_message,
)
from pttsync.core.sync.frames import HEADER_SIZE, MAX_FRAME_SIZE

from . import cbormutate
from .corpus import DEVICE, FOUNDER, MASTER2, MEMBER
from .mutate import INTERESTING_INTS, havoc, light

# ---------------------------------------------------------------------------
# Frame streams.


def split_frames(stream: bytes) -> list[bytes]:
    """The payloads of a well-formed stream's frames (a trailing partial frame dropped)."""
    out, i = [], 0
    while i + HEADER_SIZE <= len(stream):
        size = int.from_bytes(stream[i : i + HEADER_SIZE], "big")
        if i + HEADER_SIZE + size > len(stream):
            break
        out.append(stream[i + HEADER_SIZE : i + HEADER_SIZE + size])
        i += HEADER_SIZE + size
    return out


def frame_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Mutate one frame's payload (framed again), or lie in one frame's length."""
    frames = split_frames(data)
    if not frames:
        return havoc(rng, data, pool)
    i = rng.randrange(len(frames))
    payload = frames[i]
    lie = None
    roll = rng.random()
    if roll < 0.6:
        payload = rng.choice((cbormutate.value_edit, cbormutate.item_edit, light))(rng, payload, ())
    elif roll < 0.8:
        lie = (
            rng.choice(
                (
                    0,
                    1,
                    len(payload) - 1,
                    len(payload) + 1,
                    MAX_FRAME_SIZE,
                    MAX_FRAME_SIZE + 1,
                    2**32 - 1,
                    *INTERESTING_INTS,
                )
            )
            % 2**32
        )
    elif roll < 0.9:
        frames.insert(i, payload)
    else:
        del frames[i]
        return b"".join(len(p).to_bytes(HEADER_SIZE, "big") + p for p in frames)
    frames[i] = payload
    return b"".join(
        (lie if j == i and lie is not None else len(p)).to_bytes(HEADER_SIZE, "big") + p
        for j, p in enumerate(frames)
    )


# ---------------------------------------------------------------------------
# Oplog records: edit, then recompute the ID, hash and (our keys') signatures.

SIGNERS = {i.peer_id: i for i in (FOUNDER, MASTER2, MEMBER, DEVICE)}


def _sigs(items: Any) -> tuple[Signature, ...]:
    return tuple(Signature(s[0], s[1], s[2]) for s in items)


def _reseal(m: dict[str, Any], resign: bool) -> None:
    """Make `m` self-consistent again: ID, signatures by keys we hold, update time, hash."""
    ms, is_ = _sigs(m["ms"]), _sigs(m["is"])
    o = Oplog(
        m["v"],
        m["tp"],
        b"",
        m["cr"],
        m["ct"],
        m["ob"],
        m["op"],
        m["pv"],
        m["d"],
        m["cs"],
        ms,
        is_,
        m["ut"],
        b"",
    )
    oid = compute_oplog_id(o)
    cs = m["cs"]
    if resign:
        creator = SIGNERS.get(m["cr"])
        if creator is not None:
            cs = creator.sign(creator_message(oid))

        def again(kind: SignKind, sigs: tuple[Signature, ...]) -> tuple[Signature, ...]:
            return tuple(
                Signature(s.signer, s.time, k.sign(cosign_message(kind, oid, s.signer, s.time)))
                if (k := SIGNERS.get(s.signer)) is not None
                else s
                for s in sigs
            )

        ms, is_ = again(SignKind.MASTER, ms), again(SignKind.INTERNAL, is_)
    ut = m["ut"]
    if resign and type(m["ct"]) is int:
        ut = max([m["ct"], *(s.time for s in (*ms, *is_))])
    m.update(id=oid, cs=cs, ut=ut)
    m["ms"] = [[s.signer, s.time, s.sig] for s in ms]
    m["is"] = [[s.signer, s.time, s.sig] for s in is_]
    m["h"] = compute_hash(oid, cs, ms, is_, ut)


def reseal(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """A value-level edit of a record, then its ID, hash and signatures made to match."""
    edited = cbormutate.value_edit(rng, data, pool)
    try:
        m = cbormutate.decoded(edited)[0]
        if type(m) is not dict:
            return edited
        m = dict(m)
        _reseal(m, resign=rng.random() < 0.7)
        return cbormutate.encode(m)
    except Exception:  # a field of the wrong type: the edit stays unsealed
        return edited


# ---------------------------------------------------------------------------
# Invite tokens: "ptt1" + lowercase unpadded base32 of canonical CBOR.


def token_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """Edit the CBOR inside a token (re-encoded), or the token's text."""
    text = data.decode("ascii", "replace")
    b32 = text[4:].upper()
    try:
        raw = base64.b32decode(b32 + "=" * (-len(b32) % 8))
    except (binascii.Error, ValueError):
        return havoc(rng, data, pool)
    roll = rng.random()
    if roll < 0.75:
        raw = rng.choice((cbormutate.value_edit, cbormutate.item_edit, light))(rng, raw, ())
        body = base64.b32encode(raw).decode()
        if rng.random() < 0.8:
            body = body.rstrip("=").lower()
        return ("ptt1" + body).encode()
    tweaks = (
        lambda t: t.upper(),
        lambda t: "  " + t + "\n",
        lambda t: t + "=" * rng.randrange(1, 8),
        lambda t: t[:4] + t[5:],
        lambda t: "PTT1" + t[4:],
        lambda t: t + "a" * rng.randrange(1, 1100),
        lambda t: t.replace("a", "\u0430"),
        lambda t: t[:4] + "\u00df" + t[4:],
        lambda t: t + "\x00",
    )
    return bytes(rng.choice(tweaks)(text), "utf-8", "surrogateescape")


# ---------------------------------------------------------------------------
# Control request lines (JSON).

JSON_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    0,
    -1,
    1.5,
    10**30,
    -(10**30),
    "",
    "x",
    "a" * 1100,
    "\ud800",
    "\u0000",
    [],
    {},
    [1],
    {"op": "ping"},
    1e308,
)
JSON_TEXTS = (
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b"1e999",
    b"1" * 5000,
    b"[" * 100000,
    b'"\\ud800"',
    b'"\\u00"',
    b"01",
    b"1.",
    b"tru",
    b"\xff",
    b'{"a":1,}',
)


def json_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One odd value, key or op in a request, or a JSON oddity, or another encoding."""
    try:
        request = json.loads(data)
    except ValueError:
        return havoc(rng, data, pool)
    if type(request) is not dict:
        return havoc(rng, data, pool)
    roll = rng.randrange(7)
    keys = list(request)
    if roll == 0 and keys:
        request[rng.choice(keys)] = rng.choice(JSON_VALUES)
    elif roll == 1 and keys:
        del request[rng.choice(keys)]
    elif roll == 2:
        request[rng.choice(("key", "value", "topic", "limit", "deleted", "x", "op", ""))] = (
            rng.choice(JSON_VALUES)
        )
    elif roll == 3:
        request["op"] = rng.choice(("put", "list", "member", "PING", "ping ", "", "__class__"))
    elif roll == 4 and keys:  # a duplicate key, or a raw oddity as a value
        k = json.dumps(rng.choice(keys))
        tail = b"," + k.encode() + b":" + rng.choice((b"1", *JSON_TEXTS[:8])) + b"}"
        return json.dumps(request, separators=(",", ":")).encode()[:-1] + tail
    elif roll == 5:
        text = json.dumps(request, ensure_ascii=rng.random() < 0.5)
        return text.encode(
            rng.choice(("utf-16", "utf-16-le", "utf-32", "utf-8-sig", "latin-1")), "surrogatepass"
        )
    else:
        return rng.choice(JSON_TEXTS)
    return json.dumps(request).encode("utf-8", "surrogatepass")


# ---------------------------------------------------------------------------
# SQLite store files.

PAGE = 4096
HEADER_FIELDS = (
    (16, 2),
    (18, 1),
    (19, 1),
    (20, 1),
    (21, 1),
    (24, 4),
    (28, 4),
    (32, 4),
    (36, 4),
    (40, 4),
    (44, 4),
    (48, 4),
    (52, 4),
    (56, 4),
    (60, 4),
    (64, 4),
    (68, 4),
    (92, 4),
    (96, 4),
)


def store_edit(rng: random.Random, data: bytes, pool: Sequence[bytes]) -> bytes:
    """One SQLite-aware edit: a header field, a page's bytes, a whole page, the length."""
    out = bytearray(data)
    pages = max(1, len(out) // PAGE)
    roll = rng.randrange(10)
    if roll == 0:  # a database header field
        offset, width = rng.choice(HEADER_FIELDS)
        value = rng.choice((0, 1, 2, 3, 4, 512, 1024, 65536, *INTERESTING_INTS))
        out[offset : offset + width] = (value % (1 << (8 * width))).to_bytes(width, "big")
    elif roll in (1, 2, 3, 4, 5):  # a few edits inside one page (its header, cells, records)
        p = rng.randrange(pages)
        start = p * PAGE + (100 if p == 0 else 0)
        page = light(rng, bytes(out[start : (p + 1) * PAGE]), ())
        if rng.random() < 0.5:
            page = havoc(rng, page, (), max_edits=4)[: PAGE - (100 if p == 0 else 0)]
        out[start : start + len(page)] = page
    elif roll == 6:  # a page zeroed, or another page copied over it
        p, q = rng.randrange(pages), rng.randrange(pages)
        out[p * PAGE : (p + 1) * PAGE] = (
            bytes(PAGE) if rng.random() < 0.5 else data[q * PAGE : (q + 1) * PAGE]
        )
    elif roll == 7:  # the same page of another store (a splice at page granularity)
        other = rng.choice(pool)
        p = rng.randrange(min(pages, max(1, len(other) // PAGE)))
        out[p * PAGE : (p + 1) * PAGE] = other[p * PAGE : (p + 1) * PAGE]
    elif roll == 8:  # truncated or extended
        cut = rng.choice(
            (rng.randrange(pages) * PAGE, rng.randrange(len(out) + 1), len(out) + PAGE)
        )
        out = out[:cut] + bytes(max(0, cut - len(out)))
    else:
        return havoc(rng, data, pool, max_edits=4)
    return bytes(out)
