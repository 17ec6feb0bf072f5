"""HandleOplogs: PIP-11's three stages for valid oplogs arriving from a peer.

1. **Pre-process**, per oplog: decode and verify (structure, ID, hash and
   every signature), the topic check, the future-timestamp check with a
   clock-skew tolerance, and the previous-log check.
2. **Process**: select-existing against the stored copy, then save every
   accepted oplog of the batch in one store transaction.
3. **Post-process**: the replica's observers see the commit; the node's
   push path is one of them (it also sees local writes and rollbacks).

Unlike go-pttai (reference §5.2), one bad oplog never sinks its batch: it is
rejected on its own, reported in the result (the session counts it against
the peer that sent it), and the valid ones are kept.  An oplog whose
previous log is not here yet is not an error either, valid or pending: it
waits in a bounded buffer (waiting.py) and is handled again as soon as its
previous log is stored, in this batch or a later one.

Validity comes from the topic's governance (rules.py): an oplog that
arrives here as valid must be valid under our timeline too, or it is
refused on its own (the sender may know a governance change we do not yet;
sync offers it again later).  Governance oplogs of a batch are handled
before the rest, so that a member added in a batch can write in it.
Not-yet-valid oplogs take the other path, HandlePendingOplogs (its
helpers are pending.py's); expired ones are rolled back by HandleFailedOplogs.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import InvalidOplogError, TimestampError
from ..oplog import Oplog, OplogStatus
from ..oplogcodec import decode_oplog
from ..timeutil import NS_PER_SECOND
from .governance import OP_GENESIS, is_governance_op
from .pending import handle_failed, held_copy, integrate
from .replica import FoldDraft, Replica
from .rules import expired, select_existing
from .waiting import LIMIT, Waiting

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from ..store import Store, StoredOplog

log = logging.getLogger(__name__)

DEFAULT_CLOCK_SKEW = 300 * NS_PER_SECOND
"""How far in the future (by our clock) an oplog's update time may be."""

MAX_WAITING = 2 * LIMIT
"""Oplogs a handler holds waiting for their previous log: a buffer of valid ones and
one of pending ones (waiting.py), each bounded."""


class ForeignTopicError(InvalidOplogError):
    """An oplog of another topic arrived in this topic's sync (the whole message is refused)."""


@dataclass(slots=True)
class HandleResult:
    """What one call of a PIP-11 step (HandleOplogs and its two siblings) did."""

    added: list[Oplog] = field(default_factory=list)  # new here, now stored
    replaced: list[Oplog] = field(default_factory=list)  # won select-existing over our copy
    unchanged: int = 0  # identical to, or lost to, the copy we hold
    waiting: int = 0  # held until their previous log arrives
    rejected: list[str] = field(default_factory=list)  # one reason per rejected oplog
    improved: list[Oplog] = field(default_factory=list)  # stored copies better than the sent ones
    failed: list[Oplog] = field(default_factory=list)  # rolled back by HandleFailedOplogs

    @property
    def stored(self) -> list[Oplog]:
        return self.added + self.replaced


class OplogHandler:
    """PIP-11's three steps for one topic of one store, under PIP-11's names.

    Each takes what arrived (if anything) and the current time, and returns a
    `HandleResult`: `handle_oplogs` (HandleOplogs, for valid oplogs),
    `handle_pending_oplogs` (HandlePendingOplogs, for oplogs awaiting
    co-signatures) and `handle_failed_oplogs` (HandleFailedOplogs, for
    expired ones).  Whoever pushes new oplogs observes the replica's commits
    (Replica.observers), which also see local writes and rollbacks.
    """

    def __init__(
        self,
        store: Store,
        topic_id: bytes,
        *,
        clock_skew: int = DEFAULT_CLOCK_SKEW,
        replica: Replica | None = None,
    ) -> None:
        self.store = store
        self.topic_id = topic_id
        self.replica = replica if replica is not None else Replica(store, topic_id)
        self.clock_skew = clock_skew
        # Oplogs waiting for their previous log (waiting.py): valid ones, pending ones.
        self._waiting = Waiting()
        self._waiting_pending = Waiting()

    @property
    def waiting(self) -> int:
        return len(self._waiting) + len(self._waiting_pending)

    def decode(self, raw: Iterable[bytes], now: int) -> tuple[list[Oplog], list[str]]:
        """Pre-process: decode, verify, topic and future checks.

        Returns the good oplogs and one reason per rejected record.

        Raises:
            ForeignTopicError: a record belongs to another topic; nothing of
                the batch may be stored.
        """
        good: list[Oplog] = []
        rejected: list[str] = []
        limit = now + self.clock_skew
        for data in raw:
            try:
                oplog = decode_oplog(data)
                if oplog.topic_id != self.topic_id:
                    raise ForeignTopicError(
                        f"oplog {oplog.oplog_id.hex()[:16]} belongs to topic"
                        f" {oplog.topic_id.hex()[:16]}, not {self.topic_id.hex()[:16]}"
                    )
                if oplog.update_time > limit:
                    raise TimestampError(
                        f"update time is {(oplog.update_time - now) / NS_PER_SECOND:.0f} s"
                        " in the future, beyond the clock-skew tolerance",
                        field="ut",
                    )
            except ForeignTopicError:
                raise
            except InvalidOplogError as exc:
                rejected.append(str(exc))
                continue
            good.append(oplog)
        return good, rejected

    def handle_oplogs(self, raw: Sequence[bytes], now: int) -> HandleResult:
        """HandleOplogs on encoded records from a peer.

        Raises:
            ForeignTopicError: see `decode`; nothing was stored.
        """
        good, rejected = self.decode(raw, now)
        result = self.handle_decoded(good, now)
        result.rejected = rejected + result.rejected
        return result

    handle = handle_oplogs  # the name in the public API before the steps took PIP-11's names

    def handle_decoded(self, oplogs: Sequence[Oplog], now: int = 0) -> HandleResult:
        """Process and post-process oplogs that passed pre-processing (governance ones first)."""
        result = HandleResult()
        # Governance in fold order: each may depend on an earlier one of the batch.
        governance = [o for o in oplogs if is_governance_op(o.op)]
        rest: Sequence[Oplog] = oplogs  # nearly always: no governance, nothing to split
        if governance:
            governance.sort(key=lambda o: (o.create_time, o.oplog_id))
            self._process(governance, result, now)
            rest = [o for o in oplogs if not is_governance_op(o.op)]
        if rest:
            self._process(rest, result, now)
        self._release(result.stored, now)  # pending oplogs that waited for these
        if self._waiting:
            result.waiting = sum(1 for oid in {o.oplog_id for o in oplogs} if oid in self._waiting)
        return result

    def handle_pending_oplogs(self, raw: Sequence[bytes], now: int) -> HandleResult:
        """HandlePendingOplogs on encoded records from a peer (pending.py has the steps).

        Raises:
            ForeignTopicError: a record belongs to another topic; nothing was stored.
        """
        good, rejected = self.decode(raw, now)
        result = HandleResult(rejected=rejected)
        self._integrate(good, result, now)
        self._release(result.stored, now)
        return result

    def _integrate(
        self, oplogs: Sequence[Oplog], result: HandleResult, now: int, *, from_peer: bool = True
    ) -> None:
        """Integrate pending oplogs; one whose previous log is missing waits for it."""
        replica = self.replica
        gov = replica.fold.governance
        fresh = [o for o in oplogs if not expired(o, gov, now)]
        result.unchanged += len(oplogs) - len(fresh)
        ids = {o.oplog_id for o in fresh} | {o.prev_id for o in fresh if o.prev_id}
        known = replica.store.existing(replica.topic_id, ids)
        batch: dict[bytes, tuple[Oplog, OplogStatus]] = {}
        sent: dict[bytes, bytes] = {}  # the hash of the copy the peer sent, by ID
        for oplog in fresh:
            if (
                oplog.prev_id is not None
                and oplog.prev_id not in known
                and oplog.prev_id not in batch
            ):
                self._waiting_pending.add(oplog)
                result.waiting += 1
                continue
            copy = self._waiting_pending.take(oplog)
            held = batch.get(copy.oplog_id) or held_copy(known.get(copy.oplog_id))
            try:
                outcome = integrate(replica, copy, held, now)
            except InvalidOplogError as exc:
                result.rejected.append(f"oplog {copy.oplog_id.hex()[:16]}: {exc}")
                continue
            if outcome is None:
                result.unchanged += 1
                if held is not None and copy.oplog_id not in batch and held[0].hash != oplog.hash:
                    result.improved.append(held[0])  # ours has all its signatures, and more
            else:
                batch[copy.oplog_id] = outcome
                sent[copy.oplog_id] = oplog.hash
        if batch:
            replica.commit(list(batch.values()), now=now, received=sent if from_peer else None)
        result.added += [o for o, _ in batch.values() if o.oplog_id not in known]
        result.replaced += [o for o, _ in batch.values() if o.oplog_id in known]
        result.improved += [o for o, _ in batch.values() if o.hash != sent[o.oplog_id]]

    def _release(self, stored: Iterable[Oplog], now: int) -> None:
        """Handle what waited for the oplogs just stored, and what waited for those, in
        turn.  What it stores is not the caller's peer's doing: not in its result."""
        ids = [o.oplog_id for o in stored]
        while ids and self.waiting:
            valid: list[Oplog] = []
            pending: list[Oplog] = []
            for oid in ids:
                valid += self._waiting.release(oid)
                pending += self._waiting_pending.release(oid)
            done = HandleResult()
            if pending:
                self._integrate(pending, done, now, from_peer=False)
            if valid:
                self._process(valid, done, now, from_peer=False)
            ids = [o.oplog_id for o in done.stored]

    def handle_failed_oplogs(self, now: int) -> HandleResult:
        """HandleFailedOplogs: roll back and delete every expired not-yet-valid oplog.

        The result's `failed` lists the oplogs rolled back.
        """
        return HandleResult(failed=handle_failed(self.replica, now))

    def _process(
        self, oplogs: Sequence[Oplog], result: HandleResult, now: int, *, from_peer: bool = True
    ) -> None:
        """HandleOplogs' steps on decoded oplogs.  `from_peer`: they are what the caller's
        peer sent now (`Commit.received`), not waiters released by an earlier arrival."""
        wanted = {o.oplog_id for o in oplogs} | {o.prev_id for o in oplogs if o.prev_id}
        known = self.store.existing(self.topic_id, wanted)
        batch: dict[bytes, Oplog] = {}  # the copy to save, by ID
        draft = FoldDraft(self.replica.fold)  # the governance with the batch's accepted so far
        queue = deque(oplogs)
        while queue:
            oplog = queue.popleft()
            oid, prev = oplog.oplog_id, oplog.prev_id
            if prev is not None and prev not in batch and prev not in known:
                self._waiting.add(oplog)
                continue
            if oid not in wanted:
                # A waiter released from an earlier batch: its stored copy (saved
                # meanwhile by another handler or a local write) was not looked up.
                wanted.add(oid)
                known.update(self.store.existing(self.topic_id, [oid]))
            # A copy held from an earlier batch leaves the buffer; the better one goes on.
            oplog = self._waiting.take(oplog)
            held = known.get(oid)
            if (
                held is not None
                and oid not in batch
                and held.status is OplogStatus.VALID
                and held.oplog.hash == oplog.hash
            ):
                result.unchanged += 1  # the very copy we hold: nothing to judge
                queue.extend(self._waiting.release(oid))
                continue
            if self._valid_here(oplog, draft, result):
                self._select(oplog, known.get(oid), batch, result)
                if batch.get(oid) is oplog and _judged_by_fold(oplog):
                    draft.accept(oplog)
            queue.extend(self._waiting.release(oid))
        if batch:
            # What came now, stored as it came (not waiters released on the way).
            came = (
                {o.oplog_id: o.hash for o in oplogs if batch.get(o.oplog_id) is o}
                if from_peer
                else None
            )
            self.replica.commit(
                [(o, OplogStatus.VALID) for o in batch.values()], now=now, received=came,
                held=known,
            )  # fmt: skip
        result.added += [o for o in batch.values() if o.oplog_id not in known]
        result.replaced += [o for o in batch.values() if o.oplog_id in known]

    def _valid_here(self, oplog: Oplog, draft: FoldDraft, result: HandleResult) -> bool:
        """True if the governance makes `oplog` valid here; else record why not."""
        try:
            judge = draft.status if _judged_by_fold(oplog) else self.replica.assess
            status = judge(oplog)
        except InvalidOplogError as exc:
            result.rejected.append(f"oplog {oplog.oplog_id.hex()[:16]}: {exc}")
            return False
        if status is not OplogStatus.VALID:
            result.rejected.append(
                f"oplog {oplog.oplog_id.hex()[:16]} is not valid here: it is"
                f" {status.name.lower().replace('_', '-')} (co-signatures missing)"
            )
            return False
        return True

    def _select(
        self,
        oplog: Oplog,
        held: StoredOplog | None,
        batch: dict[bytes, Oplog],
        result: HandleResult,
    ) -> None:
        """Select-existing: decide whether `oplog` is the copy to keep."""
        oid = oplog.oplog_id
        if oid in batch:
            current, valid = batch[oid], True
        elif held is not None:
            current, valid = held.oplog, held.status == OplogStatus.VALID
        else:
            batch[oid] = oplog
            return
        if valid and current.hash == oplog.hash:
            result.unchanged += 1
        elif not valid or select_existing(oplog, current):
            batch[oid] = oplog
        else:
            result.unchanged += 1


def _judged_by_fold(oplog: Oplog) -> bool:
    """Role and device oplogs are judged by folding them into the timeline."""
    return is_governance_op(oplog.op) and oplog.op != OP_GENESIS
