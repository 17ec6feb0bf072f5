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
from .oplog import MAX_DATA_SIZE, MAX_OBJECT_ID_SIZE, OPLOG_ID_SIZE, Oplog

if TYPE_CHECKING:
    from collections.abc import Iterable

OP_PUT = 1
OP_DELETE = 2
MAX_RESOLVES = 64

# The limits on what a write holds, each stated once, in bytes; every check and
# message uses these (the CLI's --help and the README's "Limits" state them too).
MAX_KEY_BYTES = MAX_OBJECT_ID_SIZE
"""The longest key, in bytes of UTF-8 (128): a key's UTF-8 form is the oplog's object ID."""
MAX_VALUE_BYTES = 60 * 1024
"""The largest value, in bytes of its CBOR encoding, as stored (61,440).

An oplog's data is at most 64 KiB (MAX_DATA_SIZE), and the payload map around the
value takes up to 2,183 bytes of it (3 for `{"v": ...}`, the rest for the IDs of a
resolving write, MAX_RESOLVES of them at most), so a value within this limit can be
put, and can close a conflict, alike.  Text of n bytes of UTF-8 takes n + 1 to
n + 3 bytes within the limit (n + 3 from 256), a byte string the same.
"""
MAX_VALUE_DEPTH = codec.MAX_DEPTH - 1
"""How deep lists and maps may nest in a value (31): its payload map is one more level."""


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
    check_key_size(len(data))
    return data


def check_key_size(size: int, what: str = "a document key") -> None:
    """Raise the one message for a key (or a prefix, `what`) over MAX_KEY_BYTES of UTF-8."""
    if size > MAX_KEY_BYTES:
        raise UsageError(f"{what} is at most {MAX_KEY_BYTES} bytes of UTF-8; this one is {size:,}")


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
        UsageError: `value` is not plain CBOR (see codec.is_plain), nests too
            deep or is too large (see `value_size`), or a resolved ID is not 32
            bytes, or there are over MAX_RESOLVES of them.
    """
    r = _resolves(resolves)
    value_size(value)
    return {"v": value, "r": r} if r else {"v": value}


def value_size(value: object) -> int:
    """The size of a document value, in bytes of its CBOR encoding, checked.

    Raises:
        UsageError: `value` is not plain CBOR, nests lists and maps over
            MAX_VALUE_DEPTH deep, or is over MAX_VALUE_BYTES encoded.
    """
    if _too_deep(value, MAX_VALUE_DEPTH):
        raise value_too_deep()
    try:
        size = len(codec.dumps(value))
    except UnicodeEncodeError:
        raise _not_plain("text with a lone surrogate, such as \\ud800, is not Unicode") from None
    except ValueError:  # depth is checked above: an integer over 64 bits
        raise _not_plain("a whole number does not fit in 64 bits") from None
    except TypeError as exc:
        raise _not_plain(str(exc)) from None
    if size > MAX_VALUE_BYTES:
        raise value_too_large(size)
    return size


def value_too_large(size: int, *, over: bool = False) -> UsageError:
    """The one message for a value over MAX_VALUE_BYTES (`over`: at least `size`, not read on)."""
    return UsageError(
        f"a document value is at most {MAX_VALUE_BYTES:,} bytes encoded (CBOR, as stored);"
        f" this one is {'over ' if over else ''}{size:,}"
    )


def value_too_deep() -> UsageError:
    """The one message for a value that nests lists and maps over MAX_VALUE_DEPTH deep."""
    return UsageError(f"a document value nests lists and maps at most {MAX_VALUE_DEPTH} deep")


def _not_plain(why: str) -> UsageError:
    return UsageError(
        "a document value is plain CBOR: null, true, false, whole numbers within 64 bits,"
        f" floats, text, byte strings, lists and maps only ({why})"
    )


def _too_deep(value: object, room: int) -> bool:
    """True if lists and maps nest in `value` more than `room` deep."""
    if isinstance(value, list | dict):
        items = value.values() if isinstance(value, dict) else value
        return room == 0 or any(_too_deep(v, room - 1) for v in items)
    return False


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
