"""Replicated documents: the ops, their payloads, and the pure derivation.

A document is keyed by text (its UTF-8 form is the oplogs' object ID) and
written by two ops:

| op | payload |
|---|---|
| PUT (1) | `{"v": value}`, or `{"v": value, "r": [oplog IDs it resolves]}` |
| DELETE (2) | `{}`, or `{"r": [oplog IDs it resolves]}` |

`derive` is a pure function of the *set* of (oplog, status) pairs of a key
(docs/pip-11/lifecycle.md, Documents): heads, a deterministic winner, the
conflict set, and a pending write shown on top.  No store, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedOplogError, UsageError
from . import codec
from .oplog import MAX_DATA_SIZE, OPLOG_ID_SIZE, Oplog, OplogStatus

OP_PUT = 1
OP_DELETE = 2
MAX_KEY_BYTES = 128
MAX_RESOLVES = 64


def is_doc_op(op: int) -> bool:
    return op in (OP_PUT, OP_DELETE)


def key_to_object(key: str) -> bytes:
    """A key's object ID (its UTF-8 form).

    Raises:
        UsageError: the key is empty, too long or not printable.
    """
    if not isinstance(key, str) or not key or not key.isprintable():
        raise UsageError("a document key is non-empty printable text")
    data = key.encode()
    if len(data) > MAX_KEY_BYTES:
        raise UsageError(f"a document key is at most {MAX_KEY_BYTES} bytes of UTF-8")
    return data


def object_to_key(object_id: bytes) -> str:
    """The key of a document's object ID.

    Raises:
        MalformedOplogError: it is not printable UTF-8.
    """
    try:
        key = object_id.decode()
    except UnicodeDecodeError:
        raise MalformedOplogError("a document key is UTF-8 text", field="ob") from None
    if not key or not key.isprintable():
        raise MalformedOplogError("a document key is printable text", field="ob")
    return key


def _resolves(ids: Iterable[bytes]) -> list[bytes]:
    out = sorted(set(ids))
    if len(out) > MAX_RESOLVES or any(len(i) != OPLOG_ID_SIZE for i in out):
        raise UsageError(f"a write resolves at most {MAX_RESOLVES} oplog IDs of 32 bytes")
    return out


def put_payload(value: object, resolves: Iterable[bytes] = ()) -> dict[str, Any]:
    r = _resolves(resolves)
    return {"v": value, "r": r} if r else {"v": value}


def delete_payload(resolves: Iterable[bytes] = ()) -> dict[str, Any]:
    r = _resolves(resolves)
    return {"r": r} if r else {}


@dataclass(frozen=True, slots=True)
class DocOp:
    key: str
    op: int
    value: Any  # None for a delete
    resolves: tuple[bytes, ...]


def decode_doc_op(oplog: Oplog) -> DocOp:
    """The document write an oplog makes.

    Raises:
        MalformedOplogError: not a document op, or a malformed key or payload.
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
            raise MalformedOplogError("'r' is a sorted list of distinct other oplog IDs", field="d")
        resolves = tuple(r)
    return DocOp(key, oplog.op, data.get("v"), resolves)


@dataclass(frozen=True, slots=True)
class Version:
    """One write of a document."""

    oplog_id: bytes
    creator: bytes
    create_time: int
    prev_id: bytes | None
    deleted: bool
    value: Any  # None when deleted
    pending: bool
    resolves: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Merged:
    """What a resolver may return instead of one head: a value built from several."""

    value: Any
    deleted: bool = False


Resolver = Callable[[str, tuple[Version, ...]], "Version | Merged"]


@dataclass(frozen=True, slots=True)
class DocState:
    """A document as a peer shows it."""

    key: str
    exists: bool  # the shown result is not a delete
    value: Any  # None when not exists
    version: Version  # the version shown (the winner, or the pending write on top)
    pending: bool  # the shown value is a pending (not yet valid) write
    merged: bool  # the value came from a resolver's Merged
    heads: tuple[Version, ...]  # the valid heads, winner first
    conflicts: tuple[Version, ...]  # heads[1:]: the losing versions, kept for the application
    pending_versions: tuple[Version, ...]  # pending writes of this key, newest first

    @property
    def in_conflict(self) -> bool:
        return len(self.heads) > 1


def version_of(oplog: Oplog, status: OplogStatus) -> Version:
    op = decode_doc_op(oplog)
    return Version(
        oplog.oplog_id,
        oplog.creator,
        oplog.create_time,
        oplog.prev_id,
        op.op == OP_DELETE,
        op.value,
        status is not OplogStatus.VALID,
        op.resolves,
    )


def winner_key(v: Version) -> tuple[int, bytes]:
    """The later create time wins, then the larger oplog ID."""
    return (v.create_time, v.oplog_id)


def derive(
    key: str,
    oplogs: Iterable[tuple[Oplog, OplogStatus]],
    resolver: Resolver | None = None,
) -> DocState | None:
    """The document `key` from its oplogs (a pure function of the set given)."""
    object_id = key.encode()
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
    heads = tuple(
        sorted((v for v in valid if v.oplog_id not in superseded), key=winner_key, reverse=True)
    )
    pending = tuple(sorted((v for v in versions if v.pending), key=winner_key, reverse=True))
    merged = False
    if pending:
        shown, value, deleted = pending[0], pending[0].value, pending[0].deleted
    else:
        shown, value, deleted = heads[0], heads[0].value, heads[0].deleted
        if resolver is not None and len(heads) > 1:
            choice = resolver(key, heads)
            if isinstance(choice, Merged):
                value, deleted, merged = choice.value, choice.deleted, True
            elif isinstance(choice, Version) and choice in heads:
                shown, value, deleted = choice, choice.value, choice.deleted
            else:
                raise UsageError("a resolver returns one of the heads it was given, or Merged")
    return DocState(
        key,
        not deleted,
        None if deleted else value,
        shown,
        bool(pending),
        merged,
        heads,
        heads[1:],
        pending,
    )


def _preferred(a: tuple[Oplog, OplogStatus], b: tuple[Oplog, OplogStatus]) -> bool:
    """True if copy `a` of one oplog is to be used over copy `b`."""
    (oa, sa), (ob, sb) = a, b
    if sa != sb:
        return sa > sb
    return (oa.update_time, oa.hash) < (ob.update_time, ob.hash)
