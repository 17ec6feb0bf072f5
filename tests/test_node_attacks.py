"""Resource attacks by a hostile peer: each is bounded, and the node keeps serving.

Each test runs a cluster on the memory network under the autojump clock,
plays the attacker by hand against one node, and checks that the node stays
up, keeps serving its honest peers, closes or backs off the attacker where
it should, and that the per-peer state the attack aims at stays within its
bound (network.md, "Resource bounds against a hostile peer", lists them).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio
import trio.testing
from trio.testing import MockClock

from pttsync.core.identity import Identity
from pttsync.core.oplog import create_oplog
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.sync.frames import MAX_FRAME_SIZE
from pttsync.core.sync.msgcodec import encode_message
from pttsync.core.sync.receiver import RECENT_ROUNDS
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import SyncContext
from pttsync.errors import ConnectionLostError, RemoteProtocolError
from pttsync.net.addressbook import DEFAULT_MAX_ENTRIES
from pttsync.net.dispatch import MAX_REFUSED_PUSHED
from pttsync.net.network import MemoryNetwork
from pttsync.net.transport import SecureChannel, secure_handshake
from pttsync.net.wire import MAX_PEERS_LISTED, Hello, Peers, Push
from pttsync.net.wirecodec import encode_node_message

from .nethelpers import T0, Cluster, make_cluster, value_of, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from pttsync.net.node import Node


class OneHostNetwork(MemoryNetwork):
    """A memory network whose connections made while `host` is set all come from that host."""

    host: str | None = None

    async def connect(self, address: str) -> trio.abc.Stream:
        if self.host is None:
            return await super().connect(address)
        await trio.lowlevel.checkpoint()
        nursery, handler = self._listeners[address]
        client, server = self.pipe()
        self.connections += 1
        nursery.start_soon(handler, server, f"{self.host}:{self.connections}")
        return client


async def _still_healthy(nodes: list[Node], key: str, *, links: int | None = 2) -> None:
    """Node 0 has its `links` and a write still reaches everyone."""
    assert links is None or len(nodes[0].links) == links
    await nodes[1].put(key, "ok")
    await wait_until(nodes, lambda: all(value_of(n, key) == "ok" for n in nodes), limit=30)


async def _connect(cluster: Cluster, identity: Identity, i: int = 0) -> SecureChannel:
    stream = await cluster.network.connect(cluster.address(i))
    return await secure_handshake(stream, identity, initiator=True)


async def _join(cluster: Cluster, identity: Identity, i: int = 0) -> SecureChannel:
    """A member's connection to node i, past the handshake and its Hello."""
    channel = await _connect(cluster, identity, i)
    await channel.send_frame(encode_node_message(Hello("", (cluster.topic_id,))))
    return channel


async def _closed_by_node(channel: SecureChannel, limit: float = 60) -> None:
    with trio.fail_after(limit):
        while True:
            try:
                if await channel.receive_frame() is None:
                    return
            except (ConnectionLostError, RemoteProtocolError):
                return


async def _drain(channel: SecureChannel, *, task_status: trio.TaskStatus[None]) -> None:
    """Read and ignore whatever the node sends (an attacker that reads)."""
    task_status.started()
    try:
        while await channel.receive_frame() is not None:
            pass
    except (ConnectionLostError, RemoteProtocolError):
        pass


async def _until(predicate: Callable[[], bool], limit: float = 60) -> None:
    """Poll `predicate` (state no node change wakes up on), with a deadline."""
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - nothing to wait on: poll, under the deadline
            await trio.sleep(0.1)


# -- slowloris ---------------------------------------------------------------------------


async def test_a_trickle_during_the_handshake_is_closed_at_the_timeout(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(3)
    async with cluster.run() as nodes:
        stream = await cluster.network.connect(cluster.address(0))
        start = trio.current_time()
        with trio.fail_after(60):
            try:  # a 32-byte first message (its length, then the key), a byte a second
                for byte in b"\x00\x20" + b"\x01" * 31:
                    await stream.send_all(bytes([byte]))
                    await trio.sleep(1)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            while await stream.receive_some(1024):
                pass
        assert 10 <= trio.current_time() - start <= 11  # the timeout (+ the sender's 1 s nap)
        await _until(lambda: nodes[0].gate.held == {})
        await _still_healthy(nodes, "after-trickle-handshake")


async def test_a_trickled_hello_is_closed_at_the_timeout(autojump_clock: MockClock) -> None:
    cluster = make_cluster(4)  # peer 3 is an admitted member that runs no node
    async with cluster.run(3) as nodes:
        channel = await _connect(cluster, cluster.identities[3])
        hello = encode_node_message(Hello("", (cluster.topic_id,)))
        frame = len(hello).to_bytes(4, "big") + hello
        start = trio.current_time()
        assert sum(nodes[0].gate.held.values()) == 1  # still waiting for its Hello
        async with trio.open_nursery() as nursery:
            await nursery.start(_drain, channel)
            try:
                for byte in frame[:-1]:  # never the last byte
                    await channel._send_plaintext(bytes([byte]))
                    await trio.sleep(1)
            except ConnectionLostError:
                pass
            await _until(lambda: nodes[0].gate.held == {})
            nursery.cancel_scope.cancel()
        assert trio.current_time() - start < 12
        assert cluster.identities[3].peer_id not in nodes[0].links
        await _still_healthy(nodes, "after-trickle-hello")


async def test_an_admitted_member_trickling_a_frame_holds_at_most_one_frame(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(4)
    async with cluster.run(3) as nodes:
        rogue = cluster.identities[3]
        channel = await _join(cluster, rogue)
        async with trio.open_nursery() as nursery:
            await nursery.start(_drain, channel)
            await wait_until(nodes, lambda: rogue.peer_id in nodes[0].links, limit=30)
            link = nodes[0].links[rogue.peer_id]
            reader = link.channel._reader  # type: ignore[attr-defined]
            await channel._send_plaintext(MAX_FRAME_SIZE.to_bytes(4, "big"))  # a big frame...
            for _ in range(32):  # ...whose bytes come 4 KiB a second
                await channel._send_plaintext(b"\x00" * 4096)
                await trio.sleep(1)
            assert 0 < reader.buffered <= MAX_FRAME_SIZE + 4
            # An admitted member takes one of max_peers slots, as an idle one does;
            # meanwhile the honest peers are served.
            await _still_healthy(nodes, "during-trickle", links=3)
            nursery.cancel_scope.cancel()


# -- many connections ---------------------------------------------------------------------


async def test_connections_not_yet_admitted_are_capped_per_host_and_in_all(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(3)
    network = cluster.network = OneHostNetwork()
    async with cluster.run() as nodes:
        node = nodes[0]
        cfg = node.config
        assert (cfg.max_handshakes, cfg.max_handshakes_per_host) == (64, 8)
        streams = []
        network.host = "evil"
        for _ in range(cfg.max_handshakes_per_host + 5):
            streams.append(await network.connect(cluster.address(0)))
        await trio.sleep(0.1)
        assert node.gate.held == {"evil": cfg.max_handshakes_per_host}
        assert node.gate.turned_away == 5
        for k in range(cfg.max_handshakes + 10):  # many hosts (a botnet)
            network.host = f"bot{k}"
            streams.append(await network.connect(cluster.address(0)))
        network.host = None
        await trio.sleep(0.1)
        assert sum(node.gate.held.values()) == cfg.max_handshakes
        assert node.gate.turned_away == 5 + 10 + cfg.max_handshakes_per_host
        # The links already admitted are untouched; all of it ends at the timeout.
        await wait_until(nodes, lambda: node.gate.held == {}, limit=12)
        assert node.violations == 0  # silence blames nobody
        for stream in streams:
            await stream.aclose()
        await _still_healthy(nodes, "after-many-connections")
        # And there is room again: a member connects and gets its Hello back.
        channel = await _join(cluster, Identity.generate())
        with trio.fail_after(30):
            assert await channel.receive_frame() is not None


# -- a peer that never reads ----------------------------------------------------------------


async def test_a_peer_that_never_reads_fills_its_queue_and_no_more(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(4)
    async with cluster.run(3) as nodes:
        node, rogue = nodes[0], cluster.identities[3]
        network = cluster.network
        network.pipe = trio.testing.lockstep_stream_pair  # type: ignore[method-assign]
        stream = await network.connect(cluster.address(0))
        del network.pipe  # back to the class's buffered pipe for everyone else
        channel = await secure_handshake(stream, rogue, initiator=True)
        await channel.send_frame(encode_node_message(Hello("", (cluster.topic_id,))))
        hello = await channel.receive_frame()  # the node's Hello; from now on, never read
        assert hello is not None
        await wait_until(nodes, lambda: rogue.peer_id in node.links, limit=30)
        link = node.links[rogue.peer_id]
        start = trio.current_time()
        for k in range(node.config.send_queue + 100):  # writes the node pushes to everyone
            await nodes[1].put(f"k{k}", k)
            await trio.sleep(0.1)
            assert link._send.statistics().current_buffer_used <= node.config.send_queue
        assert link.stats.dropped > 0  # pushes to it are dropped, never buffered
        await _still_healthy(nodes, "while-one-never-reads", links=3)
        # A frame not taken within send_timeout closes the link: backed off, not a violation.
        await wait_until(nodes, lambda: rogue.peer_id not in node.links, limit=60)
        assert trio.current_time() - start <= node.config.send_timeout + 1
        assert link.stalled and node.violations == 0
        await stream.aclose()
        await _still_healthy(nodes, "after-one-never-read")


# -- a flood of Peers messages ----------------------------------------------------------------


async def test_a_flood_of_bogus_addresses_keeps_the_book_bounded(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(4)
    async with cluster.run(3) as nodes:
        node, rogue = nodes[0], cluster.identities[3]
        channel = await _join(cluster, rogue)
        good = {cluster.address(1), cluster.address(2)}
        async with trio.open_nursery() as nursery:
            await nursery.start(_drain, channel)
            for m in range(40):  # 2,560 addresses, 2.5x the book
                peers = tuple(
                    (os.urandom(32), f"bogus{m}-{k}.invalid:{1000 + k}")
                    for k in range(MAX_PEERS_LISTED)
                )
                await channel.send_frame(encode_node_message(Peers(peers)))
                await trio.sleep(0.5)
            await trio.sleep(30)  # the dialer tries (and fails) some of them
            assert len(node.book) <= DEFAULT_MAX_ENTRIES
            assert good <= {e.address for e in node.book.due(float("inf"))}
            # No bogus address is passed on: only addresses this node reached are.
            assert all(not a.startswith("bogus") for _, a in node.book.known(10_000))
            assert rogue.peer_id in node.links  # telling addresses breaks no rule
            await _still_healthy(nodes, "after-peers-flood", links=3)
            nursery.cancel_scope.cancel()


# -- a flood of pushed oplogs -------------------------------------------------------------------


def _member_write(identity: Identity, topic_id: bytes, key: str, t: int) -> bytes:
    return encode_oplog(
        create_oplog(
            identity,
            topic_id=topic_id,
            object_id=key.encode(),
            op=1,
            value={"v": key},
            create_time=t,
        )
    )


async def test_a_flood_of_pushed_pending_oplogs_is_bounded_work_and_storage(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(4)
    async with cluster.run(3) as nodes:
        node, rogue = nodes[1], cluster.identities[3]  # a member (not a signer) as the victim
        channel = await _join(cluster, rogue, 1)
        tid = cluster.topic_id
        before = node.store.count(tid)
        async with trio.open_nursery() as nursery:
            await nursery.start(_drain, channel)
            now = T0 + int(trio.current_time() * 10**9)
            writes = [_member_write(rogue, tid, f"w{k}", now + k) for k in range(512)]
            for _ in range(5):  # the same 512 records, five times: stored once
                for start in range(0, len(writes), 256):
                    push = Push(tid, tuple(writes[start : start + 256]), pending=True)
                    await channel.send_frame(encode_node_message(push))
                    await trio.sleep(0.1)
            # A member's writes are its right: each is stored once, and the master signs them.
            await wait_until(
                nodes, lambda: all(n.store.count(tid) == before + 512 for n in nodes), limit=120
            )
            rt = node.topic()
            assert rt.pusher.queued() <= node.config.push_queue
            assert len(rt.seen) <= node.config.seen_cache
            link = node.links[rogue.peer_id]
            assert link.stats.refused == 0
            # Forged records (a stranger's writes) are refused; past MAX_REFUSED_PUSHED, closed.
            stranger = Identity.generate()
            forged = [_member_write(stranger, tid, f"f{k}", now + k) for k in range(100)]
            await channel.send_frame(encode_node_message(Push(tid, tuple(forged), pending=True)))
            await wait_until(nodes, lambda: rogue.peer_id not in node.links, limit=30)
            assert node.violations == 1
            assert link.stats.refused > MAX_REFUSED_PUSHED
            assert all(n.store.count(tid) == before + 512 for n in nodes)
            nursery.cancel_scope.cancel()
        await channel.aclose()
        assert nodes[0].peer_id in node.links
        await _still_healthy(nodes, "after-push-flood", links=None)


# -- rounds that never finish ----------------------------------------------------------------


async def test_rounds_started_and_never_finished_keep_per_peer_state_bounded(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(4)
    async with cluster.run(3) as nodes:
        node, rogue = nodes[0], cluster.identities[3]
        channel = await _join(cluster, rogue)
        store = Store.memory()
        store.add_topic(cluster.info)
        requester = Requester(SyncContext(store, cluster.topic_id), node.peer_id)
        rt = node.topic()
        async with trio.open_nursery() as nursery:
            await nursery.start(_drain, channel)  # it reads, but never answers a round
            await wait_until(nodes, lambda: rogue.peer_id in node.links, limit=30)
            for k in range(300):  # a new round every second, each abandoned after one step
                now = T0 + int(trio.current_time() * 10**9)
                requester.abort()
                for msg in requester.start(now, k.to_bytes(16, "big")):
                    await channel.send_frame(encode_message(msg))
                await trio.sleep(1)
            receiver = rt.receivers[rogue.peer_id]
            assert len(receiver._recent) <= RECENT_ROUNDS  # one Receiver, its memory capped
            assert set(rt.receivers) <= set(node.links)
            # The rounds the node started with it (it never answers) were given up
            # after round_timeout, one at a time.
            assert rt.stats.rounds_failed >= 1
            assert len(rt.requesters) <= len(node.links)
            assert len(rt._round_events) <= len(node.links)
            await _still_healthy(nodes, "during-unfinished-rounds", links=3)
            nursery.cancel_scope.cancel()
        await channel.aclose()
        await wait_until(nodes, lambda: rogue.peer_id not in node.links, limit=30)
        assert rogue.peer_id not in rt.receivers and rogue.peer_id not in rt.requesters
