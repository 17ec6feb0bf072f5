"""The replicated document store of a topic: the application's API (sans-I/O).

Documents are keyed by text and hold a plain CBOR value.  Every write is an
oplog (core/docop.py has the ops, derive.py the derivation):

* `put` and `delete` write on top of the document's current valid winner
  (the previous-log ID);
* `resolve` writes on top of the winner *and* names every losing head, which
  closes a conflict;
* `history` lists every version held, with its conflicts and how each was
  resolved (history.py);
* a write is durable before the call returns.  It is valid at once when
  this peer's signature suffices (a master, with the default single master),
  otherwise it is pending and shows as pending until it is confirmed (valid)
  or fails (expired, rolled back).

Every peer derives the same document from the same valid oplogs.  Two
valid writes on the same previous version are a conflict: a deterministic
winner is shown (later create time, then larger oplog ID, or the
application's resolver), and the losers stay listed in `conflicts` until a
`resolve` write closes them.  Nothing is dropped silently.

Changes are reported to subscribers (`subscribe`) as `Change` events:
put, delete, conflict, confirmed, failed (this peer's write expired) and
rolled_back (someone else's tentative write expired).  The trio shell turns
them into an async iterator (pttsync.docs.watch).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from ..docop import (
    OP_DELETE,
    OP_PUT,
    delete_payload,
    is_doc_op,
    key_to_object,
    object_to_key,
    put_payload,
)
from ..oplog import NO_VALUE, OplogStatus
from .derive import Deriver, DocState, Resolver, derive
from .history import DEFAULT_LIMIT, History, history

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ..lifecycle.replica import Commit, Replica
    from ..oplog import Oplog
    from ..store import FailedOplog

log = logging.getLogger(__name__)

DOC_OPS = (OP_PUT, OP_DELETE + 1)
MAX_LIST = 10_000
PAGE = 1000  # object IDs read per query when listing


class ChangeKind(Enum):
    PUT = "put"
    DELETE = "delete"
    CONFLICT = "conflict"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True, slots=True)
class Change:
    """One change to a document, as the application sees it."""

    kind: ChangeKind
    key: str
    oplog_id: bytes  # the write concerned
    state: DocState | None  # the document as it shows now (None: no version left)
    local: bool  # the write concerned was made by this peer
    reason: str = ""  # why a write failed or was rolled back


class WriteStatus(Enum):
    PENDING = "pending"  # stored, waiting for co-signatures
    CONFIRMED = "confirmed"  # valid
    FAILED = "failed"  # expired (or no longer authorised) and rolled back
    UNKNOWN = "unknown"  # never seen here


@dataclass(frozen=True, slots=True)
class Write:
    """What a local write did."""

    key: str
    oplog_id: bytes
    status: WriteStatus


class DocumentStore:
    """A topic's documents over a Replica; reports changes to subscribers."""

    def __init__(
        self, replica: Replica, *, resolver: Resolver | None = None, deriver: Deriver = derive
    ) -> None:
        self.replica = replica
        self.resolver = resolver
        self._deriver = deriver  # `derive`, or what gives the same (derive.py `Deriver`)
        self._subscribers: list[Callable[[Change], None]] = []
        self._before: dict[bytes, DocState | None] = {}
        replica.observers.append(self)

    def close(self) -> None:
        if self in self.replica.observers:
            self.replica.observers.remove(self)

    # -- reading -----------------------------------------------------------------

    def get(self, key: str) -> DocState | None:
        """The document as this peer shows it (None if it never existed here)."""
        return self._derive(key_to_object(key))

    def _derive(self, object_id: bytes) -> DocState | None:
        stored = self.replica.store.by_objects(self.replica.topic_id, [object_id])
        return self._deriver(
            object_to_key(object_id), [(s.oplog, s.status) for s in stored], self.resolver
        )

    def history(self, key: str, *, limit: int = DEFAULT_LIMIT) -> History | None:
        """Every version of the document held here, oldest first (history.py); None if none.

        Only the newest `limit` (1..10,000) are listed; `History.omitted` counts the rest.
        """
        stored = self.replica.store.by_objects(self.replica.topic_id, [key_to_object(key)])
        return history(
            key,
            [(s.oplog, s.status) for s in stored],
            author_of=self.replica.fold.governance.user_of,
            resolver=self.resolver,
            limit=limit,
        )

    def _object_ids(self, start: bytes, *, inclusive: bool) -> Iterator[bytes]:
        """The documents' object IDs from `start` on, in order, read a page at a time."""
        while True:
            ids = self.replica.store.object_ids(
                self.replica.topic_id, ops=DOC_OPS, after=start, limit=PAGE, inclusive=inclusive
            )
            yield from ids
            if len(ids) < PAGE:
                return
            start, inclusive = ids[-1], False

    def items(
        self, *, prefix: str = "", after: str = "", limit: int = 1000, deleted: bool = False
    ) -> list[DocState]:
        """Documents in key order (existing ones unless `deleted`), after `after`."""
        if not 1 <= limit <= MAX_LIST:
            raise UsageError(f"limit is 1..{MAX_LIST}")
        out: list[DocState] = []
        start = prefix.encode()
        # The key equal to the prefix is listed too, unless `after` is past it.
        for object_id in self._object_ids(
            max(after.encode(), start), inclusive=start > after.encode()
        ):
            if not object_id.startswith(start):
                break
            state = self._derive(object_id)
            if state is not None and (deleted or state.exists):
                out.append(state)
                if len(out) >= limit:
                    break
        return out

    def conflicts(self, *, limit: int = 1000) -> list[DocState]:
        """Documents with more than one valid head, in key order."""
        out: list[DocState] = []
        for object_id in self._object_ids(b"", inclusive=False):
            state = self._derive(object_id)
            if state is not None and state.in_conflict:
                out.append(state)
                if len(out) >= limit:
                    break
        return out

    def write_status(self, oplog_id: bytes) -> WriteStatus:
        stored = self.replica.store.get(self.replica.topic_id, oplog_id)
        if stored is not None:
            valid = stored.status is OplogStatus.VALID
            return WriteStatus.CONFIRMED if valid else WriteStatus.PENDING
        failed = self.replica.store.has_failed(self.replica.topic_id, oplog_id)
        return WriteStatus.FAILED if failed else WriteStatus.UNKNOWN

    # -- writing -----------------------------------------------------------------

    def put(self, key: str, value: Any, *, now: int) -> Write:
        """Write `value` as the document's new version."""
        return self._write(key, OP_PUT, put_payload(value), now)

    def delete(self, key: str, *, now: int) -> Write:
        """Delete the document (a tombstone version: it can be put again)."""
        return self._write(key, OP_DELETE, delete_payload(), now)

    def resolve(self, key: str, value: Any = NO_VALUE, *, now: int) -> Write:
        """Close the document's conflict with a new version (or a delete, if no value).

        Raises:
            UsageError: the document is not in conflict.
        """
        state = self.get(key)
        if state is None or not state.in_conflict:
            raise UsageError(f"document {key!r} is not in conflict")
        losers = [v.oplog_id for v in state.conflicts]
        if value is NO_VALUE:
            return self._write(key, OP_DELETE, delete_payload(losers), now)
        return self._write(key, OP_PUT, put_payload(value, losers), now)

    def _write(self, key: str, op: int, payload: dict[str, Any], now: int) -> Write:
        object_id = key_to_object(key)
        state = self._derive(object_id)
        prev = state.heads[0].oplog_id if state is not None and state.heads else None
        oplog, status = self.replica.create(
            object_id=object_id, op=op, value=payload, now=now, prev_id=prev
        )
        done = WriteStatus.CONFIRMED if status is OplogStatus.VALID else WriteStatus.PENDING
        return Write(key, oplog.oplog_id, done)

    # -- change events -----------------------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` with every Change from now on; returns the unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def before_commit(self, commit: Commit) -> None:
        self._before = (
            {oid: self._derive(oid) for oid in _doc_objects(commit)} if self._subscribers else {}
        )

    def after_commit(self, commit: Commit) -> None:
        if not self._subscribers:
            return
        before, self._before = self._before, {}
        me, store = self.replica.me, self.replica.store
        after = {oid: self._derive(oid) for oid in before}
        reported: set[bytes] = set()
        changes: list[Change] = []
        for record, oplog in commit.failed:
            if is_doc_op(record.op) and record.object_id in after:
                kind = ChangeKind.FAILED if oplog.creator == me else ChangeKind.ROLLED_BACK
                changes.append(_change(kind, record, after[record.object_id], me, record.reason))
                reported.add(record.object_id)
        for oplog, old, new in commit.stored:
            if (
                is_doc_op(oplog.op)
                and oplog.creator == me
                and new is OplogStatus.VALID
                and (
                    (old is not None and old is not OplogStatus.VALID)
                    # A late confirmation of a write that had expired here.
                    or (old is None and store.has_failed(self.replica.topic_id, oplog.oplog_id))
                )
            ):
                state = after.get(oplog.object_id)
                changes.append(_change(ChangeKind.CONFIRMED, oplog, state, me))
                if state is not None and state.version.oplog_id == oplog.oplog_id:
                    reported.add(oplog.object_id)  # the confirmation is the whole change
        for oid, state in after.items():
            old_state = before[oid]
            shown_changed = _shown(old_state) != _shown(state)
            if oid not in reported and shown_changed and state is not None:
                kind = ChangeKind.PUT if state.exists else ChangeKind.DELETE
                local = state.version.creator == me
                changes.append(Change(kind, state.key, state.version.oplog_id, state, local))
                reported.add(oid)
            # A new or changed conflict; or its end, when nothing above said so.
            if (
                state is not None
                and _losers(old_state) != _losers(state)
                and (state.in_conflict or oid not in reported)
            ):
                winner = state.heads[0].oplog_id if state.heads else state.version.oplog_id
                changes.append(Change(ChangeKind.CONFLICT, state.key, winner, state, False))
        for change in changes:
            for callback in list(self._subscribers):
                callback(change)


def _doc_objects(commit: Commit) -> set[bytes]:
    return {o.object_id for o, _, _ in commit.stored if is_doc_op(o.op)} | {
        f.object_id for f, _ in commit.failed if is_doc_op(f.op)
    }


def _shown(state: DocState | None) -> tuple[object, ...] | None:
    if state is None:
        return None
    return (state.exists, state.version.oplog_id, state.pending, state.merged, repr(state.value))


def _losers(state: DocState | None) -> frozenset[bytes]:
    return frozenset() if state is None else frozenset(v.oplog_id for v in state.conflicts)


def _change(
    kind: ChangeKind,
    what: Oplog | FailedOplog,
    state: DocState | None,
    me: bytes | None,
    reason: str = "",
) -> Change:
    return Change(
        kind, object_to_key(what.object_id), what.oplog_id, state, what.creator == me, reason
    )
