"""Visits (net/connections.py, network.md "Visits"): a round with a known peer over a
connection outside the slots, so parts of a network whose links never meet converge.

Nodes on a MemoryNetwork under trio's autojump clock.  The parts are made by
hand: one slot a node, two pairs, and one node of the second pair that knows an
address of the first only because the first refused it for lack of room.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

import pytest
import trio

from pttsync.errors import UsageError
from pttsync.net.config import NodeConfig
from pttsync.net.door import MAX_VISITS, VISIT_GRACE, Door
from pttsync.net.node import MAX_VISIT_BACKOFF
from pttsync.net.peer import Direction
from pttsync.net.refusals import Refusals
from pttsync.net.wire import Hello, Peers

from .nethelpers import Cluster, all_agree, make_cluster, value_of, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from trio.testing import MockClock

    from pttsync.net.node import Node
    from pttsync.net.peer import PeerLink

TOPIC_ID = b"\x07" * 32


async def two_parts(
    cluster: Cluster, stack: AsyncExitStack, **changes: Any
) -> tuple[list[Node], list[Node]]:
    """Nodes {0, 1} and {2, 3}, one slot each, linked within their pair only; node 3
    joins 0 and 2, and 0, full, refuses it (and names 1 as it does)."""
    n0, n2 = [
        await stack.enter_async_context(cluster.node(i, max_peers=1, **changes)) for i in (0, 2)
    ]
    n1 = await stack.enter_async_context(
        cluster.node(1, max_peers=1, join=(cluster.address(0),), **changes)
    )
    await wait_until([n0, n1], lambda: len(n0.links) == len(n1.links) == 1, limit=30)
    n3 = await stack.enter_async_context(
        cluster.node(3, max_peers=1, join=(cluster.address(0), cluster.address(2)), **changes)
    )
    await wait_until([n2, n3], lambda: len(n2.links) == len(n3.links) == 1, limit=60)
    assert n1.peer_id in n0.links and n3.peer_id in n2.links
    return [n0, n1], [n2, n3]


async def settled_cluster(n: int = 4) -> Cluster:
    """`n` members that all hold the topic's governance (they met once, unbounded)."""
    cluster = make_cluster(n)
    async with cluster.run():
        pass
    return cluster


async def test_parts_whose_links_never_meet_converge_by_visits(autojump_clock: MockClock) -> None:
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster()
        first, second = await two_parts(cluster, stack, visit_interval=60.0)
        await first[0].put("greeting", "from the first part")
        await second[1].put("answer", "from the second part")
        nodes = first + second
        await wait_until(nodes, lambda: all_agree(nodes), limit=900)
        assert value_of(second[0], "greeting") == "from the first part"
        assert value_of(first[1], "answer") == "from the second part"
        # Visits took no slot: every node still holds its one link, to its pair.
        assert [len(n.links) for n in nodes] == [1, 1, 1, 1]
        assert first[1].peer_id in first[0].links and second[1].peer_id in second[0].links
        made = sum(n.status()["visits"]["made"] for n in nodes)
        taken = sum(n.status()["visits"]["taken"] for n in nodes)
        assert made >= 1 and taken >= 1
        # What a node passes on in `Peers` is the peers it was linked to, not those it
        # visited or was visited by (they grew every node's `Peers` for good).  (Node
        # 3 did reach 0: its own door let 0 in, before 0's Bye for lack of room.)
        for n in nodes[:3]:
            assert {p for p, _ in n.book.known(64)} <= set(n.links), n
        # Each visit ended: nothing is left on one (the visitor closes it after its round).
        await wait_until(nodes, lambda: all(not n.connections.visits for n in nodes), limit=300)


async def test_visits_that_find_nothing_back_off_and_news_brings_them_back(
    autojump_clock: MockClock,
) -> None:
    """Trickle (RFC 6206): a visit that moved no oplog doubles the wait for the next, up
    to MAX_VISIT_BACKOFF intervals; one that moved any brings it back to one."""
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster()
        first, second = await two_parts(cluster, stack, visit_interval=60.0, sync_interval=60)
        nodes = first + second
        heard: list[tuple[int, bool]] = []
        for i, n in enumerate(nodes):

            def record(news: bool, i: int = i, was: Any = n.connections._visited) -> None:
                heard.append((i, news))
                was(news)

            n.connections._visited = record
        await trio.sleep(2 * 3600)  # a converged network, idle
        quiet = len(heard)
        # Every 60 s, four nodes would make 480 visits; with the backoff one a
        # quarter hour each once it is reached (60 + 120 + ... + 960 s first).
        assert 4 * 6 <= quiet <= 4 * 16, quiet
        assert not any(news for _, news in heard)
        assert all(n._visit_backoff == MAX_VISIT_BACKOFF for n in nodes)
        await first[0].put("greeting", "news")
        await wait_until(nodes, lambda: all_agree(nodes), limit=3 * 3600)
        movers = {i for i, news in heard[quiet:] if news}
        assert movers and all(nodes[i]._visit_backoff <= 2 for i in movers)


async def test_an_oplog_waiting_for_a_master_cuts_a_stranded_nodes_backoff_short(
    autojump_clock: MockClock,
) -> None:
    """A node with no way to a master backs its visits off like any (a visit brings it
    nothing); once an oplog waits on it for the master's signature, the backed-off wait
    is cut short and its next visit goes to the master, which signs.  (The master and
    its one peer are full: no dial reaches it; node.py, `_visits`.)"""
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster()
        first, second = await two_parts(cluster, stack, visit_interval=60.0, sync_interval=10.0)
        master, writer = first[0], second[1]
        await trio.sleep(2 * 3600)  # idle: every visit finds nothing
        assert writer._visit_backoff == MAX_VISIT_BACKOFF
        assert writer._masters_wanted == {master.peer_id}  # no way to the master
        taken = master.status()["visits"]["taken"]
        await writer.put("late", "to be signed by the master")
        assert writer.pending_count() == 1
        # Found stuck within two anti-entropy ticks or so, then one visit interval at
        # most (90 s), not what was left of the backed-off wait (up to 24 minutes).
        await wait_until([writer], lambda: writer.pending_count() == 0, limit=180)
        assert master.status()["visits"]["taken"] == taken + 1
        assert value_of(master, "late") == "to be signed by the master"


async def test_without_visits_such_parts_stay_apart(autojump_clock: MockClock) -> None:
    """The same network with visits off (`visit_interval=0`): the second part never
    hears of the first's write (the regression the visits answer)."""
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster()
        first, second = await two_parts(cluster, stack, visit_interval=0)
        await first[0].put("greeting", "from the first part")
        with pytest.raises(trio.TooSlowError):
            await wait_until(second, lambda: value_of(second[0], "greeting") is not None, 1800)
        assert all(not n.connections.visited[Direction.OUTBOUND] for n in first + second)


async def test_a_visit_is_refused_to_a_linked_peer_and_past_the_visits_a_node_takes(
    autojump_clock: MockClock,
) -> None:
    """Admission at the door: a visit never replaces a link, and a node takes at most
    MAX_VISITS at once; one more is refused for lack of room, told where else to go,
    until the held visits are past VISIT_GRACE: then a newcomer displaces the oldest."""
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster(4 + MAX_VISITS)
        one_slot = {"max_peers": 1, "visit_interval": 0}
        host = await stack.enter_async_context(cluster.node(0, **one_slot))
        linked = await stack.enter_async_context(
            cluster.node(1, join=(cluster.address(0),), **one_slot)
        )
        await wait_until([host, linked], lambda: len(host.links) == 1, limit=30)
        # A visit to a linked peer (dialed at an address not known as its) is turned
        # away: they are connected already, and the link stays.
        assert host.dialer.visit(cluster.address(1), None)
        await wait_until([host, linked], lambda: host.dialer.visiting is None, limit=60)
        assert list(host.links) == [linked.peer_id] and list(linked.links) == [host.peer_id]
        assert linked.connections.visited[Direction.INBOUND] == 0
        # Visitors whose rounds never end hold the host's visits; the last is refused.
        visitors = [
            await stack.enter_async_context(cluster.node(i, **one_slot))
            for i in range(2, 3 + MAX_VISITS)
        ]
        hold = trio.Event()

        async def endless(rt: object, link: object) -> bool:
            await hold.wait()
            return True

        for v in visitors:
            v.connections._run_round = endless  # the visitor's round, held open
            assert v.dialer.visit(cluster.address(0), host.peer_id)
        everyone = [host, linked, *visitors]
        await wait_until(
            everyone, lambda: any(v.dialer.visiting is None for v in visitors), limit=60
        )
        assert len(host.connections.visits) == MAX_VISITS
        assert sum(v.dialer.visiting is None for v in visitors) == 1
        (refusal,) = host.refusals.recent(host.clock())
        assert refusal.reason == f"too many visits (at most {MAX_VISITS})"
        assert list(host.links) == [linked.peer_id]  # no slot was taken
        # Past the grace, a newcomer displaces the oldest held visit (not a violation).
        await trio.sleep(VISIT_GRACE)
        newcomer = await stack.enter_async_context(cluster.node(3 + MAX_VISITS, **one_slot))
        newcomer.connections._run_round = endless
        assert newcomer.dialer.visit(cluster.address(0), host.peer_id)
        everyone.append(newcomer)
        await wait_until(everyone, lambda: host.status()["visits"]["displaced"] == 1, limit=60)
        assert len(host.connections.visits) == MAX_VISITS
        assert newcomer.peer_id in {v.peer_id for v in host.connections.visits.values()}
        assert host.violations == 0 and all(v.violations == 0 for v in visitors)
        hold.set()
        await wait_until(everyone, lambda: not host.connections.visits, limit=60)
        assert host.connections.visited[Direction.INBOUND] == MAX_VISITS + 1


def test_the_visit_interval_is_checked() -> None:
    assert NodeConfig(visit_interval=0).visit_interval == 0
    for bad in (-1, 1e-9, 86401, float("nan")):
        with pytest.raises(UsageError, match="visit_interval"):
            NodeConfig(visit_interval=bad)


class _Runtime:
    """A topic whose governance admits everyone (all the door asks of it here)."""

    def admits(self, peer_id: bytes, now: int) -> bool:
        return True


class _Link:
    """What the door reads and sets on a connection."""

    def __init__(self, peer: int, direction: Direction, *, visit: bool = False) -> None:
        self.peer_id = bytes([peer]) * 32
        self.direction = direction
        self.initiator = self.peer_id if direction is Direction.INBOUND else b"\x00" * 32
        self.address = self.listen = f"peer{peer}:1"
        self.agent = ""
        self.visit = visit
        self.topics: frozenset[bytes] = frozenset()
        self.refused = False
        self.sent: list[object] = []
        self.started = 0.0
        self.closed_for = ""

    def try_send(self, msg: object) -> bool:
        self.sent.append(msg)
        return True

    def close(self, reason: str) -> None:
        self.closed_for = self.closed_for or reason


def _door(
    links: dict[bytes, Any], visits: dict[int, Any], now: Callable[[], float] = lambda: 0.0
) -> Door:
    return Door(
        b"\x00" * 32, topics={TOPIC_ID: _Runtime()}, links=links,  # type: ignore[dict-item]
        scopes={}, visits=visits, max_peers=1, clock=lambda: 0, listen_address=lambda: None,
        drop=lambda link: visits.pop(id(link), None), peers_message=lambda link: Peers(()),
        refusals=Refusals(), monotonic=now,
    )  # fmt: skip


def _hello(*, visit: bool = False) -> Hello:
    return Hello("", (TOPIC_ID,), "test", (), visit)


def _admit(door: Door, link: _Link, hello: Hello) -> tuple[int, str] | None:
    return door.admit(cast("PeerLink", link), hello)


def test_the_door_keeps_one_connection_a_peer_visits_included() -> None:
    """A visit is let in whatever the slots, never beside another connection of its
    peer (a peer's round state is kept by its ID, and a connection's end forgets it:
    a link let in beside a visit broke the visit's round, closed as a violation:
    `--peers 20 --writes 40 --seed 919 --write-by members --late 1 --no-push
    --bandwidth 256k`), and at most MAX_VISITS at once."""
    linked = _Link(1, Direction.INBOUND)
    links: dict[bytes, Any] = {linked.peer_id: linked}
    visits: dict[int, Any] = {}
    door = _door(links, visits)
    assert _admit(door, _Link(2, Direction.INBOUND), _hello()) == (0, "too many peers (at most 1)")
    guest = _Link(2, Direction.INBOUND)
    assert _admit(door, guest, _hello(visit=True)) is None and guest.visit  # slots are full
    visits[id(guest)] = guest
    again = _admit(door, _Link(2, Direction.OUTBOUND, visit=True), _hello())
    assert again == (0, "already connected")  # our visit to a peer visiting us
    del links[linked.peer_id]  # a free slot: the visiting peer's link still waits
    assert _admit(door, _Link(2, Direction.INBOUND), _hello()) == (
        0, "already connected (on a visit)",
    )  # fmt: skip
    links[linked.peer_id] = linked
    assert _admit(door, _Link(1, Direction.INBOUND), _hello(visit=True)) == (0, "already connected")
    for peer in range(3, 3 + MAX_VISITS):
        v = _Link(peer, Direction.INBOUND)
        if _admit(door, v, _hello(visit=True)) is None:
            visits[id(v)] = v
    assert len(visits) == MAX_VISITS
    last = _Link(9, Direction.INBOUND)
    assert _admit(door, last, _hello(visit=True)) == (0, f"too many visits (at most {MAX_VISITS})")
    assert last.sent == [Peers(())]  # told where else to go
    ours = _Link(10, Direction.OUTBOUND, visit=True)  # our own visit is not theirs to count
    assert _admit(door, ours, _hello()) is None


def test_a_visit_past_its_grace_is_displaced_by_a_newer_one() -> None:
    """A visitor that stalls holds its place only until somebody else comes after
    VISIT_GRACE: the oldest visit past it is closed for the newer one; within the
    grace the newcomer is refused, and the oldest goes first."""
    clock = [0.0]
    visits: dict[int, Any] = {}
    door = _door({}, visits, now=lambda: clock[0])
    held = [_Link(3 + i, Direction.INBOUND) for i in range(MAX_VISITS)]
    for i, v in enumerate(held):
        v.started = float(i)  # the first came first
        assert _admit(door, v, _hello(visit=True)) is None
        visits[id(v)] = v
    clock[0] = VISIT_GRACE - 0.5  # the oldest is still within its grace
    early = _Link(20, Direction.INBOUND)
    assert _admit(door, early, _hello(visit=True)) == (0, f"too many visits (at most {MAX_VISITS})")
    assert not any(v.closed_for for v in held) and door.visits_displaced == 0
    clock[0] = VISIT_GRACE  # now it is past it
    late = _Link(21, Direction.INBOUND)
    late.started = clock[0]
    assert _admit(door, late, _hello(visit=True)) is None
    visits[id(late)] = late
    assert held[0].closed_for == "a visit of 10 s displaced by a newer one"
    assert id(held[0]) not in visits and all(not v.closed_for for v in held[1:])
    assert door.visits_displaced == 1 and len(visits) == MAX_VISITS
    ours = _Link(22, Direction.OUTBOUND, visit=True)  # our own visits displace nothing
    assert _admit(door, ours, _hello()) is None and door.visits_displaced == 1


async def test_a_node_that_dials_its_own_address_marks_it_and_blames_nobody(
    autojump_clock: MockClock,
) -> None:
    """An address that turns out to be this node's (a peer named it, or --join did,
    under another form than the node knows): no violation, and never dialed or
    visited again.  A visit could draw such an entry once a minute."""
    cluster = make_cluster(1)
    async with cluster.node(0) as node:
        mine = cluster.address(0)
        alias = "alias-of-" + mine  # the same listener under a name the node cannot tell
        cluster.network._listeners[alias] = cluster.network._listeners[mine]
        node.book.add(alias)
        node.dialer.wake()
        entry = node.book.get(alias)
        assert entry is not None
        await wait_until(node, lambda: entry.peer_id == node.peer_id, limit=30)
        assert node.violations == 0 and entry.next_try == float("inf")
        dials = cluster.network.connections
        await trio.sleep(300)  # five visits' time: it is no candidate for them either
        assert cluster.network.connections == dials
        assert node.violations == 0 and node.status()["visits"]["made"] == 0
