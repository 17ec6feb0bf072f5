"""The oplog lifecycle (docs/pip-11/lifecycle.md) across several peers.

Every peer is its own in-memory store; oplogs travel between them as encoded
records through HandleOplogs, HandlePendingOplogs or a whole `sync_local`.
All times are explicit nanosecond integers.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import sqlite3
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest

from pttsync.core.docop import OP_DELETE, OP_PUT, delete_payload, put_payload
from pttsync.core.documents.docstore import DocumentStore
from pttsync.core.lifecycle.governance import (
    GOVERNANCE_OPS,
    OP_DEVICE,
    OP_ROLE,
    Role,
    device_payload,
    make_genesis,
    role_payload,
)
from pttsync.core.lifecycle.handle import OplogHandler
from pttsync.core.lifecycle.pending import handle_failed, pending_for_peer
from pttsync.core.lifecycle.replica import Commit, Replica, found_topic
from pttsync.core.lifecycle.rules import (
    Fold,
    build_governance,
    extend_fold,
    master_signed,
    masters_to_sign,
    sign_kind,
)
from pttsync.core.oplog import (
    Oplog,
    OplogStatus,
    Signature,
    SignKind,
    cosign,
    create_oplog,
    verify_oplog,
    with_signatures,
)
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store.database import SCHEMA_VERSION
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import DEFAULT_EXPIRY, Quorum, TopicInfo, new_topic
from pttsync.errors import NotAuthorizedError, SignatureError, UsageError
from pttsync.localsync import sync_local

from .adversary.corpus import whole_bodies
from .helpers import make_identity

if TYPE_CHECKING:
    from pathlib import Path

    from pttsync.core.identity import Identity

T0 = parse_iso("2026-01-05T09:00Z")
S = 10**9
M1, M2, M3 = make_identity("lc-m1"), make_identity("lc-m2"), make_identity("lc-m3")
ALICE, PHONE = make_identity("lc-alice"), make_identity("lc-alice-phone")
EVE, STRANGER = make_identity("lc-eve"), make_identity("lc-stranger")
BY_ID = {i.peer_id: i for i in (M1, M2, M3, ALICE, PHONE, EVE, STRANGER)}


# -- helpers -----------------------------------------------------------------------------


def topic(quorum: Quorum = Quorum.MAJORITY) -> TopicInfo:
    return new_topic(M1, name="lifecycle", create_time=T0, nonce=b"L" * 16, quorum=quorum)


def found(info: TopicInfo) -> Replica:
    """The founder M1's peer: its own store, the genesis oplog, M1's identity."""
    return found_topic(Store.memory(), M1, info)


def write(
    who: Identity,
    info: TopicInfo,
    t: int,
    key: str = "k",
    value: object = "v",
    *,
    op: int = OP_PUT,
    prev: bytes | None = None,
) -> Oplog:
    payload = put_payload(value) if op == OP_PUT else delete_payload()
    return create_oplog(
        who,
        topic_id=info.topic_id,
        object_id=key.encode(),
        op=op,
        value=payload,
        create_time=t,
        prev_id=prev,
    )


def role_oplog(author: Identity, info: TopicInfo, user: Identity, role: Role, t: int) -> Oplog:
    return create_oplog(
        author,
        topic_id=info.topic_id,
        object_id=user.peer_id,
        op=OP_ROLE,
        value=role_payload(role),
        create_time=t,
    )


def device_oplog(user: Identity, info: TopicInfo, device: Identity, on: bool, t: int) -> Oplog:
    return create_oplog(
        user,
        topic_id=info.topic_id,
        object_id=device.peer_id,
        op=OP_DEVICE,
        value=device_payload(on),
        create_time=t,
    )


def masters_sign(o: Oplog, masters: list[Identity], t: int) -> Oplog:
    for m in masters:
        o = cosign(o, m, SignKind.MASTER, t)
    return o


def grant(r: Replica, user: Identity, role: Role, t: int, author: Identity = M1) -> Oplog:
    """A ROLE oplog by `author`, co-signed by every other master at `t`, stored valid."""
    o = role_oplog(author, r.info, user, role, t)
    others = sorted(r.fold.governance.masters_at(t) - {author.peer_id})
    o = masters_sign(o, [BY_ID[m] for m in others], t)
    assert r.assess(o) is OplogStatus.VALID
    r.commit([(o, OplogStatus.VALID)], now=t)
    return o


def enc(*oplogs: Oplog) -> list[bytes]:
    return [encode_oplog(o) for o in oplogs]


def handler(r: Replica) -> OplogHandler:
    return OplogHandler(r.store, r.topic_id, replica=r)


def valid(r: Replica) -> list[Oplog]:
    return r.store.oplogs(r.topic_id, OplogStatus.VALID, limit=1 << 20)


def replicate(src: Replica, dst: Replica, now: int) -> None:
    """Every valid oplog of `src` into `dst`, through HandleOplogs."""
    result = handler(dst).handle(enc(*valid(src)), now)
    assert result.rejected == []


def peer(info: TopicInfo, identity: Identity | None, source: Replica | None, now: int) -> Replica:
    """Another peer: a fresh store holding the topic, and what `source` holds that is valid."""
    store = Store.memory()
    store.add_topic(info)
    r = Replica(store, info.topic_id, identity=identity)
    if source is not None:
        replicate(source, r, now)
    return r


def status(r: Replica, o: Oplog) -> OplogStatus | None:
    stored = r.store.get(r.topic_id, o.oplog_id)
    return None if stored is None else stored.status


def held(r: Replica, o: Oplog) -> Oplog:
    stored = r.store.get(r.topic_id, o.oplog_id)
    assert stored is not None
    return stored.oplog


def digest(r: Replica) -> bytes:
    return r.store.tree(r.topic_id).digest()


def signers(sigs: tuple[Signature, ...]) -> set[bytes]:
    return {s.signer for s in sigs}


def three_masters(quorum: Quorum) -> tuple[TopicInfo, Replica]:
    """Masters M1 (the founder), M2 (from T0 + 1), M3 (T0 + 2); members ALICE, EVE (T0 + 3)."""
    info = topic(quorum)
    r = found(info)
    grant(r, M2, Role.MASTER, T0 + 1)
    grant(r, M3, Role.MASTER, T0 + 2)
    grant(r, ALICE, Role.MEMBER, T0 + 3)
    grant(r, EVE, Role.MEMBER, T0 + 3)
    return info, r


# -- 1. transitions ------------------------------------------------------------------------


def test_one_master_own_write_is_valid_and_a_member_write_waits_for_its_signature() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    own, st = master.create(object_id=b"m", op=OP_PUT, value=put_payload(1), now=T0 + 2)
    assert st is OplogStatus.VALID and status(master, own) is OplogStatus.VALID
    assert own in valid(master)

    alice = peer(info, ALICE, master, T0 + 3)
    o, st = alice.create(object_id=b"a", op=OP_PUT, value=put_payload(2), now=T0 + 10)
    assert st is OplogStatus.PENDING
    assert status(alice, o) is OplogStatus.PENDING
    assert o not in valid(alice)  # not-yet-valid oplogs stay out of the tree
    assert digest(alice) == digest(master)
    assert master.assess(o) is OplogStatus.PENDING

    signed = cosign(o, M1, SignKind.MASTER, T0 + 11)
    assert master.assess(signed) is OplogStatus.VALID
    assert alice.assess(signed) is OplogStatus.VALID
    result = handler(alice).handle_pending_oplogs(enc(signed), T0 + 12)
    assert [x.oplog_id for x in result.replaced] == [o.oplog_id]
    assert status(alice, o) is OplogStatus.VALID
    assert held(alice, o).hash == signed.hash
    assert signed in valid(alice)


def test_majority_of_three_masters() -> None:
    info, r = three_masters(Quorum.MAJORITY)
    assert r.fold.governance.masters_at(T0 + 10) == {M1.peer_id, M2.peer_id, M3.peer_id}
    # A master's own write: the creator-master counts as one of three.
    own = write(M1, info, T0 + 10, "own")
    assert r.assess(own) is OplogStatus.PENDING
    assert r.assess(cosign(own, M2, SignKind.MASTER, T0 + 11)) is OplogStatus.VALID
    assert r.assess(cosign(own, M3, SignKind.MASTER, T0 + 11)) is OplogStatus.VALID
    # A member's write needs two of the three, any two.
    m = write(ALICE, info, T0 + 10, "member")
    assert r.assess(m) is OplogStatus.PENDING
    for one in (M1, M2, M3):
        assert r.assess(masters_sign(m, [one], T0 + 11)) is OplogStatus.PENDING
    for two in itertools.combinations((M1, M2, M3), 2):
        assert r.assess(masters_sign(m, list(two), T0 + 11)) is OplogStatus.VALID


def test_all_of_three_masters() -> None:
    info, r = three_masters(Quorum.ALL)
    own = write(M1, info, T0 + 10, "own")
    assert r.assess(own) is OplogStatus.PENDING
    for other in (M2, M3):
        assert r.assess(masters_sign(own, [other], T0 + 11)) is OplogStatus.PENDING
    assert r.assess(masters_sign(own, [M2, M3], T0 + 11)) is OplogStatus.VALID
    m = write(ALICE, info, T0 + 10, "member")
    for two in itertools.combinations((M1, M2, M3), 2):
        assert r.assess(masters_sign(m, list(two), T0 + 11)) is OplogStatus.PENDING
    assert r.assess(masters_sign(m, [M1, M2, M3], T0 + 11)) is OplogStatus.VALID


def test_two_devices_internal_pending_then_pending_then_valid() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    grant(master, EVE, Role.MEMBER, T0 + 1)
    alice = peer(info, ALICE, master, T0 + 2)
    cert, st = alice.set_device(PHONE.peer_id, True, now=T0 + 2)
    assert st is OplogStatus.VALID  # the user's own key is the certificate
    assert cert.creator == ALICE.peer_id
    replicate(alice, master, T0 + 3)
    phone = peer(info, PHONE, master, T0 + 3)
    for r in (master, alice, phone):
        gov = r.fold.governance
        assert gov.user_of(PHONE.peer_id, T0 + 3) == ALICE.peer_id
        assert gov.devices_of(ALICE.peer_id, T0 + 3) == {ALICE.peer_id, PHONE.peer_id}
        assert gov.user_of(PHONE.peer_id, T0 + 1) is None  # not before its certificate

    o, st = phone.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=T0 + 5)
    assert st is OplogStatus.INTERNAL_PENDING  # 1 of 2 devices
    # The master's signature does not lift internal-pending, and the master is not asked.
    assert master.assess(cosign(o, M1, SignKind.MASTER, T0 + 6)) is (OplogStatus.INTERNAL_PENDING)
    assert pending_for_peer(phone, M1.peer_id, T0 + 6, 10) == []
    assert pending_for_peer(phone, ALICE.peer_id, T0 + 6, 10) == [o]

    # Alice's user key signs (INTERNAL) on receipt: now pending.
    handler(alice).handle_pending_oplogs(enc(o), T0 + 6)
    assert status(alice, o) is OplogStatus.PENDING
    mid = held(alice, o)
    assert signers(mid.internal_sigs) == {ALICE.peer_id} and mid.master_sigs == ()
    assert pending_for_peer(alice, M1.peer_id, T0 + 7, 10) == [mid]
    # The master signs on receipt: valid.
    handler(master).handle_pending_oplogs(enc(mid), T0 + 7)
    assert status(master, o) is OplogStatus.VALID
    done = held(master, o)
    assert signers(done.master_sigs) == {M1.peer_id}
    assert signers(done.internal_sigs) == {ALICE.peer_id}

    # The user key's own write also needs the other device now.
    assert alice.assess(write(ALICE, info, T0 + 5, "x")) is OplogStatus.INTERNAL_PENDING
    # A single-device user skips internal-pending.
    assert master.assess(write(EVE, info, T0 + 5, "e")) is OplogStatus.PENDING
    # Before the phone's certificate, Alice too had one device.
    assert master.assess(write(ALICE, info, T0 + 1, "early")) is OplogStatus.PENDING


def test_a_master_added_after_the_create_time_may_sign_but_does_not_count() -> None:
    info = topic()
    r = found(info)
    grant(r, M2, Role.MASTER, T0 + 1)
    grant(r, ALICE, Role.MEMBER, T0 + 2)
    o = write(ALICE, info, T0 + 5)
    grant(r, M3, Role.MASTER, T0 + 6)
    gov = r.fold.governance
    assert gov.masters_at(T0 + 5) == {M1.peer_id, M2.peer_id}
    assert gov.masters_at(T0 + 6) == {M1.peer_id, M2.peer_id, M3.peer_id}
    late = cosign(o, M3, SignKind.MASTER, T0 + 7)
    assert r.assess(late) is OplogStatus.PENDING  # accepted, but counts for nothing
    two = cosign(late, M1, SignKind.MASTER, T0 + 8)
    assert len(two.master_sigs) == 2
    assert r.assess(two) is OplogStatus.PENDING  # two signatures, one of them counts
    assert r.assess(cosign(two, M2, SignKind.MASTER, T0 + 8)) is OplogStatus.VALID
    # Nobody asks M3 to sign it; M1 is asked.
    assert sign_kind(o, OplogStatus.PENDING, gov, M3.peer_id, T0 + 7) is None
    assert sign_kind(o, OplogStatus.PENDING, gov, M1.peer_id, T0 + 7) is SignKind.MASTER
    # A signature M3 made before it was a master is refused.
    with pytest.raises(NotAuthorizedError, match="not by a master"):
        r.assess(cosign(o, M3, SignKind.MASTER, T0 + 5))


def test_a_master_demoted_after_the_create_time_can_no_longer_sign() -> None:
    info = topic()
    r = found(info)
    grant(r, M2, Role.MASTER, T0 + 1)
    grant(r, ALICE, Role.MEMBER, T0 + 2)
    o = write(ALICE, info, T0 + 5)
    r.commit([(o, r.assess(o))], now=T0 + 5)
    assert {x.oplog_id for x in pending_for_peer(r, M2.peer_id, T0 + 6, 10)} == {o.oplog_id}
    grant(r, M2, Role.MEMBER, T0 + 7)  # demoted (M2 co-signs it): still a member
    gov = r.fold.governance
    assert gov.masters_at(T0 + 5) == {M1.peer_id, M2.peer_id}  # still counts at T0 + 5 ...
    assert sign_kind(o, OplogStatus.PENDING, gov, M2.peer_id, T0 + 6) is SignKind.MASTER
    assert sign_kind(o, OplogStatus.PENDING, gov, M2.peer_id, T0 + 8) is None  # ... not now
    assert pending_for_peer(r, M2.peer_id, T0 + 8, 10) == []
    with pytest.raises(NotAuthorizedError, match="not by a master"):
        r.assess(cosign(o, M2, SignKind.MASTER, T0 + 8))
    in_time = cosign(o, M2, SignKind.MASTER, T0 + 6)  # made while it was a master
    assert r.assess(in_time) is OplogStatus.PENDING
    assert r.assess(cosign(in_time, M1, SignKind.MASTER, T0 + 8)) is OplogStatus.VALID


# -- 2. rejections ---------------------------------------------------------------------------


def both_handlers(r: Replica, raw: list[bytes], now: int) -> list[list[str]]:
    """HandleOplogs and HandlePendingOplogs on the same records: their rejection reasons."""
    before = (r.store.count(r.topic_id), digest(r))
    reasons = []
    for result in (handler(r).handle(raw, now), handler(r).handle_pending_oplogs(raw, now)):
        assert result.stored == []
        reasons.append(result.rejected)
    assert (r.store.count(r.topic_id), digest(r)) == before
    return reasons


def test_a_forged_cosignature_fails_verification_and_is_rejected() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    relay = peer(info, None, master, T0 + 2)
    o = write(ALICE, info, T0 + 5)
    signed = cosign(o, M1, SignKind.MASTER, T0 + 6)
    verify_oplog(signed)
    sig = signed.master_sigs[0]
    flipped = dataclasses.replace(sig, sig=bytes([sig.sig[0] ^ 1]) + sig.sig[1:])
    retimed = dataclasses.replace(sig, time=sig.time + 1)  # the signature was over another time
    by_eve = cosign(o, EVE, SignKind.MASTER, T0 + 6).master_sigs[0]
    claimed = dataclasses.replace(by_eve, signer=M1.peer_id)  # Eve's signature, M1's name
    forgeries = [
        with_signatures(signed, master_sigs=(s,), internal_sigs=())
        for s in (flipped, retimed, claimed)
    ]
    for forged in forgeries:
        assert forged.hash != signed.hash
        with pytest.raises(SignatureError, match="does not verify"):
            verify_oplog(forged)
    for reasons in both_handlers(relay, enc(*forgeries), T0 + 10):
        assert len(reasons) == 3 and all("does not verify" in r for r in reasons)
    assert status(relay, o) is None
    # The genuine copy goes through.
    assert handler(relay).handle(enc(signed), T0 + 10).added == [signed]


def test_a_master_signature_by_a_non_master_is_refused() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    grant(master, EVE, Role.MEMBER, T0 + 1)
    o = write(ALICE, info, T0 + 5)
    by_member = cosign(o, EVE, SignKind.MASTER, T0 + 6)
    by_stranger = cosign(o, STRANGER, SignKind.MASTER, T0 + 6)
    by_both = cosign(by_member, M1, SignKind.MASTER, T0 + 6)  # a good one does not excuse it
    for bad in (by_member, by_stranger, by_both):
        verify_oplog(bad)  # the signatures themselves are genuine
        with pytest.raises(NotAuthorizedError, match="not by a master"):
            master.assess(bad)
    # A device signature by someone else's key is refused too.
    with pytest.raises(NotAuthorizedError, match="creator's devices"):
        master.assess(cosign(o, EVE, SignKind.INTERNAL, T0 + 6))
    for r in (master, peer(info, None, master, T0 + 2)):
        for reasons in both_handlers(r, enc(by_member, by_stranger, by_both), T0 + 10):
            assert len(reasons) == 3 and all("not by a master" in x for x in reasons)
        assert status(r, o) is None


def test_a_removed_member_cannot_write_after_the_removal() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    t1, t2 = T0 + 20, T0 + 30
    before = cosign(write(ALICE, info, T0 + 10, "before"), M1, SignKind.MASTER, T0 + 11)
    assert master.assess(before) is OplogStatus.VALID
    grant(master, ALICE, Role.NONE, t1)
    alice = peer(info, ALICE, master, t1 + 1)
    gov = alice.fold.governance
    assert gov.role_at(ALICE.peer_id, t1 - 1) is Role.MEMBER
    assert gov.role_at(ALICE.peer_id, t1) is Role.NONE
    after = write(ALICE, info, t2, "after")
    after_signed = cosign(after, M1, SignKind.MASTER, t2 + 1)  # even the master's signature
    for o in (after, after_signed):
        with pytest.raises(NotAuthorizedError, match="not a member"):
            master.assess(o)
    with pytest.raises(UsageError, match="not a member"):
        alice.create(object_id=b"x", op=OP_PUT, value=put_payload(1), now=t2)
    for reasons in both_handlers(master, enc(after, after_signed), t2 + 2):
        assert len(reasons) == 2 and all("not a member" in x for x in reasons)
    # Her write made before the removal is still good.
    assert master.assess(before) is OplogStatus.VALID
    assert handler(master).handle(enc(before), t2 + 2).added == [before]


def test_an_oplog_by_a_non_member_is_refused() -> None:
    info = topic()
    master = found(info)
    outsider = write(STRANGER, info, T0 + 5)
    with pytest.raises(NotAuthorizedError, match="not a member"):
        master.assess(outsider)
    with pytest.raises(NotAuthorizedError, match="not a member"):
        master.assess(cosign(outsider, M1, SignKind.MASTER, T0 + 6))
    stranger = peer(info, STRANGER, master, T0 + 1)
    with pytest.raises(UsageError, match="not a member"):
        stranger.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=T0 + 5)
    assert stranger.store.count(info.topic_id) == 1  # the genesis only
    for reasons in both_handlers(master, enc(outsider), T0 + 10):
        assert len(reasons) == 1 and "not a member" in reasons[0]
    # A non-member cannot hand out roles or certify devices either.
    for gov_oplog in (
        role_oplog(STRANGER, info, EVE, Role.MEMBER, T0 + 5),
        device_oplog(STRANGER, info, PHONE, True, T0 + 5),
    ):
        with pytest.raises(NotAuthorizedError):
            master.assess(gov_oplog)
    # And a member cannot hand out roles.
    grant(master, EVE, Role.MEMBER, T0 + 1)
    with pytest.raises(NotAuthorizedError, match="only a master"):
        master.assess(role_oplog(EVE, info, ALICE, Role.MEMBER, T0 + 5))


def test_a_signature_made_after_the_expiry_is_refused() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    alice = peer(info, ALICE, master, T0 + 2)
    alice.set_device(PHONE.peer_id, True, now=T0 + 2)
    replicate(alice, master, T0 + 3)
    t = T0 + 10
    deadline = t + info.expiry
    o = write(ALICE, info, t)
    in_time = cosign(cosign(o, PHONE, SignKind.INTERNAL, deadline), M1, SignKind.MASTER, deadline)
    assert master.assess(in_time) is OplogStatus.VALID  # the last instant still counts
    late_master = cosign(
        cosign(o, PHONE, SignKind.INTERNAL, t + 1), M1, SignKind.MASTER, deadline + 1
    )
    late_device = cosign(o, PHONE, SignKind.INTERNAL, deadline + 1)
    with pytest.raises(NotAuthorizedError, match="master signature was made after"):
        master.assess(late_master)
    with pytest.raises(NotAuthorizedError, match="device signature was made after"):
        master.assess(late_device)
    result = handler(master).handle(enc(late_master), deadline + 2)
    assert result.stored == [] and len(result.rejected) == 1 and "expired" in result.rejected[0]
    assert status(master, o) is None
    assert handler(master).handle(enc(in_time), deadline + 2).added == [in_time]


# -- 3. HandlePendingOplogs ---------------------------------------------------------------------


def test_copies_with_different_cosignatures_are_unioned_in_any_order() -> None:
    info, master = three_masters(Quorum.ALL)
    o = write(ALICE, info, T0 + 10)
    a = cosign(o, M1, SignKind.MASTER, T0 + 11)
    b = cosign(o, M2, SignKind.MASTER, T0 + 12)
    a_later = cosign(o, M1, SignKind.MASTER, T0 + 13)  # the same signer, a later signature
    deliveries = [
        [[a], [b]],
        [[b], [a]],
        [[a, b]],
        [[b, a]],
        [[a_later], [b], [a]],
        [[a, b, a_later]],
    ]
    hashes = set()
    for batches in deliveries:
        relay = peer(info, None, master, T0 + 10)  # no identity: it never signs
        for batch in batches:
            result = handler(relay).handle_pending_oplogs(enc(*batch), T0 + 20)
            assert result.rejected == []
        assert status(relay, o) is OplogStatus.PENDING  # two of three
        got = held(relay, o)
        assert signers(got.master_sigs) == {M1.peer_id, M2.peer_id}
        assert {s.time for s in got.master_sigs} == {T0 + 11, T0 + 12}  # the earlier M1 kept
        hashes.add(got.hash)
        # Less-signed copies lose nothing.
        for stale in (o, a, b, a_later):
            assert handler(relay).handle_pending_oplogs(enc(stale), T0 + 20).stored == []
        assert held(relay, o).hash == got.hash
        # The third signature, on a copy that lacks the other two, makes it valid.
        c = cosign(o, M3, SignKind.MASTER, T0 + 14)
        handler(relay).handle_pending_oplogs(enc(c), T0 + 20)
        assert status(relay, o) is OplogStatus.VALID
        assert signers(held(relay, o).master_sigs) == {M1.peer_id, M2.peer_id, M3.peer_id}
    assert len(hashes) == 1


def test_masters_sign_a_pending_oplog_when_they_receive_it() -> None:
    info, r = three_masters(Quorum.MAJORITY)
    t = T0 + 10
    alice = peer(info, ALICE, r, t)
    m2, m3 = peer(info, M2, r, t), peer(info, M3, r, t)
    eve = peer(info, EVE, r, t)
    o, st = alice.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=t)
    assert st is OplogStatus.PENDING
    # A member that is not a master does not sign.
    assert handler(eve).handle_pending_oplogs(enc(o), t + 1).improved == []
    assert held(eve, o).master_sigs == ()
    # M2 signs on receipt, and tells the sender it holds a better copy.
    result = handler(m2).handle_pending_oplogs(enc(o), t + 2)
    assert [x.oplog_id for x in result.improved] == [o.oplog_id]
    assert status(m2, o) is OplogStatus.PENDING  # 1 of 3 masters
    by_m2 = held(m2, o)
    assert signers(by_m2.master_sigs) == {M2.peer_id}
    assert {s.time for s in by_m2.master_sigs} == {t + 2}
    # M3 adds the second signature: valid, in the tree.
    handler(m3).handle_pending_oplogs(enc(by_m2), t + 3)
    assert status(m3, o) is OplogStatus.VALID
    both = held(m3, o)
    assert signers(both.master_sigs) == {M2.peer_id, M3.peer_id}
    assert both in valid(m3)
    # Back at the author, the valid copy replaces the pending one.
    handler(alice).handle_pending_oplogs(enc(both), t + 4)
    assert status(alice, o) is OplogStatus.VALID and held(alice, o).hash == both.hash
    # M2, who already signed, signs nothing more on the valid copy.
    handler(m2).handle_pending_oplogs(enc(both), t + 4)
    assert held(m2, o).hash == both.hash


def test_master_signed_says_whether_a_master_wrote_or_cosigned_it() -> None:
    """What the push router asks before it sends a pending oplog downhill: the nearest
    master may be the one that signed (net/push.py, `_towards_master`)."""
    info, r = three_masters(Quorum.MAJORITY)
    t = T0 + 10
    gov = r.fold.governance
    alice, m1 = peer(info, ALICE, r, t), peer(info, M1, r, t)
    o, _ = alice.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=t)
    assert not master_signed(o, gov)  # a member's, unsigned
    assert master_signed(cosign(o, M2, SignKind.MASTER, t + 1), gov)
    own, status = m1.create(object_id=b"k2", op=OP_PUT, value=put_payload(2), now=t)
    assert status is OplogStatus.PENDING and master_signed(own, gov)  # 1 of 3: its author
    # Who is left to sign: what a node short of masters dials (net/topicruntime.py).
    m1_user, m2_user, m3_user = (gov.user_of(m.peer_id, t) for m in (M1, M2, M3))
    assert masters_to_sign(o, gov) == {m1_user, m2_user, m3_user}
    assert masters_to_sign(cosign(o, M2, SignKind.MASTER, t + 1), gov) == {m1_user, m3_user}
    assert masters_to_sign(own, gov) == {m2_user, m3_user}


def test_a_peer_sent_a_copy_with_less_than_its_own_offers_its_own_back() -> None:
    """Was: a master that had signed an oplog answered its author's unsigned copy
    with nothing (integrating it changed nothing here), so the author never
    learnt the signature.  With two masters the author held the unsigned copy
    for good, until it expired (the simulator: masters back from offline)."""
    info, r = three_masters(Quorum.MAJORITY)
    t = T0 + 10
    alice, m2 = peer(info, ALICE, r, t), peer(info, M2, r, t)
    o, _ = alice.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=t)
    handler(m2).handle_pending_oplogs(enc(o), t + 2)  # M2 signs it
    by_m2 = held(m2, o)
    again = handler(m2).handle_pending_oplogs(enc(o), t + 5)
    assert again.stored == [] and again.unchanged == 1
    assert again.improved == [by_m2]  # the better copy to send back
    # The very copy held is nothing better; neither is one the batch itself bettered.
    assert handler(m2).handle_pending_oplogs(enc(by_m2), t + 6).improved == []


def test_an_expired_pending_oplog_is_dropped() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    o = write(ALICE, info, T0 + 10)
    deadline = o.create_time + info.expiry
    late = peer(info, M1, master, T0 + 2)  # a master: it would sign, if it were in time
    result = handler(late).handle_pending_oplogs(enc(o), deadline + 1)
    assert result.stored == [] and result.rejected == [] and result.unchanged == 1
    assert status(late, o) is None
    assert late.store.failed(info.topic_id) == []
    # At the last instant, it is still signed and kept.
    handler(master).handle_pending_oplogs(enc(o), deadline)
    assert status(master, o) is OplogStatus.VALID
    assert [s.time for s in held(master, o).master_sigs] == [deadline]


def test_pending_oplogs_are_routed_only_to_the_peers_that_can_sign_them() -> None:
    info, r = three_masters(Quorum.MAJORITY)
    cert = device_oplog(ALICE, info, PHONE, True, T0 + 4)
    assert r.assess(cert) is OplogStatus.VALID
    r.commit([(cert, OplogStatus.VALID)], now=T0 + 4)
    t = T0 + 2 * info.expiry
    by_eve = write(EVE, info, t, "eve")
    by_eve_m2 = cosign(write(EVE, info, t, "eve2"), M2, SignKind.MASTER, t)
    by_m1 = write(M1, info, t, "m1")
    by_phone = write(PHONE, info, t, "phone")
    old = write(EVE, info, t - info.expiry - 1, "old")
    expected_status = {
        by_eve: OplogStatus.PENDING,
        by_eve_m2: OplogStatus.PENDING,
        by_m1: OplogStatus.PENDING,
        by_phone: OplogStatus.INTERNAL_PENDING,
        old: OplogStatus.PENDING,
    }
    relay = peer(info, None, r, T0 + 5)
    relay.commit([(o, relay.assess(o)) for o in expected_status], now=t)
    assert {o: status(relay, o) for o in expected_status} == expected_status
    routed = {
        who: {o.oplog_id for o in pending_for_peer(relay, who.peer_id, t + 1, 256)}
        for who in (M1, M2, M3, ALICE, PHONE, EVE, STRANGER)
    }
    eve, eve_m2, m1, ph = (o.oplog_id for o in (by_eve, by_eve_m2, by_m1, by_phone))
    assert routed == {
        M1: {eve, eve_m2},  # not its own write, not the internal-pending one
        M2: {eve, m1},  # not what it signed
        M3: {eve, eve_m2, m1},
        ALICE: {ph},  # the author's other device, for the internal-pending one
        PHONE: set(),  # the creator itself
        EVE: set(),
        STRANGER: set(),
    }
    assert old.oplog_id not in set().union(*routed.values())  # expired: offered to nobody
    in_time = pending_for_peer(relay, M1.peer_id, old.create_time + info.expiry, 256)
    assert old.oplog_id in {o.oplog_id for o in in_time}  # ... but offered until it expired
    assert len(pending_for_peer(relay, M3.peer_id, t + 1, 2)) == 2  # the limit holds


# -- 4. postsync end to end ---------------------------------------------------------------------


@pytest.mark.parametrize("member_requests", [True, False])
def test_postsync_makes_a_member_write_valid_on_both_sides_in_one_call(
    member_requests: bool,
) -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    store = Store.memory()
    store.add_topic(info)
    alice = Replica(store, info.topic_id, identity=ALICE)

    def sync(now: int) -> None:
        sides = [(alice, ALICE), (master, M1)]
        if not member_requests:
            sides.reverse()
        (ra, ia), (rb, ib) = sides
        report = sync_local(
            ra.store, rb.store, info.topic_id, peer_a=ia.peer_id, peer_b=ib.peer_id, now=now,
            replica_a=ra, replica_b=rb,
        )  # fmt: skip
        assert report.converged and report.rejected == 0, report.as_json()

    sync(T0 + 5)  # Alice learns that she is a member
    assert alice.fold.governance.role_at(ALICE.peer_id, T0 + 5) is Role.MEMBER
    o, st = alice.create(object_id=b"k", op=OP_PUT, value=put_payload("hi"), now=T0 + 10)
    assert st is OplogStatus.PENDING and status(master, o) is None
    sync(T0 + 20)
    assert status(alice, o) is OplogStatus.VALID
    assert status(master, o) is OplogStatus.VALID
    assert held(alice, o).hash == held(master, o).hash
    assert signers(held(master, o).master_sigs) == {M1.peer_id}
    assert digest(alice) == digest(master)
    assert {x.oplog_id for x in valid(alice)} == {x.oplog_id for x in valid(master)}
    assert not alice.store.has_pending(info.topic_id)


def test_postsync_carries_a_device_write_through_internal_pending_to_valid() -> None:
    """Three stores: Alice's phone writes, her user key co-signs, the master co-signs."""
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    alice = peer(info, ALICE, None, 0)
    phone = peer(info, PHONE, None, 0)

    def sync(a: Replica, b: Replica, now: int) -> None:
        assert a.identity is not None and b.identity is not None
        report = sync_local(
            a.store, b.store, info.topic_id, peer_a=a.identity.peer_id,
            peer_b=b.identity.peer_id, now=now, replica_a=a, replica_b=b,
        )  # fmt: skip
        assert report.converged and report.rejected == 0, report.as_json()

    sync(alice, master, T0 + 2)
    alice.set_device(PHONE.peer_id, True, now=T0 + 3)
    sync(alice, master, T0 + 4)
    sync(phone, master, T0 + 5)
    o, st = phone.create(object_id=b"k", op=OP_PUT, value=put_payload(1), now=T0 + 10)
    assert st is OplogStatus.INTERNAL_PENDING
    sync(phone, master, T0 + 11)  # the master cannot sign it: nothing moves
    assert (status(phone, o), status(master, o)) == (OplogStatus.INTERNAL_PENDING, None)
    sync(phone, alice, T0 + 12)  # the user key signs it in postsync
    assert status(phone, o) is status(alice, o) is OplogStatus.PENDING
    sync(alice, master, T0 + 13)  # the master signs it in postsync
    assert status(alice, o) is status(master, o) is OplogStatus.VALID
    sync(phone, master, T0 + 14)  # and the valid copy reaches the phone by sync
    assert status(phone, o) is OplogStatus.VALID
    final = held(phone, o)
    assert signers(final.internal_sigs) == {ALICE.peer_id}
    assert signers(final.master_sigs) == {M1.peer_id}
    assert digest(phone) == digest(alice) == digest(master)


# -- 5. expiry rollback ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["create", "update", "delete"])
def test_an_expired_pending_document_write_is_rolled_back(kind: str) -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    mdocs = DocumentStore(master)
    mdocs.put("upd", "v1", now=T0 + 2)
    mdocs.put("del", "here", now=T0 + 2)
    alice = peer(info, ALICE, master, T0 + 3)
    relay = peer(info, None, master, T0 + 3)  # holds the pending write without signing it
    docs, rdocs = DocumentStore(alice), DocumentStore(relay)
    key = {"create": "new", "update": "upd", "delete": "del"}[kind]
    shown_before = {"create": None, "update": "v1", "delete": "here"}[kind]

    def shown(d: DocumentStore) -> object:
        state = d.get(key)
        return None if state is None else (state.exists, state.value, state.pending)

    before = shown(docs)
    assert before == (None if shown_before is None else (True, shown_before, False))
    tree_before = digest(alice)
    t = T0 + 10
    w = docs.delete(key, now=t) if kind == "delete" else docs.put(key, "draft", now=t)
    stored = alice.store.get(info.topic_id, w.oplog_id)
    assert stored is not None
    o = stored.oplog
    assert status(alice, o) is OplogStatus.PENDING
    assert o.op == (OP_DELETE if kind == "delete" else OP_PUT)
    assert shown(docs) == ((False, None, True) if kind == "delete" else (True, "draft", True))
    handler(relay).handle_pending_oplogs(enc(o), t + 1)
    assert status(relay, o) is OplogStatus.PENDING
    assert digest(alice) == digest(relay) == tree_before

    deadline = t + info.expiry
    for r in (alice, relay):
        assert handle_failed(r, deadline) == []  # not yet: nothing removed
        assert status(r, o) is OplogStatus.PENDING
        assert r.store.failed(info.topic_id) == []
    for r, d in ((alice, docs), (relay, rdocs)):
        assert [x.oplog_id for x in handle_failed(r, deadline + 1)] == [o.oplog_id]
        assert status(r, o) is None
        (record,) = r.store.failed(info.topic_id)
        assert record.oplog_id == o.oplog_id and record.reason.startswith("expired")
        assert (record.object_id, record.op, record.creator) == (o.object_id, o.op, o.creator)
        assert (record.create_time, record.failed_at) == (t, deadline + 1)
        assert shown(d) == before  # the previous state holds
        assert digest(r) == tree_before
        assert handle_failed(r, deadline + 2) == []  # once only


def test_an_expired_pending_role_change_never_takes_effect() -> None:
    info, r = three_masters(Quorum.MAJORITY)
    t = T0 + 10
    removal, st = r.set_role(ALICE.peer_id, Role.NONE, now=t)
    promotion, st2 = r.set_role(EVE.peer_id, Role.MASTER, now=t)
    assert st is OplogStatus.PENDING and st2 is OplogStatus.PENDING  # M1 alone of three

    def answers(rep: Replica) -> tuple[object, ...]:
        gov = rep.fold.governance
        return (
            gov.role_at(ALICE.peer_id, t + 5),
            gov.role_at(EVE.peer_id, t + 5),
            gov.masters_at(t + 5),
        )

    expected = (Role.MEMBER, Role.MEMBER, frozenset({M1.peer_id, M2.peer_id, M3.peer_id}))
    assert answers(r) == expected  # a pending role change has no effect yet
    by_alice = cosign(write(ALICE, info, t + 5), M1, SignKind.MASTER, t + 5)
    assert r.assess(by_alice) is OplogStatus.PENDING  # Alice still writes; needs 2 masters
    deadline = t + info.expiry
    assert handle_failed(r, deadline) == []
    assert status(r, removal) is OplogStatus.PENDING
    gone = handle_failed(r, deadline + 1)
    assert {x.oplog_id for x in gone} == {removal.oplog_id, promotion.oplog_id}
    assert status(r, removal) is None and status(r, promotion) is None
    records = {f.oplog_id: f for f in r.store.failed(info.topic_id)}
    assert set(records) == {removal.oplog_id, promotion.oplog_id}
    assert all(f.reason.startswith("expired") and f.op == OP_ROLE for f in records.values())
    assert answers(r) == expected
    assert answers(Replica(r.store, info.topic_id)) == expected  # as rebuilt from the store
    # A master signature made now is too late to revive the removal.
    late = masters_sign(removal, [M2], deadline + 1)
    with pytest.raises(NotAuthorizedError, match="expired"):
        r.assess(late)


# -- 6. retroactive governance ----------------------------------------------------------------


def test_a_retroactive_removal_deletes_the_later_oplogs_on_every_peer() -> None:
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    t1, t2 = T0 + 5, T0 + 10
    o = cosign(write(ALICE, info, t2), M1, SignKind.MASTER, t2 + 1)
    earlier = cosign(write(ALICE, info, t1 - 1, "early"), M1, SignKind.MASTER, t1)
    assert master.assess(o) is OplogStatus.VALID
    y = peer(info, None, master, t2 + 2)
    added = handler(y).handle(enc(o, earlier), t2 + 2).added
    assert {a.oplog_id for a in added} == {o.oplog_id, earlier.oplog_id}
    assert status(y, o) is OplogStatus.VALID
    # The master removes Alice as of t1, before her write (made late, e.g. offline).
    removal = role_oplog(M1, info, ALICE, Role.NONE, t1)
    x = peer(info, None, master, t2 + 2)
    assert handler(x).handle(enc(removal), t2 + 3).added == [removal]
    result = handler(x).handle(enc(o, earlier), t2 + 3)
    assert result.added == [earlier]
    assert len(result.rejected) == 1 and "not a member" in result.rejected[0]
    assert status(x, o) is None
    # Y gets the removal second: Alice's later oplog goes, in the same commit.
    now = t2 + 4
    assert handler(y).handle(enc(removal), now).added == [removal]
    assert status(y, o) is None
    assert status(y, earlier) is OplogStatus.VALID  # made before the removal: kept
    (record,) = y.store.failed(info.topic_id)
    assert record.oplog_id == o.oplog_id and "no longer authorised" in record.reason
    assert record.failed_at == now
    assert x.store.failed(info.topic_id) == []
    assert digest(x) == digest(y)
    assert {a.oplog_id for a in valid(x)} == {a.oplog_id for a in valid(y)}
    assert y.store.check(info.topic_id) == [] and x.store.check(info.topic_id) == []
    report = sync_local(
        x.store, y.store, info.topic_id, peer_a=b"X" * 32, peer_b=b"Y" * 32, now=now,
        replica_a=x, replica_b=y,
    )  # fmt: skip
    assert report.converged and report.rejected == 0


def test_a_retroactive_master_removal_makes_a_held_pending_oplog_valid() -> None:
    info = topic()
    master = found(info)
    grant(master, M2, Role.MASTER, T0 + 1)
    grant(master, ALICE, Role.MEMBER, T0 + 2)
    o = cosign(write(ALICE, info, T0 + 10), M1, SignKind.MASTER, T0 + 11)
    assert master.assess(o) is OplogStatus.PENDING  # M1 of {M1, M2}
    y = peer(info, None, master, T0 + 12)
    handler(y).handle_pending_oplogs(enc(o), T0 + 12)
    assert status(y, o) is OplogStatus.PENDING
    # M2 leaves as of T0 + 5 (both masters sign): from then on M1 alone is the quorum.
    leave = masters_sign(role_oplog(M1, info, M2, Role.NONE, T0 + 5), [M2], T0 + 5)
    x = peer(info, None, master, T0 + 12)
    handler(x).handle(enc(leave), T0 + 13)
    handler(x).handle_pending_oplogs(enc(o), T0 + 13)
    assert status(x, o) is OplogStatus.VALID
    before = digest(y)
    assert handler(y).handle(enc(leave), T0 + 13).added == [leave]
    assert status(y, o) is OplogStatus.VALID  # rewritten in the same commit
    assert o in valid(y) and digest(y) != before
    assert y.store.failed(info.topic_id) == []
    assert digest(x) == digest(y)


# HandleOplogs once judged a batch's governance oplogs in arrival order, so one that
# depended on a later one of the same batch (a DEVICE certificate before its
# author's ROLE, a grant by a master before the ROLE that made it master) was
# refused, and counted against an honest sender.  The next three tests pin that.


def chained_governance() -> tuple[TopicInfo, list[Oplog]]:
    """The genesis, M2 made master, Alice made member by M2, Alice's phone: each needs the last."""
    info = topic()
    master = found(info)
    grant(master, M2, Role.MASTER, T0 + 1)
    grant(master, ALICE, Role.MEMBER, T0 + 2, author=M2)
    cert = device_oplog(ALICE, info, PHONE, True, T0 + 3)
    master.commit([(cert, master.assess(cert))], now=T0 + 3)
    chain = sorted(valid(master), key=lambda o: o.create_time)
    assert [o.create_time - T0 for o in chain] == [0, 1, 2, 3]
    return info, chain


def test_handle_oplogs_accepts_a_governance_chain_in_time_order() -> None:
    info, chain = chained_governance()
    r = peer(info, None, None, 0)
    result = handler(r).handle(enc(*chain), T0 + 10)
    assert result.rejected == [] and len(result.added) == 4
    assert r.fold.governance.user_of(PHONE.peer_id, T0 + 3) == ALICE.peer_id


def test_handle_oplogs_accepts_a_governance_chain_in_any_order() -> None:
    """lifecycle.md: every peer holding the same oplogs builds the same timeline,
    whatever their arrival order, and an oplog valid here is not refused."""
    info, chain = chained_governance()
    refused = []
    for order in itertools.permutations(chain):
        r = peer(info, None, None, 0)
        result = handler(r).handle(enc(*order), T0 + 10)
        if result.rejected or len(result.added) != 4:
            refused.append(([o.create_time - T0 for o in order], result.rejected))
    assert refused == []


def test_a_first_sync_of_a_new_device_refuses_nothing() -> None:
    """An honest peer's valid oplogs must not be counted against it (stats.rejected)."""
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    cert = device_oplog(ALICE, info, PHONE, True, T0 + 3)
    master.commit([(cert, master.assess(cert))], now=T0 + 3)
    phone = peer(info, PHONE, None, 0)
    report = sync_local(
        phone.store, master.store, info.topic_id, peer_a=PHONE.peer_id, peer_b=M1.peer_id,
        now=T0 + 5, replica_a=phone, replica_b=master,
    )  # fmt: skip
    assert report.converged and digest(phone) == digest(master)
    assert report.rejected == 0, report.as_json()
    assert len(report.rounds) == 1


# -- 7. the governance fold ---------------------------------------------------------------------


def governance_history(info: TopicInfo) -> tuple[list[Oplog], Oplog, Oplog]:
    """Adds, a device, a removal war between M1 and M2 at one instant, then more changes.

    Returns the oplogs, then the winning and the losing oplog of the war (the
    one first in (create time, ID) order removes the other's author first).
    """
    ops = [make_genesis(M1, info)]
    ops.append(role_oplog(M1, info, M2, Role.MASTER, T0 + 1))  # M1 alone: valid
    ops.append(masters_sign(role_oplog(M2, info, ALICE, Role.MEMBER, T0 + 2), [M1], T0 + 2))
    ops.append(masters_sign(role_oplog(M1, info, M3, Role.MASTER, T0 + 3), [M2], T0 + 3))
    ops.append(device_oplog(ALICE, info, PHONE, True, T0 + 4))
    ops.append(masters_sign(role_oplog(M1, info, EVE, Role.MEMBER, T0 + 5), [M3], T0 + 5))
    war_1 = masters_sign(role_oplog(M1, info, M2, Role.NONE, T0 + 10), [M3], T0 + 10)
    war_2 = masters_sign(role_oplog(M2, info, M1, Role.NONE, T0 + 10), [M3], T0 + 10)
    ops += [war_1, war_2]
    winner, loser = sorted((war_1, war_2), key=lambda o: o.oplog_id)
    survivor, removed = BY_ID[winner.creator], BY_ID[loser.creator]
    # Both sides then act with M3: only the survivor's oplogs count.
    for author in (M1, M2):
        ops.append(masters_sign(role_oplog(author, info, EVE, Role.NONE, T0 + 12), [M3], T0 + 12))
    ops.append(device_oplog(ALICE, info, PHONE, False, T0 + 15))
    ops.append(masters_sign(role_oplog(M3, info, ALICE, Role.NONE, T0 + 20), [survivor], T0 + 20))
    # A removed master's co-signature makes the whole oplog refused.
    ops.append(masters_sign(role_oplog(M3, info, EVE, Role.MEMBER, T0 + 25), [removed], T0 + 25))
    ops.append(masters_sign(role_oplog(M3, info, ALICE, Role.MASTER, T0 + 30), [survivor], T0 + 30))
    return ops, winner, loser


def fold_answers(fold: Fold) -> tuple[object, ...]:
    gov = fold.governance
    times = sorted(
        {T0 + d + e for d in (0, 1, 2, 3, 4, 5, 10, 12, 15, 20, 25, 30) for e in (-1, 0, 1)}
    )
    keys = sorted(BY_ID)
    return (
        dict(sorted(fold.status.items())),
        sorted(fold.refused),
        sorted(gov.applied),
        [gov.masters_at(t) for t in times],
        [[gov.role_at(k, t) for k in keys] for t in times],
        [[gov.user_of(k, t) for k in keys] for t in times],
        [gov.devices_of(ALICE.peer_id, t) for t in times],
    )


def test_governance_fold_is_independent_of_the_order() -> None:
    info = topic()
    ops, winner, loser = governance_history(info)
    reference = build_governance(info, ops)
    winner_author, loser_author = BY_ID[winner.creator], BY_ID[loser.creator]
    gov = reference.governance
    # What the history means: exactly one side of the war wins, at one instant.
    assert winner.oplog_id in gov.applied and loser.oplog_id in reference.refused
    assert gov.masters_at(T0 + 9) == {M1.peer_id, M2.peer_id, M3.peer_id}
    assert gov.masters_at(T0 + 10) == {winner_author.peer_id, M3.peer_id}
    assert gov.role_at(loser_author.peer_id, T0 + 10) is Role.NONE
    assert gov.role_at(EVE.peer_id, T0 + 12) is Role.NONE  # by the winner's side, with M3
    assert len([o for o in ops if o.create_time == T0 + 12 and o.oplog_id in gov.applied]) == 1
    assert gov.user_of(PHONE.peer_id, T0 + 4) == ALICE.peer_id
    assert gov.user_of(PHONE.peer_id, T0 + 15) is None
    assert gov.role_at(ALICE.peer_id, T0 + 20) is Role.NONE
    assert gov.role_at(EVE.peer_id, T0 + 25) is Role.NONE
    (refused_25,) = [o for o in ops if o.create_time == T0 + 25]
    assert "not by a master" in reference.refused[refused_25.oplog_id]
    assert gov.role_at(ALICE.peer_id, T0 + 30) is Role.MASTER
    assert gov.masters_at(T0 + 30) == {winner_author.peer_id, M3.peer_id, ALICE.peer_id}
    expected = fold_answers(reference)
    rng = random.Random(11)
    orders = [list(reversed(ops))]
    for _ in range(12):
        order = list(ops)
        rng.shuffle(order)
        orders.append(order)
    for order in orders:
        assert fold_answers(build_governance(info, order)) == expected
        assert fold_answers(build_governance(info, order + order[:3])) == expected  # duplicates
    # Peers that stored the same oplogs in different orders build the same timeline.
    for order in orders[:3]:
        store = Store.memory()
        store.add_topic(info)
        for o in order:
            store.write_batch(info.topic_id, [(o, OplogStatus.VALID)])
        assert fold_answers(Replica(store, info.topic_id).fold) == expected
        held_gov = store.by_op_range(info.topic_id, *GOVERNANCE_OPS)
        assert len(held_gov) == len(ops)


def test_extending_a_fold_gives_the_fold_of_the_whole_set() -> None:
    """extend_fold (append in order, or rebuild when out of order) equals build_governance."""
    info = topic()
    ops, _winner, _loser = governance_history(info)
    expected = fold_answers(build_governance(info, ops))
    rng = random.Random(5)
    for _ in range(20):
        order = list(ops)
        rng.shuffle(order)
        fold = build_governance(info, [])
        while order:
            take = rng.randint(1, 3)
            before = fold_answers(fold)
            extended = extend_fold(fold, order[:take])
            assert fold_answers(fold) == before  # the original is never changed
            fold, order = extended, order[take:]
        assert fold_answers(fold) == expected
    # In time order every step appends; removing an oplog rebuilds without it.
    fold = build_governance(info, [])
    for o in sorted(ops, key=lambda o: (o.create_time, o.oplog_id)):
        fold = extend_fold(fold, [o])
    assert fold_answers(fold) == expected
    last = max(ops, key=lambda o: (o.create_time, o.oplog_id))
    without = extend_fold(fold, [], without=[last.oplog_id])
    assert fold_answers(without) == fold_answers(
        build_governance(info, [o for o in ops if o is not last])
    )


# -- 8. the schema migration -------------------------------------------------------------------


def test_a_schema_2_store_migrates_to_the_current_schema(tmp_path: Path) -> None:
    info = topic()
    path = tmp_path / "v2.sqlite3"
    store = Store.open(path, create=True)
    master = found_topic(store, M1, info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    doc, _ = master.create(object_id=b"doc", op=OP_PUT, value=put_payload(1), now=T0 + 2)
    pending = write(ALICE, info, T0 + 3, "p")
    master.commit([(pending, OplogStatus.PENDING)], now=T0 + 3)
    tree = digest(master)
    store.close()

    # Take the file back to schema 2: no lifecycle columns, no failed table.
    conn = sqlite3.connect(path)
    fresh_columns = {
        t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")]
        for t in ("topics", "oplogs", "failed")
    }
    with conn:
        whole_bodies(conn)  # schema 6 packs them
        conn.execute("DROP INDEX oplogs_by_object")
        conn.execute("DROP INDEX governance_oplogs")
        conn.execute("DROP TABLE failed")
        conn.execute("DROP TABLE quarantine")  # schema 4
        for table, column in [("topics", "quorum"), ("topics", "expiry"), ("oplogs", "object_id"),
                              ("oplogs", "op"), ("oplogs", "create_time"),
                              ("oplogs", "crc")]:  # fmt: skip
            conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    conn.execute("PRAGMA user_version=2")
    assert "op" not in [row[1] for row in conn.execute("PRAGMA table_info(oplogs)")]
    conn.close()

    with Store.open(path) as migrated:
        assert migrated.schema_version == SCHEMA_VERSION == 6
        conn = migrated._conn
        assert {
            t: [row[1] for row in conn.execute(f"PRAGMA table_info({t})")] for t in fresh_columns
        } == fresh_columns
        indexes = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
        }
        assert {"oplogs_by_object", "governance_oplogs"} <= indexes
        assert migrated.topic(info.topic_id) == info
        assert migrated.check(info.topic_id) == []
        assert migrated.tree(info.topic_id).digest() == tree
        assert len(migrated.by_op_range(info.topic_id, *GOVERNANCE_OPS)) == 2
        assert [s.oplog.oplog_id for s in migrated.by_objects(info.topic_id, [b"doc"])] == [
            doc.oplog_id
        ]
        r = Replica(migrated, info.topic_id, identity=M1)
        assert r.fold.governance.role_at(ALICE.peer_id, T0 + 5) is Role.MEMBER
        assert status(r, pending) is OplogStatus.PENDING
        assert migrated.failed(info.topic_id) == []
        # The lifecycle works on it: the pending oplog expires into the new table.
        assert handle_failed(r, T0 + 3 + DEFAULT_EXPIRY + 1) == [pending]
        assert [f.oplog_id for f in migrated.failed(info.topic_id)] == [pending.oplog_id]


def test_a_pending_oplog_ahead_of_its_previous_log_waits_for_it() -> None:
    """Was: refused ("its previous log is not here"), and the peer that pushed it,
    counting the receiver as holding it, never sent it again: a member's write to
    a hot document stuck on its way to the master for good (1,000 writes at 300
    simulated peers, seed 1).  Now it waits, as a valid one does, in a chain too."""
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    relay = peer(info, None, master, T0 + 1)  # it has the grant, not yet `first`
    first, _ = master.create(object_id=b"hot", op=OP_PUT, value=put_payload(1), now=T0 + 2)
    alice = peer(info, ALICE, master, T0 + 3)
    chain: list[Oplog] = []

    def next_version(t: int) -> Oplog:
        prev = (chain or [first])[-1].oplog_id
        o, st = alice.create(object_id=b"hot", op=OP_PUT, value=put_payload(t), now=t, prev_id=prev)
        assert st is OplogStatus.PENDING
        chain.append(o)
        return o

    for i in range(3):
        next_version(T0 + 4 + i)
    h = handler(relay)
    for o in reversed(chain):  # the newest first: each waits for the one before
        result = h.handle_pending_oplogs(enc(o), T0 + 10)
        assert result.rejected == [] and result.waiting == 1 and result.stored == []
    assert h.waiting == 3
    result = h.handle(enc(first), T0 + 11)  # the first's previous log, valid, by sync
    assert result.added == [first] and h.waiting == 0
    assert all(status(relay, o) is OplogStatus.PENDING for o in chain)
    # A long chain, newest first, is released in turn (not by recursion) when its
    # oldest arrives.
    long = [next_version(T0 + 20 + i) for i in range(1500)]
    for o in reversed(long[1:]):
        assert h.handle_pending_oplogs(enc(o), T0 + 2000).waiting == 1
    assert h.waiting == 1499
    h.handle_pending_oplogs(enc(long[0]), T0 + 2000)
    assert h.waiting == 0
    assert all(status(relay, o) is OplogStatus.PENDING for o in long)


def test_a_commit_says_which_copies_came_from_the_peer_as_stored() -> None:
    """`Commit.received`: the push router takes the peer whose sync message is being
    handled for a holder of these alone.  Waiters released by an arrival came
    earlier, maybe from another peer; a copy co-signed here is not the one sent."""
    info = topic()
    master = found(info)
    grant(master, ALICE, Role.MEMBER, T0 + 1)
    relay = peer(info, None, master, T0 + 1)
    first, _ = master.create(object_id=b"hot", op=OP_PUT, value=put_payload(1), now=T0 + 2)
    alice = peer(info, ALICE, master, T0 + 3)
    later, _ = alice.create(
        object_id=b"hot", op=OP_PUT, value=put_payload(2), now=T0 + 4, prev_id=first.oplog_id
    )
    commits: list[Commit] = []
    relay.observers.append(
        SimpleNamespace(before_commit=lambda c: None, after_commit=commits.append)
    )
    h = handler(relay)
    assert h.handle_pending_oplogs(enc(later), T0 + 10).waiting == 1  # waits for `first`
    h.handle(enc(first), T0 + 11)
    assert [dict(c.received) for c in commits] == [
        {first.oplog_id: first.hash},  # the arrival
        {},  # the waiter it released: not this message's
    ]
    # Valid ones: a waiter released by the arrival is stored in the same commit.
    a, _ = master.create(object_id=b"v", op=OP_PUT, value=put_payload(4), now=T0 + 5)
    b, _ = master.create(
        object_id=b"v", op=OP_PUT, value=put_payload(5), now=T0 + 6, prev_id=a.oplog_id
    )
    commits.clear()
    assert h.handle(enc(b), T0 + 11).waiting == 1
    h.handle(enc(a), T0 + 11)
    assert {o.oplog_id for o, _, _ in commits[0].stored} == {a.oplog_id, b.oplog_id}
    assert dict(commits[0].received) == {a.oplog_id: a.hash}
    commits.clear()
    m = peer(info, M1, master, T0 + 12)  # a master: it signs what it is sent
    m.observers.append(SimpleNamespace(before_commit=lambda c: None, after_commit=commits.append))
    other, _ = alice.create(object_id=b"k", op=OP_PUT, value=put_payload(3), now=T0 + 13)
    handler(m).handle_pending_oplogs(enc(other), T0 + 14)
    ((stored, _, _),) = commits[0].stored
    assert stored.hash != other.hash  # co-signed here
    assert dict(commits[0].received) == {other.oplog_id: other.hash}  # what it was sent


def test_replicas_on_one_governance_share_its_fold_until_theirs_changes() -> None:
    """A simulated network's peers open on one governance: one fold serves them all
    (it cost each 215 bytes per member), and a change at one leaves the others'."""
    info = topic()
    master = found(info)
    members = [make_identity(f"lc-share-{i}") for i in range(70)]  # over MIN_REMEMBERED_FOLD
    for i, user in enumerate(members):
        grant(master, user, Role.MEMBER, T0 + 1 + i)
    a = peer(info, None, master, T0 + 100)
    b = peer(info, None, master, T0 + 100)
    a2 = Replica(a.store, info.topic_id)
    b2 = Replica(b.store, info.topic_id)
    assert a2.fold is b2.fold
    before = dict(b2.fold.status)
    late = grant(master, EVE, Role.MEMBER, T0 + 200)
    handler(a2).handle(enc(late), T0 + 201)
    assert a2.fold is not b2.fold and late.oplog_id in a2.fold.status
    assert b2.fold.status == before and b2.fold.governance.user_of(EVE.peer_id, T0 + 300) is None


def test_a_built_fold_remembers_its_verdicts_and_a_changed_one_judges_afresh() -> None:
    """`Fold.assess` (what a replica judges a document oplog by) gives what `assess`
    gives, for each copy, remembered by the copy's hash on the fold: a member's write
    pending, then valid once a master signs it; a stranger's refused, every time; and
    after a governance change (a new fold) the same copy judged again, afresh."""
    info = topic()
    r = found(info)
    grant(r, ALICE, Role.MEMBER, T0 + S)
    fold = r.fold
    w = write(ALICE, info, T0 + 2 * S)
    assert r.assess(w) is OplogStatus.PENDING
    signed = masters_sign(w, [M1], T0 + 3 * S)
    assert r.assess(signed) is OplogStatus.VALID
    assert fold._assessed == {w.hash: OplogStatus.PENDING, signed.hash: OplogStatus.VALID}
    for _ in range(2):
        with pytest.raises(NotAuthorizedError):
            r.assess(write(STRANGER, info, T0 + 2 * S))
    assert len(fold._assessed) == 2  # a refusal is not remembered
    grant(r, ALICE, Role.NONE, T0 + S + 1)  # ALICE is out before she wrote
    assert r.fold is not fold and r.fold._assessed is None
    with pytest.raises(NotAuthorizedError):
        r.assess(signed)
    assert fold.copy()._assessed is None
