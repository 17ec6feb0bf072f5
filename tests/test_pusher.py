"""Where a pending oplog goes, and who is noted as holding what (net/push.py), sans-I/O.

Found by the simulator with two masters back from offline and not linked to
each other: a member's write signed by one master stopped one hop from it,
for good.  Its way down led to that master, which had nothing left to sign,
and the master took its author for a holder of the copy it had co-signed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from pttsync.core.lifecycle.replica import Commit
from pttsync.core.oplog import OplogStatus
from pttsync.net.lazypush import LazyPush
from pttsync.net.push import Pusher, PushRouter
from pttsync.net.routing import Routes
from pttsync.net.seen import SeenCache

TOPIC = b"\x07" * 32
ME, MASTER, OTHER_MASTER, WRITER, A, B = (bytes([i]) * 32 for i in range(1, 7))
NOW = 10**18


@dataclass(eq=False)
class FakeLink:
    peer_id: bytes


def governance() -> Any:
    """Two masters; each key is its own user."""
    return SimpleNamespace(masters_at=lambda t: {MASTER, OTHER_MASTER}, user_of=lambda key, t: key)


def pending(oid: int, *, signed_by: tuple[bytes, ...] = ()) -> Any:
    """A member's pending write, co-signed by `signed_by` (what the router reads of it)."""
    return SimpleNamespace(
        oplog_id=bytes([oid]) * 32, hash=bytes([oid, len(signed_by)]) * 16, create_time=NOW,
        update_time=NOW, creator=WRITER,
        master_sigs=tuple(SimpleNamespace(signer=s, time=NOW) for s in signed_by),
    )  # fmt: skip


def router(routes: Routes, seen: SeenCache) -> PushRouter:
    replica: Any = SimpleNamespace(fold=object())
    return PushRouter(
        TOPIC, ME, replica=replica, routes=routes, seen=seen, stats=SimpleNamespace(),
        admits=lambda peer, now: True, clock=lambda: NOW, lazy=LazyPush(lambda ids: set()),
    )  # fmt: skip


def one_hop_from_a_master() -> tuple[PushRouter, SeenCache, list[Any]]:
    """This node's way down is MASTER; A and B are further away, all in the mesh."""
    routes, seen = Routes(3, random.Random(1)), SeenCache(64)
    for p in (MASTER, A, B):
        routes.add(p)
    routes.heard(MASTER, 0, mesh=True)
    routes.heard(A, 2, mesh=True)
    routes.heard(B, 2, mesh=True)
    links: list[Any] = [FakeLink(MASTER), FakeLink(A), FakeLink(B)]
    return router(routes, seen), seen, links


def targets(r: PushRouter, seen: SeenCache, links: list[Any], oplog: Any) -> list[bytes]:
    holders = seen.holders((oplog.oplog_id, oplog.hash))
    return [ln.peer_id for ln in r._towards_master(links, links, holders, oplog, governance())]


def test_an_unsigned_pending_oplog_goes_down_towards_the_nearest_master() -> None:
    r, seen, links = one_hop_from_a_master()
    o = pending(1)
    assert targets(r, seen, links, o) == [MASTER]
    seen.holders((o.oplog_id, o.hash)).add(MASTER)
    assert targets(r, seen, links, o) == []  # on its way: the master signs it


def test_a_copy_a_master_signed_goes_over_the_mesh_not_back_to_that_master() -> None:
    r, seen, links = one_hop_from_a_master()
    o = pending(2, signed_by=(MASTER,))
    seen.holders((o.oplog_id, o.hash)).add(MASTER)  # it came from there
    # Was []: "on its way", to the master that had signed it already.
    assert sorted(targets(r, seen, links, o)) == sorted([MASTER, A, B])  # holders left out later


def test_with_no_master_reachable_a_signed_copy_waits() -> None:
    routes, seen = Routes(3, random.Random(1)), SeenCache(64)
    routes.add(A)  # A knows no master either
    o = pending(3, signed_by=(MASTER,))
    assert targets(router(routes, seen), seen, [FakeLink(A)], o) == []


def pusher(seen: SeenCache) -> Pusher:
    ctx: Any = SimpleNamespace(replica=None, topic_id=TOPIC)
    return Pusher(
        ME, ctx=ctx, seen=seen, stats=SimpleNamespace(), admits=lambda peer, now: True,
        route=lambda batch, links: None, clock=lambda: NOW, lazy=LazyPush(lambda ids: set()),
    )  # fmt: skip


def test_a_sync_peer_is_noted_as_holding_the_copy_it_sent_not_the_one_cosigned_here() -> None:
    seen = SeenCache(64)
    p = pusher(seen)
    as_sent, cosigned = pending(4), pending(5, signed_by=(ME,))
    received = {as_sent.oplog_id: as_sent.hash, cosigned.oplog_id: pending(5).hash}
    commit = Commit(
        [(as_sent, None, OplogStatus.PENDING), (cosigned, None, OplogStatus.PENDING)],
        received=received,
    )
    with p.storing_from(WRITER):
        p.after_commit(commit)
    assert WRITER in seen.holders((as_sent.oplog_id, as_sent.hash))
    # Was noted too: it never got the co-signed copy, and nobody sent it there.
    assert WRITER not in seen.holders((cosigned.oplog_id, cosigned.hash))
    assert ME in seen.holders((cosigned.oplog_id, cosigned.hash))
    assert p.queued() == 2  # both go to the router
    # Answering its request, the answer takes it the co-signed copy (receiver.py).
    answer = pending(6, signed_by=(ME,))
    with p.storing_from(WRITER, answering=True):
        p.after_commit(
            Commit([(answer, None, OplogStatus.PENDING)], received={answer.oplog_id: b"x" * 32})
        )
    assert WRITER in seen.holders((answer.oplog_id, answer.hash))
    # What a commit stored besides what the peer sent (a governance change's
    # consequences) is not taken for the peer's.
    other = pending(7)
    with p.storing_from(WRITER, answering=True):
        p.after_commit(Commit([(other, None, OplogStatus.PENDING)]))
    assert WRITER not in seen.holders((other.oplog_id, other.hash))
