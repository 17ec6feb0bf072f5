"""Replicated documents: the ops, their payloads, and the pure derivation.

A document is keyed by text (its UTF-8 form is the oplogs' object ID) and
written by two ops:

| op | payload |
|---|---|
| PUT (1) | `{"v": value}`, or `{"v": value, "r": [oplog IDs it resolves]}` |
| DELETE (2) | `{}`, or `{"r": [oplog IDs it resolves]}` |

A write's previous-log ID is the version it was written on (none for a new
document); `r` names the other heads that a resolving write closes.

`derive` is a pure function of the *set* of (oplog, status) pairs of a key
(docs/pip-11/lifecycle.md, Documents): the heads, a deterministic winner, the
conflict set, and a pending write shown on top.  The order the pairs come in,
and copies of one oplog, change nothing.  No store, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import MalformedOplogError, UsageError
from .. import codec
from ..oplog import MAX_DATA_SIZE, OPLOG_ID_SIZE, Oplog, OplogStatus

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


# ---------------------------------------------------------------------------
# Versions and the derived state.


@dataclass(frozen=True, slots=True)
class Version:
    """One write of a document."""

    oplog_id: bytes
    creator: bytes
    create_time: int
    prev_id: bytes | None
    deleted: bool  # a DELETE
    value: Any  # None when deleted
    pending: bool  # its status is below VALID
    resolves: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Merged:
    """What a resolver may return instead of picking one head: a value built from several."""

    value: Any
    deleted: bool = False


Resolver = Callable[[str, tuple[Version, ...]], "Version | Merged"]
"""`(key, heads) -> Version | Merged`: a pure, deterministic choice of what a conflict shows."""


@dataclass(frozen=True, slots=True)
class DocState:
    """A document as a peer shows it."""

    key: str
    exists: bool  # the shown result is not a delete
    value: Any  # None when not exists
    version: Version  # the version shown: the winner (or chosen) head, or the pending write
    pending: bool  # the shown value is a pending (not yet valid) write
    merged: bool  # the value came from a resolver's Merged
    heads: tuple[Version, ...]  # the valid heads, winner first (by winner_key)
    conflicts: tuple[Version, ...]  # heads[1:]: the losing versions, kept for the application
    pending_versions: tuple[Version, ...]  # pending writes of this key, newest first

    @property
    def in_conflict(self) -> bool:
        """Two or more valid heads."""
        return len(self.heads) > 1


def version_of(oplog: Oplog, status: OplogStatus) -> Version:
    """The version a document oplog writes, at `status`.

    Raises:
        MalformedOplogError: see `decode_doc_op`.
    """
    op = decode_doc_op(oplog)
    return Version(
        oplog.oplog_id,
        oplog.creator,
        oplog.create_time,
        oplog.prev_id,
        op.op == OP_DELETE,
        op.value,
        status < OplogStatus.VALID,
        op.resolves,
    )


def winner_key(v: Version) -> tuple[int, bytes]:
    """The larger wins: the later create time, then the larger oplog ID.

    The ID, not the hash, because the hash changes as co-signatures arrive.
    """
    return (v.create_time, v.oplog_id)


def derive(
    key: str,
    oplogs: Iterable[tuple[Oplog, OplogStatus]],
    resolver: Resolver | None = None,
) -> DocState | None:
    """The document `key` from its oplogs: a pure function of the set given.

    Oplogs of other objects and non-document ops are ignored.  Of two copies
    of one oplog, the higher status is used, then the smaller (update time,
    hash).  A valid version is superseded when another valid version names it
    as its previous log or in its `r` list; the valid versions not superseded
    are the heads, winner first.  The newest pending write, if any, is shown on
    top; otherwise the winner, or what `resolver` chooses when there are two
    or more heads (it is not asked while a pending write is shown, since its
    answer would not be).  None when the key has no version at all.

    Raises:
        UsageError: `key` is not a valid key, or the resolver returned
            neither one of the heads it was given nor a `Merged`.
        MalformedOplogError: a document oplog of this key is malformed.
    """
    object_id = key_to_object(key)
    best: dict[bytes, tuple[Oplog, OplogStatus]] = {}
    for oplog, status in oplogs:
        if oplog.object_id != object_id or not is_doc_op(oplog.op):
            continue
        held = best.get(oplog.oplog_id)
        if held is None or _preferred((oplog, status), held):
            best[oplog.oplog_id] = (oplog, status)
    if not best:
        return None
    versions = [version_of(o, s) for o, s in best.values()]
    valid = [v for v in versions if not v.pending]
    superseded = {v.prev_id for v in valid} | {r for v in valid for r in v.resolves}
    heads = _newest_first(v for v in valid if v.oplog_id not in superseded)
    pending = _newest_first(v for v in versions if v.pending)
    merged = False
    if pending:
        shown = pending[0]
        value, deleted = shown.value, shown.deleted
    else:
        shown = heads[0]  # the oplog IDs form a DAG, so some valid version is a head
        value, deleted = shown.value, shown.deleted
        if resolver is not None and len(heads) > 1:
            choice = resolver(key, heads)
            if isinstance(choice, Merged):
                value, deleted, merged = choice.value, bool(choice.deleted), True
            elif isinstance(choice, Version) and choice in heads:
                shown = heads[heads.index(choice)]
                value, deleted = shown.value, shown.deleted
            else:
                raise UsageError(
                    "a resolver returns one of the heads it was given, or Merged,"
                    f" not {type(choice).__name__}"
                )
    return DocState(
        key=key,
        exists=not deleted,
        value=None if deleted else value,
        version=shown,
        pending=bool(pending),
        merged=merged,
        heads=heads,
        conflicts=heads[1:],
        pending_versions=pending,
    )


def _newest_first(versions: Iterable[Version]) -> tuple[Version, ...]:
    return tuple(sorted(versions, key=winner_key, reverse=True))


def _preferred(a: tuple[Oplog, OplogStatus], b: tuple[Oplog, OplogStatus]) -> bool:
    """True if copy `a` of one oplog is to be used over copy `b`."""
    (oa, sa), (ob, sb) = a, b
    if sa != sb:
        return sa > sb
    return (oa.update_time, oa.hash) < (ob.update_time, ob.hash)
