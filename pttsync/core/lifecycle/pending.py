"""The not-yet-valid half of the lifecycle: what HandlePendingOplogs and
HandleFailedOplogs (handle.py) do with oplogs that wait for co-signatures.

**HandlePendingOplogs** takes oplogs that are waiting for co-signatures
(from postsync's SyncPendingOplog and its ack, or a push) through PIP-11's
steps, in PIP-11's order:

1. expire-time check: an expired oplog is dropped (never signed, never kept);
2. future-time check, init and verify (HandleOplogs' pre-process);
3. previous-log check: the previous log must be here;
4. integrate-existing: a copy we hold and the incoming copy are unioned by
   signer, so no co-signature is ever lost (rules.union_signatures).
   A copy that is valid (here or incoming) goes through select-existing;
5. sign: if this peer is a signer the oplog still needs (a device of the
   creator's user for an internal-pending oplog, a master for a pending
   one) and it has not expired;
6. save, with the status the signatures now give.  An oplog that reaches
   quorum is valid: it enters the tree and spreads by sync and push.

**Routing.**  `pending_for_peer` offers a peer only the oplogs it can sign.

**HandleFailedOplogs** deletes every oplog still not valid after the
topic's expiry window, records it as failed, and lets the observers (the
document layer) roll back its tentative effect and tell the application.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..oplog import Oplog, OplogStatus
from .replica import failed_record
from .rules import expired, select_existing, sign, sign_kind, union_signatures

if TYPE_CHECKING:
    from ..store import StoredOplog
    from .replica import Replica

log = logging.getLogger(__name__)

MAX_PENDING_SCAN = 10_000
"""Not-yet-valid oplogs looked at per call (routing, expiry)."""


def held_copy(stored: StoredOplog | None) -> tuple[Oplog, OplogStatus] | None:
    return None if stored is None else (stored.oplog, stored.status)


def integrate(
    replica: Replica,
    incoming: Oplog,
    held: tuple[Oplog, OplogStatus] | None,
    now: int,
) -> tuple[Oplog, OplogStatus] | None:
    """Integrate-existing, sign and assess one oplog; None if nothing changes.

    Raises:
        NotAuthorizedError, MalformedOplogError: the incoming copy is not acceptable.
    """
    status = replica.assess(incoming)
    if held is not None:
        copy, held_status = held
        if held_status is OplogStatus.VALID:
            if status is OplogStatus.VALID and select_existing(incoming, copy):
                return incoming, status
            return None
        if status is not OplogStatus.VALID:
            incoming = union_signatures(copy, incoming)
            status = replica.assess(incoming)
    incoming, status = sign_if_needed(replica, incoming, status, now)
    if held is not None and held[0].hash == incoming.hash and held[1] is status:
        return None
    return incoming, status


def sign_if_needed(
    replica: Replica, oplog: Oplog, status: OplogStatus, now: int
) -> tuple[Oplog, OplogStatus]:
    """Add this peer's signatures while it is a signer the oplog still needs."""
    identity = replica.identity
    if identity is None:
        return oplog, status
    for _ in range(2):  # a device signature, then perhaps a master one
        kind = sign_kind(oplog, status, replica.fold.governance, identity.peer_id, now)
        if kind is None:
            break
        oplog = sign(oplog, identity, kind, now)
        status = replica.assess(oplog)
        log.debug("signed %s as %s: now %s", oplog.oplog_id.hex()[:16], kind.name, status.name)
    return oplog, status


def not_yet_valid(replica: Replica) -> list[tuple[Oplog, OplogStatus]]:
    """The topic's internal-pending and pending oplogs (at most MAX_PENDING_SCAN)."""
    out: list[tuple[Oplog, OplogStatus]] = []
    for status in (OplogStatus.INTERNAL_PENDING, OplogStatus.PENDING):
        for o in replica.store.oplogs(replica.topic_id, status, limit=MAX_PENDING_SCAN):
            out.append((o, status))
    return out


def pending_for_peer(replica: Replica, peer: bytes, now: int, limit: int) -> list[Oplog]:
    """The not-yet-valid, unexpired oplogs that `peer` could sign (PIP-11's routing)."""
    gov = replica.fold.governance
    out = []
    for oplog, status in not_yet_valid(replica):
        if sign_kind(oplog, status, gov, peer, now) is not None:
            out.append(oplog)
            if len(out) >= limit:
                break
    return out


def handle_failed(replica: Replica, now: int) -> list[Oplog]:
    """HandleFailedOplogs: roll back and delete every expired not-yet-valid oplog."""
    gov = replica.fold.governance
    failed = [
        (failed_record(o, now, f"expired: not valid {gov.expiry // 10**9} s after creation"), o)
        for o, _status in not_yet_valid(replica)
        if expired(o, gov, now)
    ]
    if failed:
        log.info("%d pending oplogs expired and are rolled back", len(failed))
        replica.commit([], failed, now=now)
    return [o for _, o in failed]
