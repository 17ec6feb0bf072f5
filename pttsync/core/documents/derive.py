"""Replicated documents: versions and their pure derivation.

`derive` is a pure function of the *set* of (oplog, status) pairs of a key
(docs/pip-11/lifecycle.md, Documents): the heads, a deterministic winner, the
conflict set, and a pending write shown on top.  The order the pairs come in,
and copies of one oplog, change nothing.  No store, no I/O, no clock.  The
ops themselves, their keys and payloads, are the record format (core/docop.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ...errors import UsageError
from ..docop import OP_DELETE, decode_doc_op, is_doc_op, key_to_object
from ..oplog import Oplog, OplogStatus

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

Deriver = Callable[[str, Iterable[tuple[Oplog, OplogStatus]], "Resolver | None"], "DocState | None"]
"""`derive` itself, or a stand-in that gives what it gives (a memo: the simulator's checks)."""


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
    best = held_copies(key, oplogs)
    if not best:
        return None
    return derive_versions(key, [version_of(o, s) for o, s in best.values()], resolver)


def derive_versions(
    key: str, versions: list[Version], resolver: Resolver | None = None
) -> DocState:
    """`derive` from the versions of the copies `held_copies` chose (one or more), for a
    caller that decoded them already (history.py).

    Raises:
        UsageError: the resolver returned neither one of the heads nor a `Merged`.
    """
    valid = [v for v in versions if not v.pending]
    superseded = {s for v in valid for s in supersedes(v)}
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


def held_copies(
    key: str, oplogs: Iterable[tuple[Oplog, OplogStatus]]
) -> dict[bytes, tuple[Oplog, OplogStatus]]:
    """The copy of each document oplog of `key` that derivation uses, by oplog ID.

    Oplogs of other objects and non-document ops are left out.  Of two copies
    of one oplog, the higher status is used, then the smaller (update time, hash).

    Raises:
        UsageError: `key` is not a valid key.
    """
    object_id = key_to_object(key)
    best: dict[bytes, tuple[Oplog, OplogStatus]] = {}
    for oplog, status in oplogs:
        if oplog.object_id != object_id or not is_doc_op(oplog.op):
            continue
        held = best.get(oplog.oplog_id)
        if held is None or _preferred((oplog, status), held):
            best[oplog.oplog_id] = (oplog, status)
    return best


def supersedes(v: Version) -> tuple[bytes, ...]:
    """The versions a valid `v` supersedes: its previous log and its `r` list."""
    return v.resolves if v.prev_id is None else (v.prev_id, *v.resolves)


def _newest_first(versions: Iterable[Version]) -> tuple[Version, ...]:
    return tuple(sorted(versions, key=winner_key, reverse=True))


def _preferred(a: tuple[Oplog, OplogStatus], b: tuple[Oplog, OplogStatus]) -> bool:
    """True if copy `a` of one oplog is to be used over copy `b`."""
    (oa, sa), (ob, sb) = a, b
    if sa != sb:
        return sa > sb
    return (oa.update_time, oa.hash) < (ob.update_time, ob.hash)
