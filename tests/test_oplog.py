"""The oplog record: signing, co-signing, tamper detection and strict decoding."""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
import pytest

from pttsync.core import codec
from pttsync.core.identity import Identity
from pttsync.core.oplog import (
    MAX_DATA_SIZE,
    MAX_INTERNAL_SIGS,
    Oplog,
    Signature,
    SignKind,
    compute_hash,
    compute_oplog_id,
    cosign,
    create_oplog,
    draft_oplog,
    finish_oplog,
    verify_oplog,
    with_signatures,
)
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.topic import TopicInfo
from pttsync.errors import (
    IntegrityError,
    InvalidOplogError,
    MalformedOplogError,
    OversizeError,
    SignatureError,
    TimestampError,
    UsageError,
)

from .helpers import make_identity, make_oplog

T0 = 1_735_689_600 * 10**9  # 2025-01-01T00:00:00Z


@pytest.fixture
def signed(alice: Identity, bob: Identity, topic: TopicInfo) -> Oplog:
    """An oplog with a creator signature, one master and one internal signature."""
    o = create_oplog(
        alice,
        topic_id=topic.topic_id,
        object_id=b"doc-1",
        op=7,
        value={"text": "hi"},
        create_time=T0,
        prev_id=b"p" * 32,
    )
    o = cosign(o, bob, SignKind.MASTER, T0 + 10)
    return cosign(o, make_identity("alice-phone"), SignKind.INTERNAL, T0 + 5)


def as_map(o: Oplog) -> dict[str, Any]:
    return cbor2.loads(encode_oplog(o))  # type: ignore[no-any-return]


def test_round_trip(signed: Oplog) -> None:
    data = encode_oplog(signed)
    assert decode_oplog(data) == signed
    assert encode_oplog(decode_oplog(data)) == data


def test_encoding_is_canonical_cbor(signed: Oplog) -> None:
    m = as_map(signed)
    assert encode_oplog(signed) == cbor2.dumps(m, canonical=True)


def test_derived_fields(signed: Oplog, alice: Identity) -> None:
    assert signed.creator == alice.peer_id
    assert signed.update_time == T0 + 10  # the latest signature
    assert signed.key == (T0 + 10, signed.oplog_id)
    assert signed.decoded_data() == {"text": "hi"}
    assert [s.time for s in signed.master_sigs] == [T0 + 10]


def test_oplog_id_is_the_content_hash(alice: Identity, topic: TopicInfo) -> None:
    a = make_oplog(alice, topic, T0, value=1)
    b = make_oplog(alice, topic, T0, value=1)
    c = make_oplog(alice, topic, T0, value=2)
    assert a.oplog_id == b.oplog_id == compute_oplog_id(a)
    assert a.oplog_id != c.oplog_id


def test_cosign_is_idempotent_and_sorted(signed: Oplog, bob: Identity) -> None:
    assert cosign(signed, bob, SignKind.MASTER, T0 + 99) is signed
    carol = make_identity("carol")
    more = cosign(signed, carol, SignKind.MASTER, T0 + 3)
    signers = [s.signer for s in more.master_sigs]
    assert signers == sorted(signers) and len(signers) == 2
    assert more.update_time == T0 + 10  # an earlier co-signature does not move it back
    assert more.hash != signed.hash  # every signature is in the hash
    verify_oplog(more)


def test_cosign_before_creation_is_refused(signed: Oplog, bob: Identity) -> None:
    with pytest.raises(UsageError):
        cosign(signed, make_identity("carol"), SignKind.MASTER, T0 - 1)


def test_draft_then_finish_equals_create(alice: Identity, topic: TopicInfo) -> None:
    draft = draft_oplog(
        alice.peer_id,
        topic_id=topic.topic_id,
        object_id=b"k",
        op=1,
        value=[1, 2],
        create_time=T0,
    )
    made = finish_oplog(draft, alice.sign(draft.message))
    same = create_oplog(
        alice,
        topic_id=topic.topic_id,
        object_id=b"k",
        op=1,
        data=codec.dumps([1, 2]),
        create_time=T0,
    )
    assert made == same
    verify_oplog(made)
    with pytest.raises(SignatureError):
        verify_oplog(finish_oplog(draft, make_identity("mallory").sign(draft.message)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": b"\xa2\x61\x62\x01\x61\x61\x02"}, "canonical"),  # unsorted map
        ({"data": b"\x01", "value": 1}, "exactly one"),
        ({"value": 1, "object_id": b""}, "object_id"),
        ({"value": 1, "object_id": b"x" * 129}, "object_id"),
        ({"value": 1, "op": -1}, "op"),
        ({"value": 1, "op": 2**16}, "op"),
        ({"value": 1, "create_time": -5}, "create_time"),
        ({"value": 1, "prev_id": b"short"}, "prev_id"),
        ({"value": 1, "topic_id": b"short"}, "topic_id"),
        ({"value": b"x" * MAX_DATA_SIZE}, "limit"),
        ({"value": {1.5}}, "cannot be encoded"),
    ],
)
def test_create_rejects_bad_arguments(
    alice: Identity, topic: TopicInfo, kwargs: dict[str, Any], match: str
) -> None:
    args: dict[str, Any] = {
        "topic_id": topic.topic_id,
        "object_id": b"k",
        "op": 1,
        "create_time": T0,
        **kwargs,
    }
    with pytest.raises(UsageError, match=match):
        create_oplog(alice, **args)


# ---------------------------------------------------------------------------
# Tampering: every field of a signed oplog is covered by verification.


def _flip(b: bytes) -> bytes:
    return bytes([b[0] ^ 1]) + b[1:]


def _tampered_sig(s: Signature) -> list[Signature]:
    return [
        dataclasses.replace(s, signer=make_identity("mallory").peer_id),
        dataclasses.replace(s, time=s.time + 1),
        dataclasses.replace(s, sig=_flip(s.sig)),
    ]


def _variants(o: Oplog, field: str) -> list[Oplog]:
    """Oplogs that differ from `o` in `field` only."""
    value = getattr(o, field)
    changes: list[Any]
    if field in {"master_sigs", "internal_sigs"}:
        changes = [(t,) for t in _tampered_sig(value[0])] + [()]
        return [dataclasses.replace(o, **{field: c}) for c in changes]
    if field == "prev_id":
        return [dataclasses.replace(o, prev_id=None), dataclasses.replace(o, prev_id=b"q" * 32)]
    if field == "data":
        return [dataclasses.replace(o, data=codec.dumps({"text": "ho"}))]
    changes = [_flip(value)] if isinstance(value, bytes) else [value + 1]
    return [dataclasses.replace(o, **{field: c}) for c in changes]


FIELDS = [f.name for f in dataclasses.fields(Oplog)]


@pytest.mark.parametrize("field", FIELDS)
def test_every_tampered_field_fails_verification(signed: Oplog, field: str) -> None:
    variants = _variants(signed, field)
    assert variants
    for bad in variants:
        with pytest.raises(InvalidOplogError):
            verify_oplog(bad)
        with pytest.raises(InvalidOplogError):
            decode_oplog(encode_oplog(bad))


def _forge(o: Oplog) -> Oplog:
    """Recompute every derived field, as a forger would: only signatures remain."""
    o = dataclasses.replace(o, oplog_id=compute_oplog_id(o))
    o = with_signatures(o, master_sigs=o.master_sigs, internal_sigs=o.internal_sigs)
    return dataclasses.replace(
        o,
        hash=compute_hash(o.oplog_id, o.creator_sig, o.master_sigs, o.internal_sigs, o.update_time),
    )


@pytest.mark.parametrize(
    "field",
    [
        "topic_id",
        "creator",
        "create_time",
        "object_id",
        "op",
        "prev_id",
        "data",
        "creator_sig",
        "master_sigs",
        "internal_sigs",
    ],
)
def test_forged_derived_fields_still_fail_on_a_signature(signed: Oplog, field: str) -> None:
    for bad in _variants(signed, field):
        if field.endswith("_sigs") and not getattr(bad, field):
            continue  # dropping a co-signature is a different oplog, still validly signed
        with pytest.raises((SignatureError, TimestampError)):
            verify_oplog(_forge(bad))


def test_signature_check_can_be_skipped_for_trusted_records(signed: Oplog) -> None:
    bad = _forge(dataclasses.replace(signed, creator_sig=_flip(signed.creator_sig)))
    assert decode_oplog(encode_oplog(bad), signatures=False) == bad
    with pytest.raises(SignatureError):
        decode_oplog(encode_oplog(bad))


def test_update_time_before_create_time(signed: Oplog) -> None:
    bad = dataclasses.replace(signed, update_time=signed.create_time - 1)
    with pytest.raises(TimestampError, match="before create time"):
        verify_oplog(bad)


def test_cosignature_older_than_the_oplog(signed: Oplog) -> None:
    early = dataclasses.replace(signed.master_sigs[0], time=signed.create_time - 1)
    with pytest.raises(TimestampError, match="older"):
        verify_oplog(dataclasses.replace(signed, master_sigs=(early,)))


def test_unsorted_or_duplicate_signers(signed: Oplog) -> None:
    carol = make_identity("carol")
    two = cosign(signed, carol, SignKind.MASTER, T0 + 20)
    reversed_sigs = tuple(reversed(two.master_sigs))
    with pytest.raises(MalformedOplogError, match="sorted"):
        verify_oplog(dataclasses.replace(two, master_sigs=reversed_sigs))
    dup = (two.master_sigs[0], two.master_sigs[0])
    with pytest.raises(MalformedOplogError, match="sorted"):
        verify_oplog(dataclasses.replace(two, master_sigs=dup))


# ---------------------------------------------------------------------------
# Strict decoding of bytes.


def _encode_map(m: dict[str, Any]) -> bytes:
    return cbor2.dumps(m, canonical=True)


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        (lambda m: m.update(zz=1), MalformedOplogError, "zz"),
        (lambda m: m.pop("ob"), MalformedOplogError, "ob"),
        (lambda m: m.update(ct="2025"), MalformedOplogError, "ct"),
        (lambda m: m.update(op=True), MalformedOplogError, "op"),
        (lambda m: m.update(op=2**40), MalformedOplogError, "op"),
        (lambda m: m.update(op=2**70), MalformedOplogError, "op"),  # a bignum tag
        (lambda m: m.update(ct=10**5000), MalformedOplogError, "ct"),  # no ValueError leaks
        (lambda m: m.update({10**5000: 1}), MalformedOplogError, "<a very large integer>"),
        (lambda m: m.update(tp=b"short"), MalformedOplogError, "tp"),
        (lambda m: m.update(pv=b""), MalformedOplogError, "pv"),
        (lambda m: m.update(ms=[[b"x" * 32, 1]]), MalformedOplogError, "ms"),
        (lambda m: m.update(ms="nope"), MalformedOplogError, "ms"),
        (lambda m: m.update(v=2), MalformedOplogError, "v"),
        (lambda m: m.update(ob=b""), MalformedOplogError, "ob"),
        (lambda m: m.update(ob=b"x" * 200), OversizeError, "ob"),
        (lambda m: m.update(d=b"\x18\x01"), MalformedOplogError, "d"),
        (lambda m: m.update(d=b"x" * (MAX_DATA_SIZE + 1)), OversizeError, "d"),
        (
            lambda m: (
                m.update(is_=None)
                or m.update({"is": [m["is"][0]] * (MAX_INTERNAL_SIGS + 1)})
                or m.pop("is_")
            ),
            OversizeError,
            "is",
        ),
        (lambda m: m.update(ut=m["ct"] - 1), TimestampError, "ut"),
        (lambda m: m.update(ut=m["ut"] + 1), TimestampError, "ut"),
        (lambda m: m.update(h=b"\x00" * 32), IntegrityError, "h"),
        (lambda m: m.update(id=b"\x00" * 32), IntegrityError, "id"),
    ],
)
def test_decode_rejects_with_a_typed_error(
    signed: Oplog, change: Any, error: type[InvalidOplogError], field: str
) -> None:
    m = as_map(signed)
    change(m)
    with pytest.raises(error) as info:
        decode_oplog(_encode_map(m))
    assert info.value.field == field


def test_decode_rejects_a_bad_signature(signed: Oplog) -> None:
    bad = _forge(dataclasses.replace(signed, creator_sig=_flip(signed.creator_sig)))
    with pytest.raises(SignatureError) as info:
        decode_oplog(encode_oplog(bad))
    assert info.value.field == "cs"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x00", b"garbage", cbor2.dumps([1, 2, 3]), cbor2.dumps("text"), cbor2.dumps({1: 2})],
)
def test_decode_rejects_non_records(data: bytes) -> None:
    with pytest.raises(MalformedOplogError):
        decode_oplog(data)


def test_decode_rejects_non_canonical_bytes(signed: Oplog) -> None:
    m = as_map(signed)
    shuffled = cbor2.dumps(dict(reversed(list(m.items()))))  # same content, keys out of order
    with pytest.raises(MalformedOplogError, match="canonical"):
        decode_oplog(shuffled)


def test_decode_rejects_an_oversize_record() -> None:
    with pytest.raises(OversizeError):
        decode_oplog(b"\x00" * 200_000)


def test_every_truncation_and_bit_flip_is_a_typed_error(signed: Oplog) -> None:
    data = encode_oplog(signed)
    for cut in range(len(data)):
        with pytest.raises(InvalidOplogError):
            decode_oplog(data[:cut])
    for i in range(len(data)):
        flipped = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(InvalidOplogError):
            decode_oplog(flipped)
