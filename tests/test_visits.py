"""Visits (net/connections.py, network.md "Visits"): a round with a known peer over a
connection outside the slots, so parts of a network whose links never meet converge.

Nodes on a MemoryNetwork under trio's autojump clock.  The parts are made by
hand: one slot a node, two pairs, and one node of the second pair that knows an
address of the first only because the first refused it for lack of room.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest
import trio

from pttsync.errors import UsageError
from pttsync.net.config import NodeConfig
from pttsync.net.door import MAX_VISITS
from pttsync.net.peer import Direction

from .nethelpers import Cluster, all_agree, make_cluster, value_of, wait_until

if TYPE_CHECKING:
    from trio.testing import MockClock

    from pttsync.net.node import Node


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


async def settled_cluster(stack: AsyncExitStack) -> Cluster:
    """Four members that all hold the topic's governance (they met once, unbounded)."""
    cluster = make_cluster(4)
    async with cluster.run():
        pass
    return cluster


async def test_parts_whose_links_never_meet_converge_by_visits(autojump_clock: MockClock) -> None:
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster(stack)
        first, second = await two_parts(cluster, stack, visit_interval=60.0)
        await first[0].put("greeting", "from the first part")
        await second[1].put("answer", "from the second part")
        nodes = first + second
        with trio.fail_after(900):
            await wait_until(nodes, lambda: all_agree(nodes), limit=900)
        assert value_of(second[0], "greeting") == "from the first part"
        assert value_of(first[1], "answer") == "from the second part"
        # Visits took no slot: every node still holds its one link, to its pair.
        assert [len(n.links) for n in nodes] == [1, 1, 1, 1]
        assert first[1].peer_id in first[0].links and second[1].peer_id in second[0].links
        made = sum(n.status()["visits"]["made"] for n in nodes)
        taken = sum(n.status()["visits"]["taken"] for n in nodes)
        assert made >= 1 and taken >= 1
        # Each visit ended: nothing is left on one (the visitor closes it after its round).
        await wait_until(nodes, lambda: all(not n.connections.visits for n in nodes), limit=300)


async def test_without_visits_such_parts_stay_apart(autojump_clock: MockClock) -> None:
    """The same network with visits off (`visit_interval=0`): the second part never
    hears of the first's write (the regression the visits answer)."""
    async with AsyncExitStack() as stack:
        cluster = await settled_cluster(stack)
        first, second = await two_parts(cluster, stack, visit_interval=0)
        await first[0].put("greeting", "from the first part")
        with pytest.raises(trio.TooSlowError):
            await wait_until(second, lambda: value_of(second[0], "greeting") is not None, 1800)
        assert all(not n.connections.visited[Direction.OUTBOUND] for n in first + second)


async def test_a_visit_is_refused_to_a_linked_peer_and_past_the_visits_a_node_takes(
    autojump_clock: MockClock,
) -> None:
    """Admission at the door: a visit never replaces a link, and a node takes at most
    MAX_VISITS at once; one more is refused for lack of room, told where else to go."""
    async with AsyncExitStack() as stack:
        cluster = make_cluster(3 + MAX_VISITS)
        async with cluster.run():
            pass  # every node holds the governance
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
        hold.set()
        await wait_until(everyone, lambda: not host.connections.visits, limit=60)
        assert host.connections.visited[Direction.INBOUND] == MAX_VISITS


def test_the_visit_interval_is_checked() -> None:
    assert NodeConfig(visit_interval=0).visit_interval == 0
    for bad in (-1, 1e-9, 86401, float("nan")):
        with pytest.raises(UsageError, match="visit_interval"):
            NodeConfig(visit_interval=bad)
