"""The oplog record: content, ID, signatures, hash, co-signing, verification.

Adapted from go-pttai's BaseOplog (docs/pip-11/oplog.md has the field table
and every difference from go-pttai, with reasons):

* The **content** is version, topic, creator, create time, object, op,
  previous log and data.  The **oplog ID** is the SHA-256 of its canonical
  CBOR, so a creator cannot sign two different contents under one ID.
* The **creator signature** signs `["pttsync/creator-sig/1", id]`.  Its time
  is the create time.
* **Master** and **internal (device) signatures** each sign
  `["pttsync/<kind>-sig/1", id, signer, time]`: they cover the content (through
  the ID) but not each other, so co-signatures can be collected in any order
  and unioned by signer.
* The **update time** is the time of the last signature: the create time, or
  the latest co-signature time.  It is stored, and checked.
* The **hash** is the SHA-256 of `["pttsync/oplog-hash/1", id, creator
  signature, master signatures, internal signatures, update time]`.  It
  changes with every new signature, which is why the Merkle tree sees
  co-signature differences.

All of these are canonical CBOR (RFC 8949 deterministic encoding).  The
record's own encoding and strict decoding are in oplogcodec.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from ..errors import (
    IntegrityError,
    MalformedOplogError,
    OversizeError,
    SignatureError,
    TimestampError,
    UsageError,
)
from . import codec
from .identity import PEER_ID_SIZE, SIGNATURE_SIZE, Identity, verify_signature
from .timeutil import MAX_TIME

FORMAT_VERSION = 1
TOPIC_ID_SIZE = 32
OPLOG_ID_SIZE = 32
HASH_SIZE = 32
MAX_OBJECT_ID_SIZE = 128
MAX_DATA_SIZE = 64 * 1024
MAX_OP = 0xFFFF
MAX_MASTER_SIGS = 64
MAX_INTERNAL_SIGS = 16
# Content, plus 80 signatures of about 110 bytes each, with room to spare.
MAX_OPLOG_SIZE = MAX_DATA_SIZE + 16 * 1024

_ID_TAG = "pttsync/oplog-id/1"
_CREATOR_TAG = "pttsync/creator-sig/1"
_HASH_TAG = "pttsync/oplog-hash/1"

# Pieces of the canonical encodings, built once (see codec.head).
_ARRAY2, _ARRAY3, _ARRAY4 = codec.head(4, 2), codec.head(4, 3), codec.head(4, 4)
_ID_PREFIX = _ARRAY2 + codec.tstr(_ID_TAG)
_CREATOR_PREFIX = _ARRAY2 + codec.tstr(_CREATOR_TAG)
_HASH_PREFIX = codec.head(4, 6) + codec.tstr(_HASH_TAG)
_MAP8 = codec.head(5, 8)


class Keys:
    """The record's map keys, encoded once (shared with oplogcodec)."""

    D, H, V = codec.tstr("d"), codec.tstr("h"), codec.tstr("v")
    CR, CS, CT, ID = codec.tstr("cr"), codec.tstr("cs"), codec.tstr("ct"), codec.tstr("id")
    IS, MS, OB, OP = codec.tstr("is"), codec.tstr("ms"), codec.tstr("ob"), codec.tstr("op")
    PV, TP, UT = codec.tstr("pv"), codec.tstr("tp"), codec.tstr("ut")


class _NoValue:
    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Any = _NoValue()  # "no value= given", so that value=None can mean CBOR null


class OplogStatus(IntEnum):
    """Where an oplog is in its life (PIP-7).  Only VALID oplogs are in the tree."""

    INTERNAL_PENDING = 1  # waiting for a quorum of the creator's own devices
    PENDING = 2  # waiting for a quorum of the topic's masters
    VALID = 3  # accepted: applied, in the Merkle tree, synced to everyone


class SignKind(IntEnum):
    MASTER = 1
    INTERNAL = 2


_COSIGN_TAGS = {
    SignKind.MASTER: codec.tstr("pttsync/master-sig/1"),
    SignKind.INTERNAL: codec.tstr("pttsync/internal-sig/1"),
}


@dataclass(frozen=True, slots=True)
class Signature:
    """A co-signature: who signed, when, and the 64-byte Ed25519 signature."""

    signer: bytes
    time: int
    sig: bytes


@dataclass(frozen=True, slots=True)
class Oplog:
    """One signed operation.  Build it with `create_oplog`, never by hand."""

    version: int
    topic_id: bytes
    oplog_id: bytes
    creator: bytes
    create_time: int
    object_id: bytes
    op: int
    prev_id: bytes | None
    data: bytes  # canonical CBOR of the op's payload
    creator_sig: bytes
    master_sigs: tuple[Signature, ...]
    internal_sigs: tuple[Signature, ...]
    update_time: int
    hash: bytes

    @property
    def key(self) -> tuple[int, bytes]:
        """The Merkle leaf key: update time, then oplog ID."""
        return (self.update_time, self.oplog_id)

    def decoded_data(self) -> Any:
        return codec.loads(self.data, max_size=MAX_DATA_SIZE)


# ---------------------------------------------------------------------------
# The byte strings that are hashed and signed.


def _content_bytes(
    topic_id: bytes,
    creator: bytes,
    create_time: int,
    object_id: bytes,
    op: int,
    prev_id: bytes | None,
    data: bytes,
    version: int = FORMAT_VERSION,
) -> bytes:
    """Canonical CBOR of the content map (keys in canonical order)."""
    return b"".join(
        (
            _MAP8,
            Keys.D, codec.bstr(data),
            Keys.V, codec.uint(version),
            Keys.CR, codec.bstr(creator),
            Keys.CT, codec.uint(create_time),
            Keys.OB, codec.bstr(object_id),
            Keys.OP, codec.uint(op),
            Keys.PV, codec.NULL if prev_id is None else codec.bstr(prev_id),
            Keys.TP, codec.bstr(topic_id),
        )
    )  # fmt: skip


def _oplog_id(content: bytes) -> bytes:
    # ["pttsync/oplog-id/1", content]
    return hashlib.sha256(_ID_PREFIX + content).digest()


def compute_oplog_id(o: Oplog) -> bytes:
    return _oplog_id(
        _content_bytes(
            o.topic_id, o.creator, o.create_time, o.object_id, o.op, o.prev_id, o.data, o.version
        )
    )


def creator_message(oplog_id: bytes) -> bytes:
    """`["pttsync/creator-sig/1", oplog ID]`: what the creator signs."""
    return _CREATOR_PREFIX + codec.bstr(oplog_id)


_EMPTY_ARRAY = codec.array([])


def cosign_message(kind: SignKind, oplog_id: bytes, signer: bytes, time: int) -> bytes:
    """`["pttsync/<kind>-sig/1", oplog ID, signer, time]`: what a co-signer signs."""
    return b"".join(
        (_ARRAY4, _COSIGN_TAGS[kind], codec.bstr(oplog_id), codec.bstr(signer), codec.uint(time))
    )


def encode_sig_list(sigs: tuple[Signature, ...]) -> bytes:
    if not sigs:
        return _EMPTY_ARRAY  # most lists: 4 per record written (hash and encoding)
    return codec.array(
        [_ARRAY3 + codec.bstr(s.signer) + codec.uint(s.time) + codec.bstr(s.sig) for s in sigs]
    )


def compute_hash(
    oplog_id: bytes,
    creator_sig: bytes,
    master_sigs: tuple[Signature, ...],
    internal_sigs: tuple[Signature, ...],
    update_time: int,
) -> bytes:
    """SHA-256 of `["pttsync/oplog-hash/1", id, creator sig, master sigs, internal sigs, ut]`."""
    body = b"".join(
        (
            _HASH_PREFIX,
            codec.bstr(oplog_id),
            codec.bstr(creator_sig),
            encode_sig_list(master_sigs),
            encode_sig_list(internal_sigs),
            codec.uint(update_time),
        )
    )
    return hashlib.sha256(body).digest()


def _update_time(create_time: int, *sig_lists: tuple[Signature, ...]) -> int:
    return max([create_time, *(s.time for sigs in sig_lists for s in sigs)])


# ---------------------------------------------------------------------------
# Making and co-signing oplogs.


@dataclass(frozen=True, slots=True)
class Draft:
    """An oplog's content and ID, waiting for its creator's signature.

    `create_oplog` drafts, signs and finishes in one call.  The two-step form
    lets the signature be made elsewhere: on a signer thread (`pttsync gen`
    pipelines signing with storing), or by a key that is not in this process.
    """

    topic_id: bytes
    creator: bytes
    create_time: int
    object_id: bytes
    op: int
    prev_id: bytes | None
    data: bytes
    oplog_id: bytes

    @property
    def message(self) -> bytes:
        """The bytes the creator signs."""
        return creator_message(self.oplog_id)


def draft_oplog(
    creator: bytes,
    *,
    topic_id: bytes,
    object_id: bytes,
    op: int,
    create_time: int,
    data: bytes | None = None,
    value: object = NO_VALUE,
    prev_id: bytes | None = None,
) -> Draft:
    """Check an oplog's content and compute its ID.

    Give the payload either as `data`, bytes that must already be canonical
    CBOR (they are checked), or as `value`, which is encoded here.

    Raises:
        UsageError: a field is out of range, `data` is not canonical CBOR,
            or both or neither of `data` and `value` are given.
    """
    if (data is None) == (value is NO_VALUE):
        raise UsageError("give the payload as exactly one of data= (CBOR bytes) or value=")
    if data is None:
        try:
            data = codec.dumps(value)
        except (TypeError, ValueError) as exc:
            raise UsageError(
                f"the value cannot be encoded ({exc}): use None, bool, int (64-bit), float,"
                " str, bytes, list and dict only"
            ) from None
    elif not codec.is_canonical(data, max_size=MAX_DATA_SIZE):
        raise UsageError(
            f"data must be canonical, plain CBOR (no tags) of at most {MAX_DATA_SIZE} bytes"
        )
    if len(creator) != PEER_ID_SIZE:
        raise UsageError(f"creator must be a {PEER_ID_SIZE}-byte peer ID")
    _check_content_args(topic_id, object_id, op, data, create_time, prev_id)
    content = _content_bytes(topic_id, creator, create_time, object_id, op, prev_id, data)
    return Draft(topic_id, creator, create_time, object_id, op, prev_id, data, _oplog_id(content))


def finish_oplog(draft: Draft, creator_sig: bytes) -> Oplog:
    """Attach the creator's signature of `draft.message`.

    The signature is not checked here; a wrong one fails `verify_oplog`.
    """
    if len(creator_sig) != SIGNATURE_SIZE:
        raise UsageError(f"a signature is {SIGNATURE_SIZE} bytes")
    t = draft.create_time
    return Oplog(
        FORMAT_VERSION,
        draft.topic_id,
        draft.oplog_id,
        draft.creator,
        t,
        draft.object_id,
        draft.op,
        draft.prev_id,
        draft.data,
        creator_sig,
        (),
        (),
        t,
        compute_hash(draft.oplog_id, creator_sig, (), (), t),
    )


def create_oplog(
    identity: Identity,
    *,
    topic_id: bytes,
    object_id: bytes,
    op: int,
    create_time: int,
    data: bytes | None = None,
    value: object = NO_VALUE,
    prev_id: bytes | None = None,
) -> Oplog:
    """Make and sign a new oplog with `identity` as its creator.

    The payload is `data` (canonical CBOR bytes, checked) or `value` (encoded here).

    Raises:
        UsageError: see `draft_oplog`.
    """
    draft = draft_oplog(
        identity.peer_id,
        topic_id=topic_id,
        object_id=object_id,
        op=op,
        create_time=create_time,
        data=data,
        value=value,
        prev_id=prev_id,
    )
    return finish_oplog(draft, identity.sign(draft.message))


def _check_content_args(
    topic_id: bytes,
    object_id: bytes,
    op: int,
    data: bytes,
    create_time: int,
    prev_id: bytes | None,
) -> None:
    if len(topic_id) != TOPIC_ID_SIZE:
        raise UsageError(f"topic_id must be {TOPIC_ID_SIZE} bytes")
    if not 1 <= len(object_id) <= MAX_OBJECT_ID_SIZE:
        raise UsageError(f"object_id must be 1..{MAX_OBJECT_ID_SIZE} bytes")
    if type(op) is not int or not 0 <= op <= MAX_OP:
        raise UsageError(f"op must be an integer in [0, {MAX_OP}]")
    if prev_id is not None and len(prev_id) != OPLOG_ID_SIZE:
        raise UsageError(f"prev_id must be {OPLOG_ID_SIZE} bytes")
    if type(create_time) is not int or not 0 <= create_time <= MAX_TIME:
        raise UsageError("create_time must be integer nanoseconds in [0, MAX_TIME]")
    if len(data) > MAX_DATA_SIZE:
        raise UsageError(f"data is {len(data)} bytes, over the limit of {MAX_DATA_SIZE}")


def cosign(oplog: Oplog, identity: Identity, kind: SignKind, time: int) -> Oplog:
    """Return `oplog` with `identity`'s master or internal signature added.

    Signing again as the same signer returns the oplog unchanged.  The update
    time moves to `time` if that is later, and the hash is recomputed.

    Raises:
        UsageError: `time` is before the create time or out of range.
    """
    if type(time) is not int or not oplog.create_time <= time <= MAX_TIME:
        raise UsageError("a co-signature's time must be between the create time and MAX_TIME")
    current = oplog.master_sigs if kind is SignKind.MASTER else oplog.internal_sigs
    if any(s.signer == identity.peer_id for s in current):
        return oplog
    limit = MAX_MASTER_SIGS if kind is SignKind.MASTER else MAX_INTERNAL_SIGS
    if len(current) >= limit:
        raise UsageError(
            f"the oplog already has the maximum of {limit} {kind.name.lower()} signatures"
        )
    sig = Signature(
        identity.peer_id,
        time,
        identity.sign(cosign_message(kind, oplog.oplog_id, identity.peer_id, time)),
    )
    merged = tuple(sorted((*current, sig), key=lambda s: s.signer))
    return with_signatures(
        oplog,
        master_sigs=merged if kind is SignKind.MASTER else oplog.master_sigs,
        internal_sigs=merged if kind is SignKind.INTERNAL else oplog.internal_sigs,
    )


def with_signatures(
    oplog: Oplog, *, master_sigs: tuple[Signature, ...], internal_sigs: tuple[Signature, ...]
) -> Oplog:
    """Return `oplog` with these co-signature lists; update time and hash follow.

    The lists must be sorted by signer with no signer twice (`verify_oplog` checks).
    """
    update_time = _update_time(oplog.create_time, master_sigs, internal_sigs)
    return Oplog(
        version=oplog.version,
        topic_id=oplog.topic_id,
        oplog_id=oplog.oplog_id,
        creator=oplog.creator,
        create_time=oplog.create_time,
        object_id=oplog.object_id,
        op=oplog.op,
        prev_id=oplog.prev_id,
        data=oplog.data,
        creator_sig=oplog.creator_sig,
        master_sigs=master_sigs,
        internal_sigs=internal_sigs,
        update_time=update_time,
        hash=compute_hash(
            oplog.oplog_id, oplog.creator_sig, master_sigs, internal_sigs, update_time
        ),
    )


# ---------------------------------------------------------------------------
# Verification.


def verify_oplog(oplog: Oplog, *, signatures: bool = True) -> None:
    """Check every invariant of a record; with `signatures`, every signature too.

    Raises:
        TimestampError, IntegrityError, SignatureError, MalformedOplogError.
    """
    if oplog.version != FORMAT_VERSION:
        raise MalformedOplogError(f"unsupported format version {oplog.version}", field="v")
    for name, sigs, limit in (
        ("ms", oplog.master_sigs, MAX_MASTER_SIGS),
        ("is", oplog.internal_sigs, MAX_INTERNAL_SIGS),
    ):
        if len(sigs) > limit:
            raise OversizeError(f"{len(sigs)} signatures is over the limit of {limit}", field=name)
        signers = [s.signer for s in sigs]
        if signers != sorted(set(signers)):
            raise MalformedOplogError("signatures must be sorted by signer, one each", field=name)
        for s in sigs:
            if s.time < oplog.create_time:
                raise TimestampError("a co-signature is older than the oplog", field=name)
    if oplog.update_time < oplog.create_time:
        raise TimestampError("update time is before create time", field="ut")
    expected_ut = _update_time(oplog.create_time, oplog.master_sigs, oplog.internal_sigs)
    if oplog.update_time != expected_ut:
        raise TimestampError("update time is not the time of the last signature", field="ut")
    if compute_oplog_id(oplog) != oplog.oplog_id:
        raise IntegrityError("oplog ID does not match the content", field="id")
    expected_hash = compute_hash(
        oplog.oplog_id, oplog.creator_sig, oplog.master_sigs, oplog.internal_sigs, oplog.update_time
    )
    if expected_hash != oplog.hash:
        raise IntegrityError("hash does not match the content and signatures", field="h")
    if not signatures:
        return
    if not verify_signature(oplog.creator, oplog.creator_sig, creator_message(oplog.oplog_id)):
        raise SignatureError("creator signature does not verify", field="cs")
    for kind, name, sigs in (
        (SignKind.MASTER, "ms", oplog.master_sigs),
        (SignKind.INTERNAL, "is", oplog.internal_sigs),
    ):
        for s in sigs:
            message = cosign_message(kind, oplog.oplog_id, s.signer, s.time)
            if not verify_signature(s.signer, s.sig, message):
                raise SignatureError(
                    f"signature by {s.signer.hex()[:16]}… does not verify", field=name
                )
