"""Framing and the PIP-11 sync messages: round trips, canonical form, strict decoding."""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Callable
from typing import Any

import cbor2
import pytest

from pttsync.core import codec
from pttsync.core.merkle import Leaf, Level
from pttsync.core.oplog import MAX_OPLOG_SIZE
from pttsync.core.sync.fingerprint import fingerprinted
from pttsync.core.sync.frames import HEADER_SIZE, MAX_FRAME_SIZE, FrameReader, encode_frame
from pttsync.core.sync.messages import (
    MAX_ITEM_CHILDREN,
    MAX_ITEM_LEAVES,
    MAX_ITEMS,
    MAX_LEAVES,
    MAX_LIST_NODES,
    MAX_OPLOGS,
    MAX_REASON,
    MAX_WANT_NODES,
    MAX_WANT_RANGES,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    ChildRef,
    ForceSyncOplogByMerkle,
    ForceSyncOplogByMerkleAck,
    ForceSyncOplogByOplogAck,
    FpWant,
    Item,
    ListNode,
    Message,
    MsgType,
    RejectCode,
    SyncOplog,
    SyncOplogAck,
    SyncOplogNewOplogs,
    SyncOplogNewOplogsAck,
    SyncOplogReject,
    SyncPendingOplog,
    SyncPendingOplogAck,
)
from pttsync.core.sync.msgcodec import decode_message, encode_message
from pttsync.core.timeutil import HOUR_NS, MAX_TIME
from pttsync.errors import RemoteProtocolError, UsageError

T0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z
TOPIC = hashlib.sha256(b"topic").digest()
ROUND = bytes(range(16))


def h(label: object) -> bytes:
    """A 32-byte hash (or oplog ID) named by `label`."""
    return hashlib.sha256(repr(label).encode()).digest()


def leaf(i: int) -> Leaf:
    return Leaf(T0 + i * 1000, h(("id", i)), h(("hash", i)))


def key(i: int) -> tuple[int, bytes]:
    return (T0 + i * 1000, h(("id", i)))


ITEM_REFS = Item(
    Level.DAY,
    0,
    T0,
    h("day"),
    False,
    tuple(ChildRef(T0 + k * HOUR_NS, h(("hour", k))) for k in range(3)),
)
ITEM_LEAVES = Item(Level.HOUR, 0, T0, h("hour"), True, tuple(h(("hash", i)) for i in range(4)))
ITEM_SLICE = Item(Level.SLICE, 3, T0 + 16, h("slice"), True, (h(("hash", 9)),))
ITEM_FP = fingerprinted(ITEM_REFS, 8)  # fingerprints of 8 bytes, as a descent sends them
ITEM_FLAT = Item(Level.MONTH, 0, T0, h("m")[:8], True, tuple(h(i)[:8] for i in range(5)))
WANT_FP = FpWant(Level.HOUR, 0, T0, 8, h("w")[:8] + h("v")[:8])
ITEM_ABSENT = Item(Level.MONTH, 0, T0, None, False, ())
ITEM_ABSENT_LEAF = Item(Level.HOUR, 0, T0, None, True, ())
NODES = (
    ListNode(Level.YEAR, T0, h("y")),
    ListNode(Level.MONTH, T0, h("m")),
    ListNode(Level.HOUR, T0 + HOUR_NS, h("hr")),
)
RECORDS = (b"\xa1avb\x01", b"x" * 300, b"")
HDR: dict[str, Any] = {"topic": TOPIC, "round": ROUND}

SAMPLES: list[Message] = [
    SyncOplog(**HDR, seq=0, to_sync_time=T0, list_digest=h(1) * 2, window_digest=h(2),
              pending=True),
    SyncOplog(**HDR, seq=2**63 - 1, to_sync_time=0, list_digest=h(3) * 2, window_digest=h(4),
              pending=False),
    SyncOplogAck(**HDR, seq=1, list_differs=0b10011, nodes=NODES, lo=key(0), hi=key(9),
                 leaves=tuple((leaf(i).time, leaf(i).hash[:8]) for i in range(5)), more=True,
                 pending=False, last=False),
    SyncOplogAck(**HDR, seq=1, list_differs=0, nodes=(), lo=(T0, b""), hi=None, leaves=(),
                 more=False, pending=True, last=True),
    SyncOplogAck(**HDR, seq=7, list_differs=0, nodes=(), lo=None, hi=(MAX_TIME, h(0)),
                 leaves=((leaf(1).time, leaf(1).hash),), more=False, pending=False, last=True),
    SyncOplogNewOplogs(**HDR, seq=2, oplogs=RECORDS, want_fps=(WANT_FP,),
                       want_ranges=((T0, T0 + HOUR_NS, (T0, b"")),
                                    (T0 + HOUR_NS, T0 + 2 * HOUR_NS, (T0 + HOUR_NS + 5, h(5))),
                                    (T0 + 2 * HOUR_NS, MAX_TIME + 1, (MAX_TIME, h(1)))),
                       cont=key(3)),
    SyncOplogNewOplogs(**HDR, seq=3, oplogs=(), want_fps=(), want_ranges=(), cont=None),
    SyncOplogNewOplogsAck(**HDR, seq=2, oplogs=RECORDS, next=key(4), last=False),
    SyncOplogNewOplogsAck(**HDR, seq=2, oplogs=(), next=None, last=True),
    ForceSyncOplogByMerkle(**HDR, seq=4,
                           items=(ITEM_REFS, ITEM_LEAVES, ITEM_SLICE, ITEM_ABSENT,
                                  ITEM_ABSENT_LEAF, ITEM_FP, ITEM_FLAT)),
    ForceSyncOplogByMerkle(**HDR, seq=4, items=()),
    ForceSyncOplogByMerkleAck(**HDR, seq=4, items=(ITEM_LEAVES, ITEM_ABSENT), last=True),
    ForceSyncOplogByOplogAck(**HDR, seq=5, oplogs=RECORDS, want_fps=(WANT_FP,), last=False),
    SyncPendingOplog(**HDR, seq=6, oplogs=RECORDS[:1]),
    SyncPendingOplogAck(**HDR, seq=6, oplogs=(), last=True),
    SyncOplogReject(**HDR, seq=0, code=RejectCode.BUSY, reason="serving 8 rounds already"),
    SyncOplogReject(**HDR, seq=9, code=RejectCode.PROTOCOL, reason="é" * MAX_REASON),
]  # fmt: skip


def raw(msg: Message) -> dict[str, Any]:
    """The decoded CBOR map of a message, to mutate into hostile variants."""
    m = codec.loads(encode_message(msg), max_size=MAX_FRAME_SIZE)
    assert isinstance(m, dict)
    return m


def sample(cls: type[Message]) -> Message:
    return next(m for m in SAMPLES if type(m) is cls)


# ---------------------------------------------------------------------------
# Round trips and canonical form.


def test_samples_cover_every_message_type() -> None:
    assert {type(m) for m in SAMPLES} == set(MESSAGE_TYPES.values())
    assert set(MESSAGE_TYPES) == set(MsgType)


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg: Message) -> None:
    data = encode_message(msg)
    back = decode_message(data)
    assert type(back) is type(msg)
    assert back == msg
    # Deterministic and canonical: the same bytes every time, and strict CBOR accepts them.
    assert encode_message(back) == data
    assert encode_message(dataclasses.replace(msg)) == data
    assert codec.is_canonical(data, max_size=MAX_FRAME_SIZE)


def test_round_trip_keeps_child_kinds() -> None:
    back = decode_message(encode_message(sample(ForceSyncOplogByMerkle)))
    assert isinstance(back, ForceSyncOplogByMerkle)
    refs, leaves, sl, absent, absent_leaf, fp, flat = back.items
    assert all(type(c) is ChildRef for c in refs.children) and not refs.leaf_children
    assert all(type(c) is bytes for c in leaves.children) and leaves.leaf_children
    assert sl.level == Level.SLICE and sl.depth == 3
    assert absent.hash is None and absent.children == ()
    assert absent_leaf.hash is None and absent_leaf.leaf_children
    assert refs.ref == (Level.DAY, 0, T0)
    assert fp.hash == h("day")[:8] and [c.start for c in fp.children] == [  # type: ignore[union-attr]
        c.start  # type: ignore[union-attr]
        for c in refs.children
    ]
    assert all(len(c.hash) == 8 for c in fp.children)  # type: ignore[union-attr]
    assert flat.level == Level.MONTH and flat.leaf_children and len(flat.children) == 5


def test_children_are_a_bitmap_and_fingerprints() -> None:
    """A day's three hours at 8 bytes cost a small int and 24 bytes, not three [start, hash]."""
    wire = raw(ForceSyncOplogByMerkle(**HDR, seq=1, items=(ITEM_FP,)))["i"][0]
    assert wire[5] == [0b111, b"".join(c.hash for c in ITEM_FP.children)]  # type: ignore[union-attr]
    assert len(encode_message(ForceSyncOplogByMerkle(**HDR, seq=1, items=(ITEM_FP,)))) < 150


@pytest.mark.parametrize(
    "children",
    [
        [1 << 24, b"x" * 8],  # a day has no 25th hour
        [0b11, b"x" * 8],  # two children, one fingerprint
        [0b1, b"x" * 7],  # not a whole fingerprint
        [0b1],  # not [bitmap, fingerprints]
    ],
)
def test_bad_children_are_refused(children: list[object]) -> None:
    m = raw(ForceSyncOplogByMerkle(**HDR, seq=1, items=(ITEM_FP,)))
    m["i"][0][5] = children
    with pytest.raises(RemoteProtocolError):
        decode_message(codec.dumps(m))


def test_reject_code_decodes_as_enum() -> None:
    back = decode_message(encode_message(sample(SyncOplogReject)))
    assert isinstance(back, SyncOplogReject)
    assert type(back.code) is RejectCode and back.code is RejectCode.BUSY


def test_wire_form_uses_short_keys() -> None:
    m = raw(sample(SyncOplog))
    assert m == {
        "v": PROTOCOL_VERSION,
        "t": int(MsgType.SYNC_OPLOG),
        "tp": TOPIC,
        "r": ROUND,
        "s": 0,
        "T": T0,
        "ld": h(1) * 2,
        "wd": h(2),
        "p": True,
    }
    assert raw(sample(SyncOplogNewOplogs))["wr"][0] == [T0, T0 + HOUR_NS, [T0, b""]]
    absent = [int(Level.MONTH), 0, T0, None, False, [0, b""]]
    assert raw(sample(ForceSyncOplogByMerkle))["i"][3] == absent


def test_encoding_does_not_depend_on_field_order() -> None:
    # Canonical map order is by encoded key, not by dataclass field order.
    data = encode_message(sample(SyncOplogAck))
    assert data == codec.dumps(dict(reversed(list(raw(sample(SyncOplogAck)).items()))))


def test_encode_over_frame_limit_is_usage_error() -> None:
    big = SyncOplogNewOplogsAck(**HDR, seq=1, oplogs=(b"x" * MAX_OPLOG_SIZE,) * 4, next=None,
                                last=True)  # fmt: skip
    with pytest.raises(UsageError):
        encode_message(big)


# ---------------------------------------------------------------------------
# Hostile payloads.


def mutate(msg: Message, **changes: Any) -> bytes:
    """`msg`'s wire map with keys set (or deleted, with the value DEL), canonically encoded."""
    m = raw(msg)
    for k, v in changes.items():
        if v is DEL:
            del m[k]
        else:
            m[k] = v
    return codec.dumps(m)


DEL = object()
SO, ACK, NEW, NACK = (sample(c) for c in (SyncOplog, SyncOplogAck, SyncOplogNewOplogs,
                                          SyncOplogNewOplogsAck))  # fmt: skip
FM, OACK, REJ = (
    sample(ForceSyncOplogByMerkle),
    sample(ForceSyncOplogByOplogAck),
    sample(SyncOplogReject),
)
GOOD_ITEM = [int(Level.HOUR), 0, T0, h("n"), False, [[T0, h("c")]]]
GOOD_RANGE = [T0, T0 + 10, [T0, b""]]


def item(*, at: int, value: object) -> bytes:
    it: list[object] = list(GOOD_ITEM)
    it[at] = value
    return mutate(FM, i=[it])


def with_key(k: object) -> bytes:
    """SyncOplog's map with one more entry under a non-text key."""
    m: dict[object, object] = {name: v for name, v in raw(SO).items()}  # noqa: C416
    m[k] = 1
    return codec.dumps(m)


def _non_minimal_seq() -> bytes:
    # SyncOplog with "s": 0 written as a one-byte-argument integer (0x18 0x00).
    data = encode_message(SO)
    good = codec.tstr("s") + codec.uint(0)
    assert data.count(good) == 1
    return data.replace(good, codec.tstr("s") + b"\x18\x00")


def _unsorted_keys() -> bytes:
    m = raw(SO)
    return cbor2.dumps(dict(sorted(m.items(), reverse=True)))


def _indefinite_list() -> bytes:
    m = raw(OACK)
    m["o"] = []
    data = codec.dumps(m)
    target = codec.tstr("o") + b"\x80"
    assert data.count(target) == 1
    return data.replace(target, codec.tstr("o") + b"\x9f\xff")


HOSTILE: dict[str, Callable[[], bytes]] = {
    # Malformed or non-canonical CBOR.
    "empty": lambda: b"",
    "garbage": lambda: b"\xff\xfe\xfd",
    "truncated map": lambda: encode_message(SO)[:-1],
    "trailing byte": lambda: encode_message(SO) + b"\x00",
    "two items": lambda: encode_message(SO) * 2,
    "non-minimal int": _non_minimal_seq,
    "unsorted keys": _unsorted_keys,
    "indefinite list": _indefinite_list,
    "tag": lambda: cbor2.dumps(cbor2.CBORTag(55799, raw(SO))),
    "duplicate key": lambda: (
        codec.head(5, 2) + codec.tstr("v") + b"\x01" + codec.tstr("v") + b"\x01"
    ),
    "float where canonical would be shorter": lambda: encode_message(SO).replace(
        codec.tstr("s") + b"\x00", codec.tstr("s") + b"\xfb" + bytes(8)
    ),
    "over frame size": lambda: codec.dumps({"v": 1, "x": b"x" * MAX_FRAME_SIZE}),
    "deep nesting": lambda: b"\x81" * 40 + b"\x00",
    # Not a map.
    "array": lambda: codec.dumps([1, 1]),
    "int": lambda: codec.dumps(1),
    "null": lambda: codec.dumps(None),
    "text": lambda: codec.dumps("v"),
    # Version.
    "version 1 (before fingerprints)": lambda: mutate(SO, v=1),
    "version 3": lambda: mutate(SO, v=3),
    "version 0": lambda: mutate(SO, v=0),
    "version missing": lambda: mutate(SO, v=DEL),
    "version true": lambda: mutate(SO, v=True),
    "version 1.0": lambda: mutate(SO, v=1.0),
    "version text": lambda: mutate(SO, v="1"),
    # Type.
    "type 0": lambda: mutate(SO, t=0),
    "type 11": lambda: mutate(SO, t=11),
    "type -1": lambda: mutate(SO, t=-1),
    "type missing": lambda: mutate(SO, t=DEL),
    "type text": lambda: mutate(SO, t="1"),
    "type true": lambda: mutate(SO, t=True),
    "type 1.0": lambda: mutate(SO, t=1.0),
    "type list": lambda: mutate(SO, t=[1]),
    "type huge": lambda: mutate(SO, t=2**64 - 1),
    "type of another message": lambda: mutate(SO, t=int(MsgType.SYNC_OPLOG_ACK)),
    # Fields.
    "unknown field": lambda: mutate(SO, x=1),
    "field of another type": lambda: mutate(SO, z=True),
    "missing field": lambda: mutate(SO, s=DEL),
    "missing topic": lambda: mutate(REJ, tp=DEL),
    "int key": lambda: with_key(1),
    "bytes key": lambda: with_key(b"s"),
    "topic as text": lambda: mutate(SO, tp="t" * 32),
    "topic 31 bytes": lambda: mutate(SO, tp=TOPIC[:31]),
    "round 17 bytes": lambda: mutate(SO, r=ROUND + b"\x00"),
    "seq negative": lambda: mutate(SO, s=-1),
    "seq 2**63": lambda: mutate(SO, s=2**63),
    "seq bool": lambda: mutate(SO, s=False),
    "seq float": lambda: mutate(SO, s=1.5),
    "time over MAX_TIME": lambda: mutate(SO, T=MAX_TIME + 1),
    "digest short": lambda: mutate(SO, ld=h(1)[:31]),
    "pending int": lambda: mutate(SO, p=1),
    "pending null": lambda: mutate(SO, p=None),
    "last int": lambda: mutate(NACK, z=0),
    "code 0": lambda: mutate(REJ, cd=0),
    "code 4": lambda: mutate(REJ, cd=4),
    "code bool": lambda: mutate(REJ, cd=True),
    "reason too long": lambda: mutate(REJ, why="x" * (MAX_REASON + 1)),
    "reason bytes": lambda: mutate(REJ, why=b"x"),
    # Lists over their limits, and bad list members.
    "oplogs not a list": lambda: mutate(NACK, o=b"x"),
    "oplogs over limit": lambda: mutate(NACK, o=[b""] * (MAX_OPLOGS + 1)),
    "oplog not bytes": lambda: mutate(NACK, o=["x"]),
    "oplog over size": lambda: mutate(NACK, o=[b"x" * (MAX_OPLOG_SIZE + 1)]),
    "want over limit": lambda: mutate(OACK, wf=[[3, 0, T0, 8, b"x" * 8]] * (MAX_WANT_NODES + 1)),
    "want short id": lambda: mutate(OACK, w=[h(0)[:31]]),
    "leaves over limit": lambda: mutate(ACK, lv=[[T0, h(0), h(1)]] * (MAX_LEAVES + 1)),
    "mark short": lambda: mutate(ACK, lv=[[T0]]),
    "mark long": lambda: mutate(ACK, lv=[[T0, h(0), h(1)]]),
    "mark fingerprint too wide": lambda: mutate(ACK, lv=[[T0, h(0) + b"x"]]),
    "mark negative time": lambda: mutate(ACK, lv=[[-1, h(0)]]),
    "mark empty fingerprint": lambda: mutate(ACK, lv=[[T0, b""]]),
    "nodes over limit": lambda: mutate(ACK, n=[[int(Level.DAY), T0, h(0)]] * (MAX_LIST_NODES + 1)),
    "node level slice": lambda: mutate(ACK, n=[[int(Level.SLICE), T0, h(0)]]),
    "node level 7": lambda: mutate(ACK, n=[[7, T0, h(0)]]),
    "node as map": lambda: mutate(ACK, n=[{"l": 3}]),
    "items over limit": lambda: mutate(FM, i=[GOOD_ITEM] * (MAX_ITEMS + 1)),
    # Items.
    "item absent with children": lambda: item(at=3, value=None),
    "item absent with leaves": lambda: mutate(
        FM, i=[[int(Level.HOUR), 0, T0, None, True, [[T0, h(0), h(1)]]]]
    ),
    "item level leaf": lambda: item(at=0, value=int(Level.LEAF)),
    "item level 7": lambda: item(at=0, value=7),
    "item depth 17": lambda: item(at=1, value=17),
    "item start negative": lambda: item(at=2, value=-5),
    "item hash short": lambda: item(at=3, value=h(0)[:31]),
    "item leaf flag int": lambda: item(at=4, value=1),
    "item children not list": lambda: item(at=5, value={}),
    "item child bad shape": lambda: item(at=5, value=[[T0]]),
    "item child is a leaf": lambda: item(at=5, value=[[T0, h(0), h(1)]]),
    "item leaves are refs": lambda: mutate(
        FM, i=[[int(Level.HOUR), 0, T0, h(0), True, [[T0, h(1)]]]]
    ),
    "item too many children": lambda: item(at=5, value=[[T0, h(0)]] * (MAX_ITEM_CHILDREN + 1)),
    "item too many leaves": lambda: mutate(
        FM, i=[[int(Level.HOUR), 0, T0, h(0), True, [[T0, h(0), h(1)]] * (MAX_ITEM_LEAVES + 1)]]
    ),
    "item short": lambda: mutate(FM, i=[GOOD_ITEM[:5]]),
    "item as map": lambda: mutate(FM, i=[{"x": 1}]),
    # Keys.
    "key one element": lambda: mutate(ACK, lo=[T0]),
    "key three elements": lambda: mutate(ACK, lo=[T0, h(0), 1]),
    "key text": lambda: mutate(ACK, hi="k"),
    "key id too long": lambda: mutate(ACK, hi=[T0, h(0) + b"\x00"]),
    "key time negative": lambda: mutate(NACK, nx=[-1, h(0)]),
    "key time over MAX_TIME": lambda: mutate(NEW, c=[MAX_TIME + 1, h(0)]),
    "key time bool": lambda: mutate(NEW, c=[True, h(0)]),
    # Want ranges.
    "ranges over limit": lambda: mutate(
        NEW, wr=[[T0 + 10 * i, T0 + 10 * i + 5, [T0 + 10 * i, b""]] for i in range(257)]
    ),
    "range overlapping": lambda: mutate(NEW, wr=[GOOD_RANGE, [T0 + 5, T0 + 20, [T0 + 5, b""]]]),
    "range out of order": lambda: mutate(NEW, wr=[[T0 + 20, T0 + 30, [T0 + 20, b""]], GOOD_RANGE]),
    "range end before start": lambda: mutate(NEW, wr=[[T0, T0 - 1, [T0, b""]]]),
    "range end past MAX_TIME + 1": lambda: mutate(NEW, wr=[[T0, MAX_TIME + 2, [T0, b""]]]),
    "range key before start": lambda: mutate(NEW, wr=[[T0, T0 + 10, [T0 - 1, h(0)]]]),
    "range without key": lambda: mutate(NEW, wr=[[T0, T0 + 10, None]]),
    "range short": lambda: mutate(NEW, wr=[[T0, T0 + 10]]),
    "range bad key": lambda: mutate(NEW, wr=[[T0, T0 + 10, [T0]]]),
    "range not a list": lambda: mutate(NEW, wr=[7]),
}


def test_limits_checked_are_the_real_limits() -> None:
    assert MAX_WANT_RANGES == 256  # "ranges over limit" sends 257
    # Each limit case holds exactly one over, so the same list one shorter decodes.
    ok = mutate(NEW, wr=[[T0 + 10 * i, T0 + 10 * i + 5, [T0 + 10 * i, b""]] for i in range(256)])
    assert len(decode_message(ok).want_ranges) == 256  # type: ignore[attr-defined]
    ok = mutate(NACK, o=[b""] * MAX_OPLOGS)
    assert len(decode_message(ok).oplogs) == MAX_OPLOGS  # type: ignore[attr-defined]
    ok = mutate(REJ, why="x" * MAX_REASON)
    assert decode_message(ok) == dataclasses.replace(REJ, reason="x" * MAX_REASON)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_payload_is_a_protocol_error(name: str) -> None:
    data = HOSTILE[name]()
    with pytest.raises(RemoteProtocolError):
        decode_message(data)


def test_adjacent_ranges_and_empty_ranges_are_fine() -> None:
    # Touching ranges do not overlap; the from-key may be at the start with an empty ID.
    data = mutate(
        NEW,
        wr=[GOOD_RANGE, [T0 + 10, T0 + 10, [T0 + 10, b""]], [T0 + 10, T0 + 20, [T0 + 15, h(0)]]],
    )
    msg = decode_message(data)
    assert isinstance(msg, SyncOplogNewOplogs)
    assert [r[:2] for r in msg.want_ranges] == [(T0, T0 + 10), (T0 + 10, T0 + 10),
                                                (T0 + 10, T0 + 20)]  # fmt: skip


def _decodes_or_protocol_error(data: bytes) -> bool:
    """True if `data` decodes (then it must be canonical); False on RemoteProtocolError."""
    try:
        msg = decode_message(data)
    except RemoteProtocolError:
        return False
    # Anything accepted is a real message in its one canonical form.
    assert isinstance(msg, Message)
    assert encode_message(msg) == data
    return True


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_truncations_and_bit_flips(msg: Message) -> None:
    data = encode_message(msg)
    for n in range(len(data)):
        assert not _decodes_or_protocol_error(data[:n]), n
    rng = random.Random(f"{type(msg).__name__}:{len(data)}")
    positions = list(range(len(data)))
    if len(positions) > 160:
        positions = rng.sample(positions, 160)
    accepted = 0
    for pos in positions:
        for bit in (rng.randrange(8), rng.randrange(8)):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << bit
            accepted += _decodes_or_protocol_error(bytes(flipped))
    # Flips in byte-string payloads still decode, to a different message.
    assert accepted < 2 * len(positions)


# ---------------------------------------------------------------------------
# Frames.


def frames_of(reader: FrameReader) -> list[bytes]:
    out = []
    while (f := reader.next_frame()) is not None:
        out.append(f)
    return out


def test_frame_round_trip_byte_by_byte() -> None:
    payloads = [encode_message(m) for m in SAMPLES[:4]] + [b"", b"\x00"]
    stream = b"".join(encode_frame(p) for p in payloads)
    reader = FrameReader()
    got: list[bytes] = []
    for i in range(len(stream)):
        reader.feed(stream[i : i + 1])
        got += frames_of(reader)
        assert reader.buffered == i + 1 - sum(len(p) + HEADER_SIZE for p in got)
    assert got == payloads
    assert reader.at_boundary() and reader.buffered == 0
    assert [decode_message(p) for p in got[:4]] == SAMPLES[:4]


def test_frame_header_and_buffering() -> None:
    frame = encode_frame(b"hello")
    assert frame == b"\x00\x00\x00\x05hello"
    reader = FrameReader()
    assert reader.at_boundary()
    assert reader.next_frame() is None
    reader.feed(frame[:3])
    assert reader.next_frame() is None and not reader.at_boundary() and reader.buffered == 3
    reader.feed(frame[3:7])
    assert reader.next_frame() is None and reader.buffered == 7
    reader.feed(frame[7:])
    assert reader.next_frame() == b"hello"
    assert reader.next_frame() is None and reader.at_boundary()


def test_many_frames_in_one_feed() -> None:
    payloads = [bytes([i]) * i for i in range(20)]
    reader = FrameReader()
    reader.feed(b"".join(encode_frame(p) for p in payloads) + encode_frame(b"tail")[:6])
    assert frames_of(reader) == payloads
    assert not reader.at_boundary() and reader.buffered == 6
    reader.feed(b"il")
    assert frames_of(reader) == [b"tail"]
    assert reader.at_boundary()


def test_frame_at_the_limit_is_accepted() -> None:
    payload = b"\xab" * MAX_FRAME_SIZE
    reader = FrameReader()
    reader.feed(encode_frame(payload))
    assert reader.next_frame() == payload


def test_encode_frame_over_limit() -> None:
    with pytest.raises(UsageError):
        encode_frame(b"x" * (MAX_FRAME_SIZE + 1))


def test_oversize_header_rejected_before_payload() -> None:
    reader = FrameReader()
    header = (MAX_FRAME_SIZE + 1).to_bytes(HEADER_SIZE, "big")
    reader.feed(header[:3])  # not a whole header yet
    with pytest.raises(RemoteProtocolError):
        reader.feed(header[3:])  # refused with no payload byte sent
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()  # and it stays refused


def test_oversize_header_after_good_frame() -> None:
    reader = FrameReader()
    reader.feed(encode_frame(b"ok") + (2**32 - 1).to_bytes(4, "big"))
    assert reader.next_frame() == b"ok"
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()


def test_reader_custom_limit() -> None:
    reader = FrameReader(max_size=8)
    reader.feed(encode_frame(b"12345678"))
    assert reader.next_frame() == b"12345678"
    with pytest.raises(RemoteProtocolError):
        reader.feed(encode_frame(b"123456789")[:4])
