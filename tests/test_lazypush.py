"""Lazy push (net/lazypush.py): the core's decisions, the wire, and real nodes.

The nodes run on the in-memory network under the autojump clock, with
anti-entropy off (an interval no test waits for), so only push and its
lazy repair can deliver.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from pttsync.errors import RemoteProtocolError
from pttsync.net.lazypush import MAX_ANNOUNCERS, MAX_QUEUED, LazyPush
from pttsync.net.node import Node
from pttsync.net.peer import Direction, PeerLink
from pttsync.net.seen import SeenCache
from pttsync.net.wire import MAX_IDS, IHave, IWant, Prune
from pttsync.net.wirecodec import decode_any, encode_node_message

from .nethelpers import all_agree, make_cluster, value_of, wait_until

NO_TIMER = 3600.0
MS = 10**6
A, B, C = b"A" * 32, b"B" * 32, b"C" * 32
X, Y = b"x" * 32, b"y" * 32


def lazy(held: frozenset[bytes] = frozenset(), timeout: int = 500 * MS) -> LazyPush:
    return LazyPush(lambda ids: {i for i in ids if i in held}, timeout=timeout, max_missing=8)


# -- the core ---------------------------------------------------------------------------


def test_prune_and_graft_move_a_link_between_eager_and_lazy() -> None:
    lp = lazy()
    assert lp.eager(A)
    assert lp.prune(A) is True and not lp.eager(A)
    assert lp.prune(A) is False  # already lazy: nothing to tell the peer
    lp.graft(A)
    assert lp.eager(A) and (lp.prunes, lp.grafts) == (1, 1)
    lp.prune(B)
    lp.forget(B)  # a peer that comes back starts eager
    assert lp.eager(B)


def test_an_announced_oplog_is_asked_for_after_the_timeout_then_from_the_next() -> None:
    lp = lazy(held=frozenset({Y}))
    lp.prune(A)
    lp.announced(A, [X, Y], now=0)  # Y is held: not waited for
    lp.announced(B, [X], now=100 * MS)
    assert lp.missing() == 1 and lp.next_deadline() == 500 * MS
    assert lp.due(499 * MS) == {}
    assert lp.due(500 * MS) == {A: [X]}  # the first announcer, and its link is grafted
    assert lp.eager(A) and lp.requested == 1
    assert lp.due(999 * MS) == {}
    assert lp.due(1000 * MS) == {B: [X]}  # still not here: the next announcer
    assert lp.due(1500 * MS) == {} and lp.missing() == 0  # nobody left: anti-entropy repairs


def test_what_arrives_is_no_longer_missing_and_its_announcements_cost_nothing() -> None:
    lookups: list[list[bytes]] = []

    def holds(ids: list[bytes]) -> set[bytes]:
        lookups.append(ids)
        return set()

    seen = SeenCache(16)
    lp = LazyPush(holds, lately=seen.valid_here, timeout=500 * MS)
    lp.announced(A, [X], now=0)
    seen.holders((X, b"h")).add(A)  # stored pending: not what was announced
    lp.announced(C, [X], now=0)
    assert lookups == [[X]] and lp.missing() == 1
    seen.holders((X, b"h2")).mark_valid()  # stored valid (the commit tells both)
    lp.arrived([X])
    assert lp.missing() == 0 and lp.due(10**12) == {}
    lp.announced(B, [X], now=0)  # it arrived lately: no store lookup, nothing to wait for
    assert lookups == [[X]] and lp.missing() == 0


def test_announced_says_what_is_held_and_arrived_who_announced_it() -> None:
    seen = SeenCache(16)
    lp = LazyPush(lambda ids: {i for i in ids if i == Y}, lately=seen.valid_here)
    seen.holders((X, b"h")).mark_valid()
    assert sorted(lp.announced(A, [X, Y, b"z" * 32], now=0)) == [X, Y]  # lately, in the store
    lp.announced(B, [b"z" * 32], now=0)
    assert lp.arrived([b"z" * 32, X]) == {b"z" * 32: [A, B]}  # the announcers not asked yet
    assert lp.arrived([b"z" * 32]) == {}


def test_missing_oplogs_and_announcers_are_bounded() -> None:
    lp = lazy()
    ids = [bytes([i]) * 32 for i in range(20)]
    lp.announced(A, ids, now=0)
    assert lp.missing() == 8  # the oldest forgotten: anti-entropy repairs them
    for peer in range(10):
        lp.announced(bytes([peer]) * 32, [ids[-1]], now=0)
    asked = [p for t in range(1, 20) for p in lp.due(t * 500 * MS)]
    assert len(set(asked)) <= MAX_ANNOUNCERS + 1


def test_announcements_go_at_once_after_a_quiet_spell_then_gathered() -> None:
    lp = LazyPush(lambda ids: set(), timeout=500 * MS, announce_every=250 * MS)
    assert lp.outbox_due() is None and lp.next_wake() is None
    lp.announce(A, (X, b"h"))
    assert lp.take_outbox(now=0) == {A: [(X, b"h")]}  # the first: at once
    lp.announce(A, (Y, b"h"))
    lp.announce(B, (Y, b"h"))
    lp.announce(A, (Y, b"h"))  # queued once
    assert lp.outbox_due() == lp.next_wake() == 250 * MS
    assert lp.take_outbox(now=249 * MS) == {}
    assert lp.take_outbox(now=250 * MS) == {A: [(Y, b"h")], B: [(Y, b"h")]}
    lp.announce(C, (X, b"h"))
    lp.announced(A, [Y], now=300 * MS)  # missing: due at 800 ms; the outbox at 500 ms
    assert lp.next_wake() == 500 * MS
    lp.forget(C)  # a peer gone: nothing is kept for it
    assert lp.outbox_due() is None and lp.next_wake() == 800 * MS
    lp.announce(C, (X, b"h"))
    assert lp.take_outbox(now=10**12) == {C: [(X, b"h")]}  # long quiet: at once


def test_the_announcement_outbox_is_bounded() -> None:
    lp = LazyPush(lambda ids: set(), timeout=500 * MS, announce_every=250 * MS)
    lp.take_outbox(now=0)
    for i in range(MAX_QUEUED + 10):
        lp.announce(A, (i.to_bytes(32, "big"), b"h"))
    assert len(lp.take_outbox(now=10**12)[A]) == MAX_QUEUED  # the rest: anti-entropy
    lp.announce(A, (X, b"h"))
    assert lp.outbox_due() is not None  # room again once they went


# -- the wire ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg", [IHave(b"T" * 32, (X, Y)), IWant(b"T" * 32, (X,)), Prune(b"T" * 32)]
)
def test_the_lazy_messages_round_trip(msg: IHave | IWant | Prune) -> None:
    assert decode_any(encode_node_message(msg)) == msg


@pytest.mark.parametrize(
    ("msg", "why"),
    [
        (IHave(b"T" * 32, ()), "at least one"),
        (IWant(b"T" * 32, (b"short",)), "must be 32 bytes, not 5"),
        (IHave(b"T" * 32, (X,) * (MAX_IDS + 1)), "over the limit of 256"),
        (IWant(b"T" * 31, (X,)), "must be 32 bytes, not 31"),
    ],
)
def test_bad_lazy_messages_are_protocol_errors(msg: IHave | IWant, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        decode_any(encode_node_message(msg))


# -- real nodes -------------------------------------------------------------------------


async def cut_from_the_tree(nodes: list[Node]) -> Node:
    """Every peer connected to every other (so no new connection, and its sync round,
    can bring a write instead), then every link of one peer lazy on both ends: the
    victim hears of writes only by IHave."""

    def still(n: Node) -> bool:  # linked to all, and the round each link it dialed starts, over
        rt = n.topic()
        begun = rt.stats.rounds >= n.connections.opened[Direction.OUTBOUND]
        running = any(map(rt.round_running, n.links))
        return len(n.links) == len(nodes) - 1 and begun and not running

    await wait_until(nodes, lambda: all(still(n) for n in nodes), limit=60)
    victim = nodes[3]
    for n in nodes:
        for peer_id in list(n.links):
            if n is victim or peer_id == victim.peer_id:
                n.topic().lazy.prune(peer_id)
    return victim


async def test_pushes_thin_out_to_a_tree_and_every_write_still_arrives(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(7)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        master = nodes[0]
        for i in range(40):  # the master's writes are valid at once
            await master.put(f"w{i}", i)
            await trio.sleep(0.2)
        await wait_until(nodes, lambda: all(value_of(n, "w39") == 39 for n in nodes), limit=30)
        await wait_until(nodes, lambda: all_agree(nodes), limit=30)
        received = sum(n.topic().stats.push_received for n in nodes[1:])
        # Without lazy push each peer got a copy from most of its mesh peers.
        assert received / (40 * 6) <= 1.5
        assert sum(n.topic().lazy.prunes for n in nodes) > 0
        assert sum(n.topic().stats.announced for n in nodes) > 0


async def test_a_peer_cut_from_the_tree_gets_writes_by_asking(autojump_clock: MockClock) -> None:
    """Every link of one peer lazy, on both ends: a write reaches it by IHave, then IWant
    after the timeout (the graft), with anti-entropy off."""
    cluster = make_cluster(5)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        victim = await cut_from_the_tree(nodes)
        start = trio.current_time()
        await nodes[0].put("late", "news")
        await wait_until(nodes, lambda: value_of(victim, "late") == "news", limit=10)
        assert trio.current_time() - start < 3  # announced, asked for: no anti-entropy round
        rt = victim.topic()
        assert rt.lazy.requested >= 1 and rt.lazy.grafts >= 1


async def test_a_stream_of_writes_is_announced_in_fewer_messages_than_ids(
    autojump_clock: MockClock,
) -> None:
    """Announcements are gathered: one `IHave` per lazy link per quarter second
    carries every write of it, and each write still arrives within seconds."""
    cluster = make_cluster(5)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        victim = await cut_from_the_tree(nodes)
        rt = victim.topic()
        heard: list[int] = []
        on_ihave = rt.on_ihave

        def counting(link: PeerLink, msg: IHave) -> None:
            heard.append(len(msg.ids))
            on_ihave(link, msg)

        rt.on_ihave = counting  # type: ignore[method-assign]
        start = trio.current_time()
        for i in range(6):  # one every 0.1 s: each its own push batch
            await nodes[0].put(f"burst{i}", i)
            await trio.sleep(0.1)
        await wait_until(nodes, lambda: value_of(victim, "burst5") == 5, limit=10)
        assert trio.current_time() - start < 3
        assert len(heard) < sum(heard)  # some announcement carried more than one write


async def test_an_announcement_for_an_unknown_topic_breaks_the_protocol(
    autojump_clock: MockClock,
) -> None:
    from pttsync.net.dispatch import Dispatcher  # noqa: PLC0415 - one test

    cluster = make_cluster(2)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        node = nodes[0]
        link = next(iter(node.links.values()))
        dispatcher = Dispatcher(
            node.peer_id, topics=node.topics, book=node.book, book_changed=lambda: None
        )
        with pytest.raises(RemoteProtocolError, match="never listed"):
            dispatcher.handle(link, IHave(b"?" * 32, (X,)), 0.0)


async def test_a_peer_that_announced_an_oplog_is_not_announced_it_back(
    autojump_clock: MockClock,
) -> None:
    """Both ends of a lazy link used to announce every oplog to each other.  An
    announcement says its sender holds the oplog, valid: whether it comes before
    the copy (the announcer waits to be asked) or after, the sender is noted as a
    holder, and announcements and pushes leave it out."""
    from pttsync.core.oplogcodec import encode_oplog  # noqa: PLC0415 - one test

    cluster = make_cluster(3)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        await wait_until(nodes, lambda: all(len(n.links) == 2 for n in nodes), limit=60)
        master, member, other = nodes
        rt = member.topic()
        link = member.links[other.peer_id]
        for i, before in enumerate((True, False)):
            oplog, _ = master.topic().replica.create(
                object_id=f"doc{i}".encode(), op=1, value={"v": i}, now=master.clock()
            )
            key = (oplog.oplog_id, oplog.hash)
            announce = IHave(rt.topic_id, (oplog.oplog_id,))
            if before:
                rt.on_ihave(link, announce)  # lacking it: waits for it, from `other`
                assert rt.lazy.missing() == 1
            rt.ctx.handler.handle_oplogs([encode_oplog(oplog)], member.clock())
            if not before:
                assert other.peer_id not in (rt.seen.get(key) or ())
                rt.on_ihave(link, announce)  # holding it already
            holders = rt.seen.get(key)
            assert holders is not None and other.peer_id in holders
            assert rt.lazy.missing() == 0


async def test_a_pending_copy_does_not_count_as_holding_an_announced_valid_one(
    autojump_clock: MockClock,
) -> None:
    """Was: a peer on a member write's pending route held its pending copy, took the
    announcement of the co-signed, valid one as "held", and waited for anti-entropy
    (p99 spread 8.6 s at 300 simulated peers, from 0.6 s)."""
    from pttsync.core.oplog import OplogStatus  # noqa: PLC0415 - two tests
    from pttsync.net.wire import IHave as Announce  # noqa: PLC0415

    cluster = make_cluster(3)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        member, other = nodes[1], nodes[2]
        oplog = member.topic().replica.create(
            object_id=b"doc", op=1, value={"v": 1}, now=member.clock()
        )[0]
        rt = other.topic()
        rt.ctx.store.write_batch(rt.topic_id, [(oplog, OplogStatus.PENDING)])
        link = other.links[nodes[0].peer_id]
        rt.on_ihave(link, Announce(rt.topic_id, (oplog.oplog_id,)))
        assert rt.lazy.missing() == 1  # it waits for the valid copy, and asks if need be
