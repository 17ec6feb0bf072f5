"""The oplog lifecycle's rules: which status an oplog has, and who signs it.

Pure functions of an oplog and a governance timeline (governance.py); no
store and no clock (times are passed in).  docs/pip-11/lifecycle.md states
the rules; in short, for an oplog created at t by a key that speaks for user U:

1. U must be a member or a master at t, otherwise the oplog is refused.
2. Every internal (device) signature must be by one of U's devices, and
   every master signature by a device of a master, at the signature's time.
   No signature may be made after t + expiry.  Otherwise it is refused: a
   forged or misplaced co-signature never rides along (go-pttai #200).
3. If U has several devices and fewer than a majority of them signed, the
   oplog is **internal-pending**.
4. Device oplogs are then valid (the user's key is the only authority over
   the user's devices).  Any other oplog is **valid** once a quorum of the
   masters at t have signed (U counts if U is a master), else **pending**.

Governance oplogs are folded in (create time, ID) order by
`build_governance`: each is judged against the timeline made by those
before it, so the timeline is the same on every peer holding the same set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...errors import InvalidOplogError, MalformedOplogError, NotAuthorizedError
from ..docop import decode_doc_op, is_doc_op
from ..memo import remember
from ..oplog import (
    MAX_INTERNAL_SIGS,
    MAX_MASTER_SIGS,
    Oplog,
    OplogStatus,
    Signature,
    SignKind,
    cosign,
    with_signatures,
)
from ..topic import Quorum
from .governance import (
    OP_DEVICE,
    OP_GENESIS,
    OP_ROLE,
    Governance,
    Role,
    check_genesis,
    decode_role,
    is_governance_op,
    quorum_size,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..identity import Identity
    from ..topic import TopicInfo


def assess(oplog: Oplog, gov: Governance) -> OplogStatus:
    """The status `oplog` has under `gov`: internal-pending, pending or valid.

    Raises:
        NotAuthorizedError: the creator or a co-signer has no right to it.
        MalformedOplogError: its op's payload is malformed.
    """
    info, t = gov.info, oplog.create_time
    if oplog.op == OP_GENESIS:
        check_genesis(oplog, info)
        return OplogStatus.VALID
    author = gov.user_of(oplog.creator, t)
    if author is None:
        raise NotAuthorizedError("the creator is not a member of the topic at its create time")
    role = gov.role_at(author, t)
    _check_op(oplog, gov, author, role)
    deadline = t + gov.expiry
    for s in oplog.internal_sigs:
        if s.time > deadline:
            raise NotAuthorizedError("a device signature was made after the oplog expired")
        if gov.user_of(s.signer, s.time) != author:
            raise NotAuthorizedError("a device signature is not by one of the creator's devices")
    masters = gov.masters_at(t)
    signed: set[bytes] = {author} if author in masters else set()
    for s in oplog.master_sigs:
        if s.time > deadline:
            raise NotAuthorizedError("a master signature was made after the oplog expired")
        user = gov.user_of(s.signer, s.time)
        if user is None or gov.role_at(user, s.time) is not Role.MASTER:
            raise NotAuthorizedError("a master signature is not by a master")
        signed.add(user)
    if oplog.op != OP_DEVICE:
        devices = gov.devices_of(author, t)
        if len(devices) > 1:
            by = ({oplog.creator} | {s.signer for s in oplog.internal_sigs}) & devices
            if len(by) < quorum_size(Quorum.MAJORITY, len(devices)):
                return OplogStatus.INTERNAL_PENDING
    if oplog.op == OP_DEVICE:
        return OplogStatus.VALID
    if len(signed & masters) >= quorum_size(gov.quorum, len(masters)):
        return OplogStatus.VALID
    return OplogStatus.PENDING


def _check_op(oplog: Oplog, gov: Governance, author: bytes, role: Role) -> None:
    """The op's own rules: who may write it, and a well-formed payload."""
    reason: str | None = None
    if oplog.op == OP_ROLE:
        if role is not Role.MASTER:
            raise NotAuthorizedError("only a master may give or take roles")
        _user, new_role = decode_role(oplog)
        reason = gov.can_apply_role(oplog)
        if reason is None and new_role is Role.MASTER and _too_many_masters(gov, oplog):
            reason = f"a topic has at most {MAX_MASTER_SIGS} masters"
        masters = gov.masters_at(oplog.create_time)
        if reason is None and new_role is not Role.MASTER and masters == {_user}:
            reason = "a topic keeps at least one master: make another master first"
    elif oplog.op == OP_DEVICE:
        if oplog.creator != author:
            raise NotAuthorizedError("only a user's own key certifies the user's devices")
        reason = gov.can_apply_device(oplog)
    elif is_governance_op(oplog.op):
        raise MalformedOplogError(f"unknown governance op {oplog.op:#x}", field="op")
    elif is_doc_op(oplog.op):
        _check_doc_payload(oplog)
    if reason is not None:
        raise NotAuthorizedError(reason)


_CHECKED_PAYLOADS: dict[bytes, None] = {}
MAX_CHECKED_PAYLOADS = 65536


def _check_doc_payload(oplog: Oplog) -> None:
    """decode_doc_op's checks, once per oplog ID (the ID is a hash of the payload, so an
    ID seen well-formed stays well-formed; the table is bounded, oldest forgotten)."""
    if oplog.oplog_id not in _CHECKED_PAYLOADS:
        decode_doc_op(oplog)
        remember(_CHECKED_PAYLOADS, oplog.oplog_id, None, MAX_CHECKED_PAYLOADS)


def _too_many_masters(gov: Governance, oplog: Oplog) -> bool:
    masters = gov.masters_at(oplog.create_time)
    return oplog.object_id not in masters and len(masters) >= MAX_MASTER_SIGS


# ---------------------------------------------------------------------------
# Folding the governance oplogs into a timeline.


MAX_ASSESSED = 65536
"""Statuses a fold remembers (`Fold.assess`): about 6 MB at most, per governance."""


@dataclass(slots=True)
class Fold:
    """A timeline and the verdict on every governance oplog folded into it.

    `oplogs` holds every governance oplog folded (whatever its verdict), so
    the fold can be rebuilt, or extended, without reading the store.
    """

    governance: Governance
    status: dict[bytes, OplogStatus] = field(default_factory=dict)
    refused: dict[bytes, str] = field(default_factory=dict)
    oplogs: dict[bytes, Oplog] = field(default_factory=dict)
    last: tuple[int, bytes] = (-1, b"")  # the fold-order key of the last oplog folded
    # Made on first use, dropped by `append`: a fold shared by a thousand replicas
    # answers every node's Hello credentials without a scan each (credentials()).
    _index: _FoldIndex | None = field(default=None, compare=False, repr=False)
    # The statuses `assess` gave under this governance, by the oplog copy's hash
    # (see `assess`): dropped by `append`, never copied.
    _assessed: dict[bytes, OplogStatus] | None = field(default=None, compare=False, repr=False)

    def copy(self) -> Fold:
        """An independent copy, to fold more oplogs into."""
        return Fold(
            self.governance.copy(), dict(self.status), dict(self.refused), dict(self.oplogs),
            self.last,
        )  # fmt: skip

    def assess(self, oplog: Oplog) -> OplogStatus:
        """`assess(oplog, self.governance)`, remembered by the copy's hash.

        Only for a built fold, which is never changed again (a change goes to a
        copy: `extend_fold`), so the status of one copy under it never changes;
        and a fold is shared by every replica of a process opened on the same
        governance, so a simulated network judges each copy once, not once a
        peer.  A refusal is not remembered (it raises each time).  At most
        `MAX_ASSESSED` are kept: then they are forgotten and made again.
        """
        memo = self._assessed
        if memo is None:
            memo = self._assessed = {}
        status = memo.get(oplog.hash)
        if status is None:
            status = assess(oplog, self.governance)
            if len(memo) >= MAX_ASSESSED:
                memo.clear()
            memo[oplog.hash] = status
        return status

    def holds(self, oplog: Oplog) -> bool:
        """True if this very copy of `oplog` is already folded in."""
        held = self.oplogs.get(oplog.oplog_id)
        return held is not None and held.hash == oplog.hash

    def can_append(self, oplog: Oplog) -> bool:
        """True if `oplog` is new and folds after every oplog already folded."""
        return oplog.oplog_id not in self.oplogs and (oplog.create_time, oplog.oplog_id) > self.last

    def credentials(self, peer_id: bytes) -> list[Oplog]:
        """The oplogs that show `peer_id` is a member: its own ROLE and DEVICE oplogs
        and every promotion to master (the signers' authority), in fold order."""
        index = self._index
        if index is None:
            index = self._index = _FoldIndex(self.oplogs.values())
        chosen = [*index.by_object.get(peer_id, ()), *index.promotions]
        chosen.sort(key=lambda o: (o.create_time, o.oplog_id))
        return list({o.oplog_id: o for o in chosen}.values())  # its own promotion once

    def append(self, oplog: Oplog) -> OplogStatus | None:
        """Fold one oplog at the end (see `can_append`); its status, None if refused."""
        self._index = self._assessed = None
        self.oplogs[oplog.oplog_id] = oplog
        self.last = (oplog.create_time, oplog.oplog_id)
        try:
            status = assess(oplog, self.governance)
        except InvalidOplogError as exc:
            self.refused[oplog.oplog_id] = str(exc)
            return None
        self.status[oplog.oplog_id] = status
        if status is OplogStatus.VALID and oplog.op in (OP_ROLE, OP_DEVICE):
            self.governance.apply(oplog)
        return status


class _FoldIndex:
    """A fold's role and device oplogs by the peer they are about, and its promotions."""

    __slots__ = ("by_object", "promotions")

    def __init__(self, oplogs: Iterable[Oplog]) -> None:
        self.by_object: dict[bytes, list[Oplog]] = {}
        self.promotions: list[Oplog] = []
        for o in oplogs:
            if o.op == OP_GENESIS:
                continue
            self.by_object.setdefault(o.object_id, []).append(o)
            if o.op == OP_ROLE and _promotes(o):
                self.promotions.append(o)


def _promotes(oplog: Oplog) -> bool:
    try:
        return decode_role(oplog)[1] is Role.MASTER
    except InvalidOplogError:
        return False


def build_governance(info: TopicInfo, oplogs: Iterable[Oplog]) -> Fold:
    """Fold governance oplogs, in (create time, ID) order, into a timeline.

    Each oplog is judged against the timeline of those before it; the valid
    role and device oplogs take effect.  Non-governance oplogs are ignored.
    The fold returned may be shared (below): like every fold, it is never
    changed once built; a change goes to a copy (`extend_fold`, `FoldDraft`).
    """
    unique = {o.oplog_id: o for o in oplogs if is_governance_op(o.op)}
    key = (info, frozenset(o.hash for o in unique.values()))  # a hash covers the ID
    known = _FOLDS.get(key)
    if known is not None:
        return known
    fold = Fold(Governance(info))
    for o in sorted(unique.values(), key=lambda o: (o.create_time, o.oplog_id)):
        fold.append(o)
    if len(unique) >= MIN_REMEMBERED_FOLD:
        remember(_FOLDS, key, fold, MAX_REMEMBERED_FOLDS)
    return fold


# A fold is a pure function of the topic and its set of governance oplogs, so
# the last few big ones are remembered: every replica a process opens on the
# same governance (a node's topics, a simulator's thousand peers) folds it once,
# and shares it until its own governance changes (a copy then).  Each copy cost
# a simulated peer about 215 bytes per member: 21 GB for 10,000 peers.
MIN_REMEMBERED_FOLD = 64
MAX_REMEMBERED_FOLDS = 4
_FOLDS: dict[tuple[TopicInfo, frozenset[bytes]], Fold] = {}


def extend_fold(fold: Fold, oplogs: Iterable[Oplog], *, without: Iterable[bytes] = ()) -> Fold:
    """`fold` with `oplogs` folded in (a later copy replaces a held one) and `without` out.

    `fold` itself is never changed.  When every new oplog folds after the
    ones held (the usual case: news arrive in time order) they are appended
    to a copy; otherwise the timeline is rebuilt from all of them.  Either
    way the result is what `build_governance` gives for the same set.
    """
    gone = set(without) & fold.oplogs.keys()
    new = sorted(
        {o.oplog_id: o for o in oplogs if is_governance_op(o.op) and not fold.holds(o)}.values(),
        key=lambda o: (o.create_time, o.oplog_id),
    )
    if not new and not gone:
        return fold
    if not gone and all(fold.can_append(o) for o in new[:1]):
        out = fold.copy()
        for o in new:
            out.append(o)
        return out
    held = {k: o for k, o in fold.oplogs.items() if k not in gone}
    held.update((o.oplog_id, o) for o in new)
    return build_governance(fold.governance.info, held.values())


# ---------------------------------------------------------------------------
# Co-signing.


def select_existing(incoming: Oplog, stored: Oplog) -> bool:
    """True if `incoming` should replace `stored` (both valid copies of one oplog).

    The earlier update time wins, then the smaller hash: every peer picks the
    same copy whatever order the copies arrive in.
    """
    return (incoming.update_time, incoming.hash) < (stored.update_time, stored.hash)


def expired(oplog: Oplog, gov: Governance, now: int) -> bool:
    """True once `now` is past the oplog's expiry (create time + the topic's expiry)."""
    return now > oplog.create_time + gov.expiry


def sign_kind(
    oplog: Oplog, status: OplogStatus, gov: Governance, me: bytes, now: int
) -> SignKind | None:
    """The signature peer `me` should add to a not-yet-valid oplog, if any.

    A device of the creator's user signs an internal-pending oplog; a
    device of a master (one whose signature counts: a master at the
    oplog's create time) signs a pending one.  Nobody signs an expired
    oplog, and nobody signs twice for one user.
    """
    t = oplog.create_time
    if expired(oplog, gov, now):
        return None
    when = max(now, t)
    author = gov.user_of(oplog.creator, t)
    if author is None:
        return None
    if status is OplogStatus.INTERNAL_PENDING:
        signed = {oplog.creator, *(s.signer for s in oplog.internal_sigs)}
        if me not in signed and gov.user_of(me, when) == author and me in gov.devices_of(author, t):
            return SignKind.INTERNAL
        return None
    if status is OplogStatus.PENDING:
        user = gov.user_of(me, when)
        if (
            user is None
            or user not in gov.masters_at(t)
            or gov.role_at(user, when) is not Role.MASTER
        ):
            return None
        signed_users = {author, *(gov.user_of(s.signer, s.time) for s in oplog.master_sigs)}
        return None if user in signed_users else SignKind.MASTER
    return None


def masters_to_sign(oplog: Oplog, gov: Governance) -> frozenset[bytes]:
    """The masters whose signatures count for `oplog` (masters at its create time) and
    who have not signed it; an author who is one counts as signed."""
    t = oplog.create_time
    signed = {gov.user_of(s.signer, s.time) for s in oplog.master_sigs}
    return gov.masters_at(t) - signed - {gov.user_of(oplog.creator, t)}


def master_signed(oplog: Oplog, gov: Governance) -> bool:
    """Whether a master whose signature counts has signed `oplog` (an author who is a
    master counts): the nearest master may then be one with nothing left to sign."""
    return len(masters_to_sign(oplog, gov)) < len(gov.masters_at(oplog.create_time))


def sign(oplog: Oplog, identity: Identity, kind: SignKind, now: int) -> Oplog:
    """Add `identity`'s co-signature of `kind`, made at `now` (never before the create time)."""
    return cosign(oplog, identity, kind, max(now, oplog.create_time))


def union_signatures(a: Oplog, b: Oplog) -> Oplog:
    """Integrate-existing: one copy with the co-signatures of both, by signer.

    Both copies must be verified copies of one oplog.  Where both hold a
    signature by the same signer, the smaller (time, signature) is kept, so
    the union is the same whichever copy is `a`.  No signature is lost
    unless a list would pass its limit (then the smallest signers are kept).
    """
    master = _merge(a.master_sigs, b.master_sigs, MAX_MASTER_SIGS)
    internal = _merge(a.internal_sigs, b.internal_sigs, MAX_INTERNAL_SIGS)
    if master == a.master_sigs and internal == a.internal_sigs:
        return a
    if master == b.master_sigs and internal == b.internal_sigs:
        return b
    return with_signatures(a, master_sigs=master, internal_sigs=internal)


def _merge(a: tuple[Signature, ...], b: tuple[Signature, ...], limit: int) -> tuple[Signature, ...]:
    best: dict[bytes, Signature] = {}
    for s in (*a, *b):
        held = best.get(s.signer)
        if held is None or (s.time, s.sig) < (held.time, held.sig):
            best[s.signer] = s
    return tuple(best[k] for k in sorted(best)[:limit])
