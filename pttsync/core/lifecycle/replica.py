"""One topic of one store: its governance, and the one path every write takes.

A `Replica` is what HandleOplogs, HandlePendingOplogs, HandleFailedOplogs,
local writes and the document layer share for a topic:

* the governance timeline (`fold`), rebuilt whenever a governance oplog is
  written or removed;
* `assess`, the status an oplog has under that timeline;
* `commit`, the single write path.  It writes a batch in one transaction.
  When the batch changes the governance, it first works out, in memory,
  every oplog whose status the change moves (or which it makes invalid: a
  removed member's later oplogs) and writes those in the same transaction,
  so a crash can never leave the statuses and the governance disagreeing;
* observers (the document layer) told before and after each commit.

No clock: every call that needs the time takes `now`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, Protocol

from ...errors import InvalidOplogError, NotAuthorizedError, UsageError
from ..memo import remember
from ..oplog import Oplog, OplogStatus, create_oplog
from ..store import FailedOplog
from .governance import (
    GOVERNANCE_OPS,
    OP_DEVICE,
    OP_GENESIS,
    OP_ROLE,
    Role,
    device_payload,
    is_governance_op,
    make_genesis,
    role_payload,
)
from .rules import Fold, assess, build_governance, extend_fold

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Mapping, Sequence

    from ..identity import Identity
    from ..store import BatchResult, Store, StoredOplog
    from ..topic import TopicInfo

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Commit:
    """What one commit changed, for observers."""

    stored: list[tuple[Oplog, OplogStatus | None, OplogStatus]] = field(default_factory=list)
    failed: list[tuple[FailedOplog, Oplog]] = field(default_factory=list)
    # For oplogs a peer sent: the hash of the copy it sent, by oplog ID.  It holds
    # that copy, which is not the one stored where this peer co-signed it or
    # unioned the signatures of another copy in.
    received: Mapping[bytes, bytes] = field(default_factory=dict)
    governance: bool = False  # a governance oplog among those stored or failed


class Observer(Protocol):
    def before_commit(self, commit: Commit) -> None: ...

    def after_commit(self, commit: Commit) -> None: ...


class Replica:
    """A topic's lifecycle state over a store.  Not for concurrent use."""

    def __init__(self, store: Store, topic_id: bytes, *, identity: Identity | None = None) -> None:
        self.store = store
        self.topic_id = topic_id
        self.info: TopicInfo = store.topic(topic_id)
        self.identity = identity
        self.observers: list[Observer] = []
        self.fold: Fold = self._build_fold(())

    @property
    def me(self) -> bytes | None:
        return None if self.identity is None else self.identity.peer_id

    # -- status --------------------------------------------------------------------

    def assess(self, oplog: Oplog, *, with_governance: Iterable[Oplog] = ()) -> OplogStatus:
        """The status `oplog` has here (see rules.assess).

        A governance oplog is judged by folding it into the timeline with the
        stored ones (and `with_governance`, those accepted earlier in a batch).

        Raises:
            NotAuthorizedError, MalformedOplogError: it is not acceptable here.
        """
        if not is_governance_op(oplog.op) or oplog.op == OP_GENESIS:
            return self.fold.assess(oplog)  # remembered: the fold is built, never changed
        fold = extend_fold(self.fold, [*with_governance, oplog])
        status = fold.status.get(oplog.oplog_id)
        if status is None:
            raise_refused(fold, oplog)
        return status

    def _build_fold(self, extra: Iterable[Oplog]) -> Fold:
        """The timeline of the stored governance oplogs (and `extra`), read from the store.

        Done once, when the replica opens: after that the fold keeps every
        governance oplog it holds, and commits extend it (lifecycle.extend_fold).
        Replicas opened on stores with the same `range_key` of the governance
        ops share one fold (folds are never changed: a change goes to a copy).
        """
        extra = list(extra)
        key = None if extra else self.store.range_key(self.topic_id, *GOVERNANCE_OPS)
        if key is not None:
            shared = _SHARED_FOLDS.get((self.info, key))
            if shared is not None:
                return shared
        held = {
            s.oplog.oplog_id: s.oplog
            for s in self.store.by_op_range(self.topic_id, *GOVERNANCE_OPS)
        }
        for o in extra:
            held[o.oplog_id] = o
        fold = build_governance(self.info, held.values())
        if key is not None:
            remember(_SHARED_FOLDS, (self.info, key), fold, MAX_SHARED_FOLDS)
        return fold

    # -- the write path ----------------------------------------------------------------

    def commit(
        self,
        puts: Sequence[tuple[Oplog, OplogStatus]] = (),
        failed: Sequence[tuple[FailedOplog, Oplog]] = (),
        *,
        now: int = 0,
        received: Mapping[bytes, bytes] | None = None,
        held: Mapping[bytes, StoredOplog] | None = None,
    ) -> BatchResult:
        """Write a batch (and whatever a governance change in it implies) in one transaction.

        `failed` oplogs are deleted and recorded as failed.  `now` stamps the
        records of oplogs a governance change makes invalid.  `received`, for
        what a peer sent: the hash of each copy as it came (`Commit.received`).
        `held`: what the store holds of the puts' IDs (at least), if the caller read it.
        """
        puts, failed = list(puts), list(failed)
        # The statuses before the commit matter only to observers: no extra read without them.
        ids = [o.oplog_id for o, _ in puts] if self.observers else []
        if held is None:
            held = self.store.existing(self.topic_id, ids)
        old = {k: s.status for k in ids if (s := held.get(k)) is not None}
        fold = self.fold
        touches_governance = any(is_governance_op(o.op) for o, _ in puts) or any(
            is_governance_op(o.op) for _, o in failed
        )
        if touches_governance:
            fold, more_puts, more_failed, more_old = self._regovern(puts, failed, now)
            puts += more_puts
            failed += more_failed
            old.update(more_old)
        commit = Commit(
            [(o, old.get(o.oplog_id), s) for o, s in puts], failed, received or {},
            touches_governance,
        )  # fmt: skip
        for observer in self.observers:
            observer.before_commit(commit)
        result = self.store.write_batch(self.topic_id, puts, failed=[f for f, _ in failed])
        self.fold = fold
        for observer in self.observers:
            observer.after_commit(commit)
        return result

    def _regovern(
        self,
        puts: list[tuple[Oplog, OplogStatus]],
        failed: list[tuple[FailedOplog, Oplog]],
        now: int,
    ) -> tuple[
        Fold,
        list[tuple[Oplog, OplogStatus]],
        list[tuple[FailedOplog, Oplog]],
        dict[bytes, OplogStatus],
    ]:
        """The new timeline, and every stored oplog whose status it changes."""
        gone = {f.oplog_id for f, _ in failed}
        changed = [o for o, _ in puts if is_governance_op(o.op)] + [
            o for _, o in failed if is_governance_op(o.op)
        ]
        fold = extend_fold(self.fold, [o for o, _ in puts if is_governance_op(o.op)], without=gone)
        since = min(o.create_time for o in changed)
        writing = {o.oplog_id for o, _ in puts} | gone
        more_puts: list[tuple[Oplog, OplogStatus]] = []
        more_failed: list[tuple[FailedOplog, Oplog]] = []
        more_old: dict[bytes, OplogStatus] = {}
        for stored in self.store.since(self.topic_id, since):
            o = stored.oplog
            if o.oplog_id in writing:
                continue
            try:
                if is_governance_op(o.op) and o.op != OP_GENESIS:
                    status = fold.status.get(o.oplog_id)
                    if status is None:
                        raise_refused(fold, o)
                else:
                    status = assess(o, fold.governance)
            except InvalidOplogError as exc:
                reason = f"no longer authorised: {exc}"
                more_failed.append((failed_record(o, now, reason), o))
                log.info("oplog %s %s", o.oplog_id.hex()[:16], reason)
                continue
            if status != stored.status:
                more_puts.append((o, status))
                more_old[o.oplog_id] = stored.status
        dropped = [o.oplog_id for _, o in more_failed if is_governance_op(o.op)]
        if dropped:  # the fold holds exactly the stored governance oplogs
            fold = extend_fold(fold, (), without=dropped)
        return fold, more_puts, more_failed, more_old

    # -- local writes ----------------------------------------------------------------------

    def create(
        self,
        *,
        object_id: bytes,
        op: int,
        value: object,
        now: int,
        prev_id: bytes | None = None,
    ) -> tuple[Oplog, OplogStatus]:
        """Make, sign and durably store an oplog by this peer; return it and its status.

        Raises:
            UsageError: no identity, or this peer may not write it (not a
                member, a role change by a non-master...).
        """
        if self.identity is None:
            raise UsageError("this replica has no identity to write with")
        oplog = create_oplog(
            self.identity,
            topic_id=self.topic_id,
            object_id=object_id,
            op=op,
            create_time=now,
            value=value,
            prev_id=prev_id,
        )
        try:
            status = self.assess(oplog)
        except InvalidOplogError as exc:
            raise UsageError(f"this peer cannot write that: {exc.reason}") from None
        self.commit([(oplog, status)], now=now)
        return oplog, status

    # -- governance writes ------------------------------------------------------------------

    def set_role(self, user: bytes, role: Role, *, now: int) -> tuple[Oplog, OplogStatus]:
        """Make `user` a member, a master, or nobody (a master's write; needs the quorum)."""
        return self.create(object_id=user, op=OP_ROLE, value=role_payload(role), now=now)

    def set_device(self, device: bytes, on: bool, *, now: int) -> tuple[Oplog, OplogStatus]:
        """Certify (or withdraw) `device` as one of this user's devices."""
        return self.create(object_id=device, op=OP_DEVICE, value=device_payload(on), now=now)


MAX_SHARED_FOLDS = 4
_SHARED_FOLDS: dict[tuple[TopicInfo, Hashable], Fold] = {}
"""Folds by the store's range key: a simulation's thousand replicas opened on copies
of one template fold it once, not a thousand times (each read and folded every
member's ROLE oplog: 24 ms a replica at 10,000 members)."""


class FoldDraft:
    """A replica's fold plus the governance oplogs a batch has accepted so far.

    HandleOplogs judges each governance oplog of a batch against the ones
    before it.  Oplogs that fold after everything held (the usual case) are
    judged and appended in O(1) each; only an out-of-order one costs a rebuild.
    """

    def __init__(self, fold: Fold) -> None:
        self._fold = fold
        self._private = False  # True once _fold is our own copy
        self._trial: tuple[bytes, Fold] | None = None

    def status(self, oplog: Oplog) -> OplogStatus:
        """The status `oplog` has after the accepted ones.  NotAuthorizedError if refused."""
        fold = self._fold
        if fold.holds(oplog):
            status = fold.status.get(oplog.oplog_id)
        elif fold.can_append(oplog):
            return assess(oplog, fold.governance)
        else:
            trial = extend_fold(fold, [oplog])
            self._trial = (oplog.oplog_id, trial)
            status = trial.status.get(oplog.oplog_id)
            fold = trial
        if status is None:
            raise_refused(fold, oplog)
        return status

    def accept(self, oplog: Oplog) -> None:
        """`oplog` (just judged by `status`) is in the batch: later ones see it."""
        if self._trial is not None and self._trial[0] == oplog.oplog_id:
            self._fold, self._private = self._trial[1], True
        elif not self._fold.holds(oplog):
            if not self._private:
                self._fold, self._private = self._fold.copy(), True
            self._fold.append(oplog)
        self._trial = None


def found_topic(store: Store, creator: Identity, info: TopicInfo) -> Replica:
    """Add a new topic to `store` with its genesis oplog, signed by its creator."""
    store.add_topic(info)
    replica = Replica(store, info.topic_id, identity=creator)
    genesis = make_genesis(creator, info)
    replica.commit([(genesis, replica.assess(genesis))], now=info.create_time)
    return replica


def raise_refused(fold: Fold, oplog: Oplog) -> NoReturn:
    raise NotAuthorizedError(fold.refused.get(oplog.oplog_id, "refused by the governance"))


def failed_record(oplog: Oplog, now: int, reason: str) -> FailedOplog:
    return FailedOplog(
        oplog.oplog_id, oplog.object_id, oplog.op, oplog.creator, oplog.create_time, now, reason
    )
