"""Document ops: the two document writes, their keys and payloads, checked strictly.

A document is keyed by text (its UTF-8 form is the oplogs' object ID) and
written by two ops:

| op | payload |
|---|---|
| PUT (1) | `{"v": value}`, or `{"v": value, "r": [oplog IDs it resolves]}` |
| DELETE (2) | `{}`, or `{"r": [oplog IDs it resolves]}` |

A write's previous-log ID is the version it was written on (none for a new
document); `r` names the other heads that a resolving write closes.  This is
part of the record format: the lifecycle rules refuse an oplog whose document
payload is malformed, so it sits beside the oplog, below the lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import MalformedOplogError, UsageError
from . import codec
from .oplog import MAX_DATA_SIZE, OPLOG_ID_SIZE, Oplog

if TYPE_CHECKING:
    from collections.abc import Iterable

OP_PUT = 1
OP_DELETE = 2
MAX_KEY_BYTES = 128  # a key's UTF-8 form is the object ID, itself at most 128 bytes
MAX_RESOLVES = 64


def is_doc_op(op: int) -> bool:
    """True for the document ops, PUT and DELETE."""
    return op in (OP_PUT, OP_DELETE)


# ---------------------------------------------------------------------------
# Keys and payloads.


def key_to_object(key: str) -> bytes:
    """A key's object ID: its UTF-8 form.

    Raises:
        UsageError: the key is not text, is empty, has a non-printable
            character or is over MAX_KEY_BYTES of UTF-8.
    """
    if not isinstance(key, str) or not key or not key.isprintable():
        raise UsageError("a document key is non-empty, printable text")
    data = key.encode()  # a printable key has no lone surrogate, so this cannot fail
    if len(data) > MAX_KEY_BYTES:
        raise UsageError(f"a document key is at most {MAX_KEY_BYTES} bytes of UTF-8")
    return data


def object_to_key(object_id: bytes) -> str:
    """The key of a document's object ID (strict UTF-8).

    Raises:
        MalformedOplogError: the object ID is not printable UTF-8 text of
            1..MAX_KEY_BYTES bytes.
    """
    if not 1 <= len(object_id) <= MAX_KEY_BYTES:
        raise MalformedOplogError(f"a document key is 1..{MAX_KEY_BYTES} bytes", field="ob")
    try:
        key = object_id.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise MalformedOplogError("a document key is UTF-8 text", field="ob") from None
    if not key.isprintable():
        raise MalformedOplogError("a document key is printable text", field="ob")
    return key


def _resolves(ids: Iterable[bytes]) -> list[bytes]:
    """The `r` list of a payload: sorted, distinct 32-byte oplog IDs."""
    out: set[bytes] = set()
    for i in ids:
        if not isinstance(i, bytes) or len(i) != OPLOG_ID_SIZE:
            raise UsageError(f"a write resolves oplog IDs of {OPLOG_ID_SIZE} bytes")
        out.add(bytes(i))
    if len(out) > MAX_RESOLVES:
        raise UsageError(f"a write resolves at most {MAX_RESOLVES} oplog IDs, not {len(out)}")
    return sorted(out)


def put_payload(value: object, resolves: Iterable[bytes] = ()) -> dict[str, Any]:
    """A PUT's payload: `{"v": value}`, with `"r"` when it resolves other heads.

    Raises:
        UsageError: `value` is not plain CBOR (see codec.is_plain), or a
            resolved ID is not 32 bytes, or there are over MAX_RESOLVES of them.
    """
    r = _resolves(resolves)
    payload = {"v": value, "r": r} if r else {"v": value}
    if not codec.is_plain(payload):
        raise UsageError(
            "a document value is plain CBOR: None, bool, int (64-bit), float, str, bytes,"
            " list and dict only"
        )
    return payload


def delete_payload(resolves: Iterable[bytes] = ()) -> dict[str, Any]:
    """A DELETE's payload: `{}`, with `"r"` when it resolves other heads.

    Raises:
        UsageError: a resolved ID is not 32 bytes, or there are over MAX_RESOLVES.
    """
    r = _resolves(resolves)
    return {"r": r} if r else {}


@dataclass(frozen=True, slots=True)
class DocOp:
    """A document write, decoded from its oplog."""

    key: str
    op: int
    value: Any  # None for a delete
    resolves: tuple[bytes, ...]


def decode_doc_op(oplog: Oplog) -> DocOp:
    """The document write an oplog makes, checked strictly.

    Raises:
        MalformedOplogError: not a document op (field "op"), a bad key (field
            "ob"), or a payload other than those in the module's table (field
            "d"): an unknown or missing field, or an `r` that is not a
            non-empty sorted list of distinct 32-byte IDs, at most
            MAX_RESOLVES, naming neither the oplog itself nor its previous log.
    """
    if not is_doc_op(oplog.op):
        raise MalformedOplogError(f"op {oplog.op} is not a document op", field="op")
    key = object_to_key(oplog.object_id)
    try:
        data = codec.loads(oplog.data, max_size=MAX_DATA_SIZE)
    except codec.CBORFormatError as exc:
        raise MalformedOplogError(f"bad document payload: {exc}", field="d") from None
    allowed = {"v", "r"} if oplog.op == OP_PUT else {"r"}
    if not isinstance(data, dict) or not set(data) <= allowed:
        raise MalformedOplogError(f"a document payload is a map of {sorted(allowed)}", field="d")
    if oplog.op == OP_PUT and "v" not in data:
        raise MalformedOplogError("a put's payload holds its value as 'v'", field="d")
    resolves: tuple[bytes, ...] = ()
    if "r" in data:
        r = data["r"]
        ok = (
            type(r) is list
            and 0 < len(r) <= MAX_RESOLVES
            and all(type(i) is bytes and len(i) == OPLOG_ID_SIZE for i in r)
            and r == sorted(set(r))
            and oplog.oplog_id not in r
            and oplog.prev_id not in r
        )
        if not ok:
            raise MalformedOplogError(
                f"'r' is a sorted list of 1..{MAX_RESOLVES} distinct IDs of other oplogs",
                field="d",
            )
        resolves = tuple(r)
    return DocOp(key, oplog.op, data.get("v"), resolves)
