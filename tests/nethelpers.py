"""Node test helpers: a topic shared by n peers, nodes on a MemoryNetwork under MockClock."""

from __future__ import annotations

import os
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from pttsync.core.identity import Identity
from pttsync.core.lifecycle.governance import Role
from pttsync.core.lifecycle.replica import found_topic
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.topic import TopicInfo, new_topic
from pttsync.net.changes import wait_until as node_wait_until
from pttsync.net.config import NodeConfig, trio_wall_clock
from pttsync.net.network import MemoryNetwork
from pttsync.net.serve import open_node

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from pttsync.net.node import Node

T0 = 1_790_000_000 * 10**9  # 2026-09-21: the wall clock at trio time 0
SECOND = 10**9


@dataclass
class Cluster:
    """n identities and stores in one topic: peer 0 founded it, the others are members."""

    identities: list[Identity]
    stores: list[Store]
    info: TopicInfo
    network: MemoryNetwork = field(default_factory=MemoryNetwork)
    nodes: dict[int, Node] = field(default_factory=dict)

    @property
    def topic_id(self) -> bytes:
        return self.info.topic_id

    def config(self, i: int, **changes: Any) -> NodeConfig:
        base: dict[str, Any] = {
            "listen": f"peer{i}:0",
            "clock": trio_wall_clock(T0),
            "seed": 1000 + i,
            "control": False,
            "verify_ahead": False,  # worker threads would let the MockClock jump
        }
        base.update(changes)
        return NodeConfig(**base)

    def address(self, i: int) -> str:
        node = self.nodes[i]
        assert node.listen_address is not None
        return node.listen_address

    @asynccontextmanager
    async def node(self, i: int, **changes: Any) -> AsyncIterator[Node]:
        """Run peer i (on its store) for the body of the `async with`."""
        async with open_node(
            store=self.stores[i],
            identity=self.identities[i],
            config=self.config(i, **changes),
            network=self.network,
        ) as node:
            self.nodes[i] = node
            try:
                yield node
            finally:
                del self.nodes[i]

    @asynccontextmanager
    async def run(
        self, n: int | None = None, *, settle: bool = True, **changes: Any
    ) -> AsyncIterator[list[Node]]:
        """Start peers 0..n-1, each joining peer 0; with `settle`, wait until they agree."""
        count = len(self.stores) if n is None else n
        async with AsyncExitStack() as stack:
            nodes = [await stack.enter_async_context(self.node(0, **changes))]
            for i in range(1, count):
                join = (self.address(0),)
                nodes.append(await stack.enter_async_context(self.node(i, join=join, **changes)))
            if settle:
                await wait_until(nodes, lambda: all_agree(nodes), limit=120)
            yield nodes


def make_cluster(n: int, *, members: int | None = None) -> Cluster:
    """Peer 0 founds a topic and admits peers 1..members (default: all) as members."""
    identities = [Identity.generate() for _ in range(n)]
    stores = [Store.memory() for _ in range(n)]
    info = new_topic(identities[0], name="net", create_time=T0 - 60 * SECOND, nonce=os.urandom(16))
    replica = found_topic(stores[0], identities[0], info)
    admitted = n - 1 if members is None else members
    for ident in identities[1 : 1 + admitted]:
        replica.set_role(ident.peer_id, Role.MEMBER, now=T0 - 30 * SECOND)
    for store in stores[1:]:
        store.add_topic(info)
    return Cluster(identities, stores, info)


async def wait_until(
    nodes: Node | list[Node], predicate: Callable[[], bool], limit: float = 600
) -> None:
    """Wait (virtual time, at most `limit` s) for `predicate`, re-checked on every change."""
    with trio.fail_after(limit):
        await node_wait_until(nodes if isinstance(nodes, list) else [nodes], predicate)


def digest(node: Node) -> bytes:
    return next(iter(node.digests().values()))


def all_agree(nodes: list[Node]) -> bool:
    return len({digest(n) for n in nodes}) == 1 and all(n.pending_count() == 0 for n in nodes)


def value_of(node: Node, key: str) -> Any:
    state = node.get(key)
    return None if state is None or state.pending or not state.exists else state.value
