"""A batch's bookkeeping, shared by both stores: what it adds, replaces, keeps and deletes.

`plan_batch` is a pure function of the batch and of what the store held
before it.  It decides which puts are written (a put identical to the
stored copy is not), which deletes find something, which Merkle leaves
come and go, and the `BatchResult` the caller gets.  Each store then
carries the plan out in its own way, all or nothing: SQLite in one
transaction, the memory store in its dicts (the plan is made before
anything changes, so a refused batch changes nothing there either).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import UsageError
from ..memo import remember
from ..merkle import Leaf
from ..oplog import Oplog, OplogStatus
from .protocol import BatchResult

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["BatchPlan", "Held", "leaf_of", "plan_batch"]

Held = tuple[int, int, bytes]
"""What the plan needs of a stored copy: (status, update time, hash)."""

_VALID = OplogStatus.VALID

SHARED_LEAVES = 1 << 16
"""Leaves the stores of a process share (by hash, newest kept): a simulation's peers
hold the same ones (56 bytes an oplog a peer), and make none of their own."""
_LEAVES: dict[bytes, Leaf] = {}


def leaf_of(oplog: Oplog) -> Leaf:
    """The leaf of a valid oplog: the process's one object for it (a record's hash
    covers its ID and update time)."""
    return _LEAVES.get(oplog.hash) or remember(
        _LEAVES, oplog.hash, Leaf(oplog.update_time, oplog.oplog_id, oplog.hash), SHARED_LEAVES
    )


@dataclass(slots=True)
class BatchPlan:
    """What a store does for one batch, in this order: write, delete, update the tree."""

    result: BatchResult = field(default_factory=BatchResult)
    writes: list[tuple[Oplog, OplogStatus]] = field(default_factory=list)
    """Puts to store, in order (a later put of one ID replaces an earlier one)."""
    deletes: list[bytes] = field(default_factory=list)
    """IDs to delete, each held before the delete (stored, or written by this batch)."""
    add_leaves: list[Leaf] = field(default_factory=list)
    remove_leaves: list[Leaf] = field(default_factory=list)


def plan_batch(
    topic_id: bytes,
    puts: Iterable[tuple[Oplog, OplogStatus]],
    deletes: Iterable[bytes],
    held: Mapping[bytes, Held],
) -> BatchPlan:
    """Plan a batch of `puts` then `deletes` over what the store `held` before it.

    `held` has an entry for every stored ID among the puts and deletes (more
    does no harm); it is not changed.

    Raises:
        UsageError: an oplog belongs to another topic (nothing is planned).
    """
    plan = BatchPlan()
    result = plan.result
    added_ids, replaced, unchanged = result.added, result.replaced, result.unchanged
    writes, remove_leaves = plan.writes, plan.remove_leaves
    state = dict(held)
    added: dict[bytes, Leaf] = {}  # leaves to add, by oplog ID
    new_here: set[bytes] = set()  # IDs this batch adds (not replaces)
    for oplog, given in puts:
        if oplog.topic_id != topic_id:
            raise UsageError(
                f"oplog {oplog.oplog_id.hex()} belongs to topic {oplog.topic_id.hex()}"
            )
        status = given if type(given) is OplogStatus else OplogStatus(given)
        oid = oplog.oplog_id
        old = state.get(oid)
        if old is not None:
            if old[0] == status and old[2] == oplog.hash:
                if oid not in new_here:
                    unchanged.append(oid)
                continue
            if old[0] == _VALID and added.pop(oid, None) is None:
                remove_leaves.append(Leaf(old[1], oid, old[2]))
            if oid not in new_here:
                replaced.append(oid)
        else:
            new_here.add(oid)
            added_ids.append(oid)
        state[oid] = (status, oplog.update_time, oplog.hash)
        writes.append((oplog, status))
        if status is _VALID:
            added[oid] = leaf_of(oplog)
    for oid in deletes:
        old = state.pop(oid, None)
        if old is not None:
            if old[0] == _VALID and added.pop(oid, None) is None:
                remove_leaves.append(Leaf(old[1], oid, old[2]))
            result.deleted.append(oid)
            plan.deletes.append(oid)
    plan.add_leaves = list(added.values())
    return plan
