"""The oplog record on the wire and on disk: canonical encoding, strict decoding.

`encode_oplog` writes the one canonical CBOR form of a record (a map with
the keys in docs/pip-11/oplog.md).  `decode_oplog` accepts exactly that form
and nothing else: every malformed input raises a typed `InvalidOplogError`
naming the field, never any other exception.

Decoding with signatures is a pure function of the bytes, so its results
are remembered: a bounded table of records already verified (keyed by the
exact bytes, so a changed byte is a different record, verified afresh).
A copy of an oplog pushed by several peers is verified once.  The
simulator widens the table with `decode_cache(size)` while it runs: a
thousand simulated peers then verify each record once between them.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from ..errors import InvalidOplogError, MalformedOplogError, OversizeError
from . import codec
from .identity import PEER_ID_SIZE, SIGNATURE_SIZE
from .oplog import (
    FORMAT_VERSION,
    HASH_SIZE,
    MAX_DATA_SIZE,
    MAX_INTERNAL_SIGS,
    MAX_MASTER_SIGS,
    MAX_OBJECT_ID_SIZE,
    MAX_OP,
    MAX_OPLOG_SIZE,
    OPLOG_ID_SIZE,
    TOPIC_ID_SIZE,
    Keys,
    Oplog,
    Signature,
    encode_sig_list,
    verify_oplog,
)
from .timeutil import MAX_TIME

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

_MAP14 = codec.head(5, 14)

DEFAULT_DECODE_CACHE = 4096
"""Verified records remembered by default (oldest forgotten first)."""


class _Verified:
    """Records already decoded and verified, by their exact bytes; bounded, FIFO."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.map: dict[bytes, Oplog] = {}
        self.bodies: dict[bytes, tuple[Oplog, bytes]] = {}  # ID -> a decoded copy, its bytes

    def put(self, data: bytes, oplog: Oplog) -> None:
        m = self.map
        m[data] = oplog
        self.bodies[oplog.oplog_id] = (oplog, data)
        if len(m) > self.size:
            old = m.pop(next(iter(m)))
            if self.bodies.get(old.oplog_id, (None,))[0] is old:
                del self.bodies[old.oplog_id]


_verified = _Verified(DEFAULT_DECODE_CACHE)


@contextlib.contextmanager
def decode_cache(size: int) -> Iterator[None]:
    """Remember up to `size` verified records for the duration (then the default table)."""
    global _verified  # noqa: PLW0603 - one table per process, swapped for a run
    saved = _verified
    _verified = _Verified(max(1, size))
    try:
        yield
    finally:
        _verified = saved


_FIELDS = frozenset(
    ["d", "h", "v", "cr", "cs", "ct", "id", "is", "ms", "ob", "op", "pv", "tp", "ut"]
)


def encode_oplog(oplog: Oplog) -> bytes:
    """The canonical CBOR of a whole record, as stored and sent.

    The very record object a recent `decode_oplog` returned is not encoded
    again: the bytes it was decoded from are its encoding.
    """
    known = _verified.bodies.get(oplog.oplog_id)
    if known is not None and known[0] is oplog:
        return known[1]
    o = oplog
    return b"".join(
        (
            _MAP14,
            Keys.D, codec.bstr(o.data),
            Keys.H, codec.bstr(o.hash),
            Keys.V, codec.uint(o.version),
            Keys.CR, codec.bstr(o.creator),
            Keys.CS, codec.bstr(o.creator_sig),
            Keys.CT, codec.uint(o.create_time),
            Keys.ID, codec.bstr(o.oplog_id),
            Keys.IS, encode_sig_list(o.internal_sigs),
            Keys.MS, encode_sig_list(o.master_sigs),
            Keys.OB, codec.bstr(o.object_id),
            Keys.OP, codec.uint(o.op),
            Keys.PV, codec.NULL if o.prev_id is None else codec.bstr(o.prev_id),
            Keys.TP, codec.bstr(o.topic_id),
            Keys.UT, codec.uint(o.update_time),
        )
    )  # fmt: skip


def decode_known(data: bytes) -> Oplog | None:
    """The record these exact bytes decode to, if they were decoded and verified lately."""
    return _verified.map.get(data) if type(data) is bytes else None


def verify_records(bodies: Sequence[bytes]) -> list[tuple[bytes, Oplog]]:
    """The records among `bodies` that decode and verify (signatures included), each
    with its decoded oplog; the others are left out, for `decode_oplog` to refuse.

    Touches no shared state, so worker threads may run it at once (the signature
    checks release the GIL); `remember` then files the results, in one thread.
    """
    out = []
    for data in bodies:
        try:
            out.append((data, _decode(data, True)))
        except InvalidOplogError:
            continue
    return out


def remember(data: bytes, oplog: Oplog) -> None:
    """File a record `verify_records` verified, so that `decode_oplog` of these exact
    bytes returns it at once.  Not thread-safe: call it from one thread."""
    _verified.put(data, oplog)


def decode_oplog(data: bytes, *, signatures: bool = True) -> Oplog:
    """Decode and verify one record.

    With `signatures=False` (records read back from our own store) the
    signature checks are skipped; every structural check still runs.  A
    record verified before (the very same bytes) is not verified again.

    Raises:
        MalformedOplogError: not canonical CBOR, a wrong type, an unknown or a
            missing field.
        OversizeError: the record, a field or a list is over its limit.
        TimestampError, IntegrityError, SignatureError: see `verify_oplog`.
    """
    known = decode_known(data)
    if known is not None:
        return known
    oplog = _decode(data, signatures)
    if signatures and type(data) is bytes:
        _verified.put(data, oplog)
    return oplog


def _decode(data: bytes, signatures: bool) -> Oplog:
    try:
        # Canonical form is checked at the end, by re-encoding the record.
        m = codec.loads_unchecked(data, max_size=MAX_OPLOG_SIZE)
        codec.check_keys(m, _FIELDS, "oplog")
        version = codec.get_int(m, "v", 0, 2**32)
        if version != FORMAT_VERSION:
            raise MalformedOplogError(f"unsupported format version {version}", field="v")
        body = codec.get_bytes(m, "d", max_size=MAX_DATA_SIZE)
        if not codec.is_canonical(body, max_size=MAX_DATA_SIZE):
            raise MalformedOplogError("data is not canonical, plain CBOR", field="d")
        oplog = Oplog(
            version=version,
            topic_id=codec.get_bytes(m, "tp", size=TOPIC_ID_SIZE),
            oplog_id=codec.get_bytes(m, "id", size=OPLOG_ID_SIZE),
            creator=codec.get_bytes(m, "cr", size=PEER_ID_SIZE),
            create_time=codec.get_int(m, "ct", 0, MAX_TIME),
            object_id=codec.get_bytes(m, "ob", max_size=MAX_OBJECT_ID_SIZE),
            op=codec.get_int(m, "op", 0, MAX_OP),
            prev_id=codec.get_optional_bytes(m, "pv", size=OPLOG_ID_SIZE),
            data=body,
            creator_sig=codec.get_bytes(m, "cs", size=SIGNATURE_SIZE),
            master_sigs=_decode_sigs(codec.get_list(m, "ms", max_items=MAX_MASTER_SIGS), "ms"),
            internal_sigs=_decode_sigs(codec.get_list(m, "is", max_items=MAX_INTERNAL_SIGS), "is"),
            update_time=codec.get_int(m, "ut", 0, MAX_TIME),
            hash=codec.get_bytes(m, "h", size=HASH_SIZE),
        )
    except codec.CBORFormatError as exc:
        cls = OversizeError if exc.oversize else MalformedOplogError
        raise cls(str(exc), field=exc.field) from None
    if not oplog.object_id:
        raise MalformedOplogError("must not be empty", field="ob")
    if encode_oplog(oplog) != data:
        raise MalformedOplogError("not in canonical (RFC 8949 deterministic) form")
    verify_oplog(oplog, signatures=signatures)
    return oplog


def _decode_sigs(items: list[Any], field: str) -> tuple[Signature, ...]:
    sigs = []
    for item in items:
        if type(item) is not list or len(item) != 3:
            raise codec.CBORFormatError("a signature is [signer, time, signature]", field=field)
        signer, time, sig = item
        sigs.append(
            Signature(
                codec.as_bytes(signer, field, size=PEER_ID_SIZE),
                codec.get_int({field: time}, field, 0, MAX_TIME),
                codec.as_bytes(sig, field, size=SIGNATURE_SIZE),
            )
        )
    return tuple(sigs)
