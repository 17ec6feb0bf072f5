"""A document's history: every version held, with its status and its conflicts (pure).

`history` lists the versions of one key that a store holds, oldest first by
(create time, oplog ID), each with its author, times, status, op, value (or
only its size, when large), what it was written on and what superseded it,
and, for the valid versions, whether it was in conflict, with which
versions, and which later version resolved that conflict
(docs/pip-11/lifecycle.md, History).

It reuses the derivation (derive.py) and does not redefine it: the same copy
of each oplog (`held_copies`), the same supersedes relation (`supersedes`),
and `derive` itself for what is shown now and the current heads.  Past
conflicts come from replaying the valid versions in causal order (a version
after what it supersedes; otherwise by create time, then oplog ID): the heads
after each step are what `derive` gives for the versions replayed so far, and
after the last step they are `derive`'s heads.  So the history is, like the
document, a pure function of the set of (oplog, status) pairs: every peer
holding the same oplogs shows the same history.

* A valid version is **in conflict** while it is a head together with
  others; `conflicts_with` lists every version that was a head beside it.
* A version that supersedes two or more heads at once (a `resolve`: its
  previous log and its `r` list) **closes** them: each is *resolved by* it.
* A head in conflict that one later version supersedes alone (a plain write
  on a branch of the fork) hands its conflict on: it is resolved when that
  version's conflict is.  A conflict still open has no resolution.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...errors import UsageError
from .. import codec
from .derive import (
    DocState,
    Resolver,
    Version,
    derive_versions,
    held_copies,
    supersedes,
    version_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from ..oplog import Oplog, OplogStatus

DEFAULT_LIMIT = 1000
"""Versions `history` returns unless told otherwise: the newest ones."""
MAX_LIMIT = 10_000
INLINE_VALUE = 1024
"""A value whose CBOR form is over this many bytes is given by its size only."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """The version that closed a conflict: which, by whom, when."""

    oplog_id: bytes
    author: bytes
    create_time: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a document, as its history shows it."""

    oplog_id: bytes
    creator: bytes  # the key that signed it: the author's own, or one of the author's devices
    author: bytes  # the user the creator speaks for at the create time
    create_time: int
    update_time: int  # the time of its latest signature
    status: OplogStatus
    deleted: bool  # a DELETE
    value: Any  # None when deleted or large (see value_omitted)
    size: int  # bytes of the value's CBOR form (0 for a delete)
    value_omitted: bool  # the value is over INLINE_VALUE bytes: given by size only
    prev_id: bytes | None  # the version it was written on
    resolves: tuple[bytes, ...]  # the other heads it names as resolved (its `r` list)
    shown: bool  # the version the document shows now (`get`)
    head: bool  # one of the document's valid heads now
    superseded_by: tuple[bytes, ...]  # the valid versions that name it (prev or `r`)
    conflicts_with: tuple[bytes, ...]  # the versions that were heads beside it
    closes: tuple[bytes, ...]  # the heads it superseded at once: the conflict it resolved
    resolution: Resolution | None  # what resolved its conflict (None: none, or still open)

    @property
    def op(self) -> str:
        """ "resolve" (a write that names other heads), "delete" or "put"."""
        return "resolve" if self.resolves else "delete" if self.deleted else "put"

    @property
    def device(self) -> bytes | None:
        """The device key that signed it, when that is not the author's own key."""
        return None if self.creator == self.author else self.creator

    @property
    def in_conflict(self) -> bool:
        return bool(self.conflicts_with)


@dataclass(frozen=True, slots=True)
class History:
    """A document's versions, oldest first: the newest `limit` of them."""

    key: str
    versions: tuple[HistoryEntry, ...]
    omitted: int  # the older versions left out by the limit
    state: DocState  # the document as it shows now

    @property
    def total(self) -> int:
        return len(self.versions) + self.omitted


def history(
    key: str,
    oplogs: Iterable[tuple[Oplog, OplogStatus]],
    *,
    author_of: Callable[[bytes, int], bytes | None] | None = None,
    resolver: Resolver | None = None,
    limit: int = DEFAULT_LIMIT,
) -> History | None:
    """The history of document `key` from its oplogs; None when it has no version.

    `author_of(creator, time)` names the user a creator key speaks for (the
    governance's `user_of`); without it, or when it knows none, the creator is
    the author.  `resolver` is the document store's, so that `shown` marks
    what `get` shows.  Only the newest `limit` versions are returned; the
    others are counted in `omitted`.  The conflicts are worked out from every
    version held, whatever the limit.

    Raises:
        UsageError: a bad key, or `limit` is not 1..MAX_LIMIT (or see `derive`).
        MalformedOplogError: a document oplog of this key is malformed.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"a history's limit is 1..{MAX_LIMIT:,}")
    held = held_copies(key, oplogs)
    if not held:
        return None
    versions = {oid: version_of(o, s) for oid, (o, s) in held.items()}
    state = derive_versions(key, list(versions.values()), resolver)
    valid = [v for v in versions.values() if not v.pending]
    replay = _Replay(valid)
    heads = {v.oplog_id for v in state.heads}
    order = sorted(versions.values(), key=lambda v: (v.create_time, v.oplog_id))
    kept = order[-limit:]

    def author(creator: bytes, t: int) -> bytes:
        found = author_of(creator, t) if author_of is not None else None
        return creator if found is None else found

    def entry(v: Version) -> HistoryEntry:
        oplog, status = held[v.oplog_id]
        size = 0 if v.deleted else len(codec.dumps(v.value))
        large = size > INLINE_VALUE
        done = replay.resolution(v.oplog_id)
        return HistoryEntry(
            oplog_id=v.oplog_id,
            creator=v.creator,
            author=author(v.creator, v.create_time),
            create_time=v.create_time,
            update_time=oplog.update_time,
            status=status,
            deleted=v.deleted,
            value=None if large else v.value,
            size=size,
            value_omitted=large,
            prev_id=v.prev_id,
            resolves=v.resolves,
            shown=v.oplog_id == state.version.oplog_id,
            head=v.oplog_id in heads,
            superseded_by=tuple(replay.superseded_by.get(v.oplog_id, ())),
            conflicts_with=tuple(replay.conflicts_with.get(v.oplog_id, ())),
            closes=replay.closes.get(v.oplog_id, ()),
            resolution=None
            if done is None
            else Resolution(
                done.oplog_id, author(done.creator, done.create_time), done.create_time
            ),
        )

    return History(key, tuple(entry(v) for v in kept), len(order) - len(kept), state)


class _Replay:
    """The valid versions replayed in causal order: who was a head beside whom, and what
    closed each conflict (see the module text)."""

    def __init__(self, valid: list[Version]) -> None:
        self.by_id = {v.oplog_id: v for v in valid}
        self.superseded_by: dict[bytes, list[bytes]] = defaultdict(list)
        self.conflicts_with: dict[bytes, list[bytes]] = defaultdict(list)
        self.closes: dict[bytes, tuple[bytes, ...]] = {}
        self._closed_by: dict[bytes, bytes] = {}  # a head closed by a resolving version
        self._handed_to: dict[bytes, bytes] = {}  # a head in conflict superseded alone
        self._final: dict[bytes, bytes | None] = {}
        order = self._causal_order(valid)
        heads: dict[bytes, None] = {}  # insertion-ordered, for a deterministic listing
        for v in order:
            gone = [h for h in supersedes(v) if h in heads]
            for h in gone:
                del heads[h]
            if len(gone) >= 2:
                self.closes[v.oplog_id] = tuple(sorted(gone))
                for h in gone:
                    self._closed_by[h] = v.oplog_id
            elif gone and self.conflicts_with.get(gone[0]):
                self._handed_to[gone[0]] = v.oplog_id
            for h in heads:  # the heads left are in conflict with the new one
                self.conflicts_with[h].append(v.oplog_id)
                self.conflicts_with[v.oplog_id].append(h)
            heads[v.oplog_id] = None
        for v in reversed(order):  # what a hand-on leads to is worked out before the hand-on
            oid = v.oplog_id
            nxt = self._handed_to.get(oid)
            self._final[oid] = self._final.get(nxt) if nxt is not None else self._closed_by.get(oid)

    def _causal_order(self, valid: list[Version]) -> list[Version]:
        """Each version after the held versions it supersedes; otherwise by (create time, ID)."""
        waits: dict[bytes, int] = {}
        for v in sorted(valid, key=lambda v: (v.create_time, v.oplog_id)):  # superseded_by's order
            before = {s for s in supersedes(v) if s in self.by_id}
            waits[v.oplog_id] = len(before)
            for s in sorted(before):
                self.superseded_by[s].append(v.oplog_id)
        ready = [(v.create_time, v.oplog_id) for v in valid if not waits[v.oplog_id]]
        heapq.heapify(ready)
        order: list[Version] = []
        while ready:
            _, oid = heapq.heappop(ready)
            order.append(self.by_id[oid])
            for later in self.superseded_by.get(oid, ()):
                waits[later] -= 1
                if not waits[later]:
                    v = self.by_id[later]
                    heapq.heappush(ready, (v.create_time, v.oplog_id))
        if len(order) < len(valid):  # a cycle: impossible, as an oplog ID hashes its prev_id
            placed = {v.oplog_id for v in order}
            order += sorted(
                (v for v in valid if v.oplog_id not in placed),
                key=lambda v: (v.create_time, v.oplog_id),
            )
        return order

    def resolution(self, oplog_id: bytes) -> Version | None:
        """The version that resolved the conflict `oplog_id` was in, if it was resolved."""
        done = self._final.get(oplog_id)
        return None if done is None else self.by_id[done]
