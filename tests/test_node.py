"""The node on an in-memory network under the autojump clock: push, anti-entropy, catch-up."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from pttsync.core.lifecycle.governance import Role
from pttsync.core.oplog import OplogStatus
from pttsync.net.connections import PEERS_REFRESH
from pttsync.net.peer import PeerLink
from pttsync.net.wire import Peers
from pttsync.synthetic import populate

from .nethelpers import SECOND, T0, all_agree, digest, make_cluster, value_of, wait_until

NO_TIMER = 3600.0  # an anti-entropy interval no test waits for (and no visits): only push delivers


async def test_a_write_on_any_peer_reaches_all_by_push(autojump_clock: MockClock) -> None:
    cluster = make_cluster(4)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as nodes:
        await wait_until(nodes, lambda: all_agree(nodes), limit=30)
        start = trio.current_time()
        for i, node in enumerate(nodes):
            await node.put(f"from-{i}", {"peer": i})
        # Members' writes need the master's signature: pushed to it, signed, pushed back.
        await wait_until(
            nodes,
            lambda: all(value_of(n, f"from-{i}") == {"peer": i} for n in nodes for i in range(4)),
            limit=30,
        )
        assert trio.current_time() - start < 1  # no timer ran: push alone
        assert all_agree(nodes)
        assert sum(n.topic().stats.pushed for n in nodes) > 0


async def test_anti_entropy_alone_converges_with_push_disabled(autojump_clock: MockClock) -> None:
    cluster = make_cluster(4)
    async with cluster.run(push=False, sync_interval=5.0) as nodes:
        for i, node in enumerate(nodes):
            await node.put(f"k{i}", i)
        await wait_until(
            nodes, lambda: all(value_of(n, f"k{i}") == i for n in nodes for i in range(4))
        )
        await wait_until(nodes, lambda: all_agree(nodes))
        assert sum(n.topic().stats.pushed for n in nodes) == 0
        assert all(n.topic().stats.rounds_completed > 0 for n in nodes)


async def test_a_peer_down_during_writes_catches_up_after_restart(
    autojump_clock: MockClock,
) -> None:
    """go-pttai's e2e "device sleep": peer 2 sleeps while the others write."""
    cluster = make_cluster(3)
    async with cluster.node(0) as a, cluster.node(1, join=(a.listen_address,)) as b:
        async with cluster.node(2, join=(a.listen_address,)) as c:
            await wait_until([a, b, c], lambda: all_agree([a, b, c]), limit=60)
        for i in range(20):
            await (a if i % 2 else b).put(f"while-asleep-{i}", i)
        await wait_until([a, b], lambda: all_agree([a, b]), limit=60)
        assert value_of(a, "while-asleep-19") == 19
        async with cluster.node(2, join=(a.listen_address,)) as c:
            await wait_until([a, b, c], lambda: all_agree([a, b, c]), limit=60)
            assert all(value_of(c, f"while-asleep-{i}") == i for i in range(20))


async def test_a_late_joiner_gets_the_whole_history(autojump_clock: MockClock) -> None:
    cluster = make_cluster(3)
    # Two years of history, written before the late peer ever ran.
    populate(
        cluster.stores[0], cluster.identities[0], cluster.topic_id,
        count=3000, start=T0 - 2 * 365 * 24 * 3600 * SECOND, end=T0 - 3600 * SECOND, seed=5,
    )  # fmt: skip
    async with cluster.node(0) as a, cluster.node(1, join=(a.listen_address,)) as b:
        await wait_until([a, b], lambda: all_agree([a, b]), limit=120)
        await b.put("recent", "yes")
        await wait_until([a, b], lambda: all_agree([a, b]), limit=120)
        async with cluster.node(2, join=(b.listen_address,)) as late:
            await wait_until([a, b, late], lambda: all_agree([a, b, late]), limit=120)
            assert value_of(late, "recent") == "yes"
            assert late.store.count(cluster.topic_id, OplogStatus.VALID) >= 3000


async def test_peer_exchange_connects_everyone_from_one_address(autojump_clock: MockClock) -> None:
    cluster = make_cluster(5)
    async with cluster.run() as nodes:
        await wait_until(nodes, lambda: all(len(n.links) == 4 for n in nodes), limit=120)


async def test_peer_exchange_tells_a_peer_news_not_the_same_addresses_at_every_tick(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`Peers` at an anti-entropy tick only with news for that peer (an address
    reached since it was last told), or after PEERS_REFRESH without: a settled
    network's ticks sent the same addresses every time, more bytes than its rounds."""
    told: list[tuple[bytes, bytes, Peers]] = []  # (sender, receiver, message)
    real = PeerLink.try_send

    def spy(link: PeerLink, msg: Any) -> bool:
        if isinstance(msg, Peers):
            told.append((link.local_id, link.peer_id, msg))
        return real(link, msg)

    monkeypatch.setattr(PeerLink, "try_send", spy)
    cluster = make_cluster(4)
    quick: dict[str, Any] = {"sync_interval": 5.0, "visit_interval": 0}
    async with cluster.run(3, **quick) as nodes:
        await wait_until(nodes, lambda: all(len(n.links) == 2 for n in nodes), limit=120)
        await trio.sleep(120)  # every link's first ticks: what each node reached since
        told.clear()
        await trio.sleep(1200)  # 240 ticks a node
        assert told == []
        first, ids = nodes[0], [n.peer_id for n in nodes]
        async with cluster.node(3, join=(first.listen_address,), **quick) as late:

            def news_reached(receiver: bytes) -> bool:
                return any(
                    s == first.peer_id and r == receiver and late.peer_id in dict(m.peers)
                    for s, r, m in told
                )

            # The first node reached the newcomer: its other peers hear of it at a tick.
            await wait_until([*nodes, late], lambda: all(map(news_reached, ids[1:])), limit=120)
            await trio.sleep(120)
            told.clear()
            await trio.sleep(PEERS_REFRESH - 300)
            assert told == []  # nothing new
            # Each link's first tick past PEERS_REFRESH: a new draw.
            redrawn = {(first.peer_id, p) for p in [*ids[1:], late.peer_id]}
            await wait_until(
                [*nodes, late], lambda: redrawn <= {(s, r) for s, r, _ in told}, limit=600
            )
            pairs = {(s, r) for s, r, _ in told}
            assert len(told) <= 2 * len(pairs)  # one new draw a link, not one a tick


async def test_max_peers_is_respected_and_the_network_still_converges(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(8)
    async with cluster.run(max_peers=4, sync_interval=5.0) as nodes:
        await nodes[5].put("x", 1)
        await wait_until(nodes, lambda: all(value_of(n, "x") == 1 for n in nodes), limit=300)
        assert all(len(n.links) <= 4 for n in nodes)


async def test_a_non_member_can_neither_pull_nor_push(autojump_clock: MockClock) -> None:
    cluster = make_cluster(3, members=1)  # peer 2 is not admitted
    async with cluster.run(2) as (a, b):
        await a.put("secret", 1)
        async with cluster.node(2, join=(a.listen_address, b.listen_address)) as outsider:
            group = [a, b, outsider]
            await wait_until(group, lambda: all(n.topic().stats.refused for n in (a, b)))
            await wait_until(group, lambda: not outsider.links)
            # It saw the members' credentials (their admissions), and nothing else.
            assert outsider.get("secret") is None
            assert not outsider.store.by_op_range(cluster.topic_id, 0, 0x100)
            # The one round served is the members' own (the dialer starts it): none for it.
            assert a.topic().stats.rounds_served + b.topic().stats.rounds_served == 1
        assert len(a.links) == 1 and value_of(b, "secret") == 1


async def test_a_member_write_is_cosigned_by_push_alone(autojump_clock: MockClock) -> None:
    cluster = make_cluster(2)
    async with cluster.run(sync_interval=NO_TIMER, visit_interval=0) as (master, member):
        await wait_until([master, member], lambda: all_agree([master, member]), limit=30)
        write = await member.put("note", "hi")
        assert member.get("note") is not None and member.get("note").pending  # type: ignore[union-attr]
        await wait_until(member, lambda: value_of(member, "note") == "hi", limit=5)
        assert member.documents().write_status(write.oplog_id).value == "confirmed"


async def test_a_removed_member_is_shut_out(autojump_clock: MockClock) -> None:
    cluster = make_cluster(3)
    async with cluster.run(sync_interval=5.0) as (a, b, c):
        await wait_until([a, b, c], lambda: all(len(n.links) == 2 for n in (a, b, c)), limit=60)
        refused = a.topic().stats.refused
        await a.set_role(c.peer_id, Role.NONE)
        # Both members close c's connection as soon as they know; c learns nothing more.
        await wait_until([a, b, c], lambda: not c.links, limit=60)
        assert not b.topic().admits(c.peer_id) and b.topic().admits(a.peer_id)
        assert len(a.links) == len(b.links) == 1
        # c dials again (backed off) and is refused at the door.
        await wait_until([a, b, c], lambda: a.topic().stats.refused > refused, limit=600)
        assert not a.topic().admits(c.peer_id)


async def test_nodes_keep_digests_equal_under_concurrent_writes(autojump_clock: MockClock) -> None:
    cluster = make_cluster(4)
    async with cluster.run(sync_interval=5.0) as nodes:
        async with trio.open_nursery() as nursery:
            for i, node in enumerate(nodes):

                async def writer(node=node, i=i) -> None:  # type: ignore[no-untyped-def]
                    for w in range(10):
                        await node.put(f"shared-{w % 3}", [i, w])
                        await trio.sleep(0.01 * (i + 1))

                nursery.start_soon(writer)
        await wait_until(nodes, lambda: all_agree(nodes), limit=300)
        states = [[n.get(f"shared-{k}") for k in range(3)] for n in nodes]
        assert all(s == states[0] for s in states)
        assert len({digest(n) for n in nodes}) == 1


async def test_pushes_are_paced_under_a_stream_of_writes(autojump_clock: MockClock) -> None:
    cluster = make_cluster(2)
    quiet: dict[str, Any] = {"sync_interval": NO_TIMER, "visit_interval": 0}
    async with cluster.run(**quiet, push_every=1.0) as (master, member):
        await trio.sleep(5)  # a quiet spell
        start = trio.current_time()
        await master.put("first", 1)
        await wait_until(member, lambda: value_of(member, "first") == 1, limit=5)
        assert trio.current_time() - start < 0.5  # after a quiet spell: at once
        pushes = member.links[master.peer_id].stats.messages_received
        await master.put("second", 2)
        await master.put("third", 3)
        await wait_until(member, lambda: value_of(member, "third") == 3, limit=5)
        assert trio.current_time() - start >= 1.0  # the next batch waited its turn
        assert value_of(member, "second") == 2
        assert member.links[master.peer_id].stats.messages_received == pushes + 1  # together
