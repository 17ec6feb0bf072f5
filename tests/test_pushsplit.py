"""The push router's split of the links (net/push.py, `PushRouter._split`), kept between
batches, against the same split worked out afresh, through random changes of
everything it depends on."""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.net.lazypush import LazyPush
from pttsync.net.push import PushRouter
from pttsync.net.routing import MAX_HOPS, Routes
from pttsync.net.seen import SeenCache

TOPIC = b"\x07" * 32
OTHER = b"\x08" * 32
PEERS = [bytes([i]) * 32 for i in range(1, 7)]


@dataclass(eq=False)
class FakeLink:
    peer_id: bytes
    topics: frozenset[bytes]


class World:
    """What a router's split depends on, changed by the test."""

    def __init__(self) -> None:
        self.routes = Routes(2, random.Random(1))
        self.lazy = LazyPush(lambda ids: set())
        self.replica = SimpleNamespace(fold=object())
        self.members = set(PEERS)
        self.now = 10**9
        self.links = [FakeLink(p, frozenset({TOPIC})) for p in PEERS]
        for p in PEERS:
            self.routes.add(p)

    def admits(self, peer_id: bytes, now: int) -> bool:
        return peer_id in self.members

    def router(self) -> PushRouter:
        replica: Any = self.replica
        return PushRouter(
            TOPIC, b"\x00" * 32, replica=replica, routes=self.routes, seen=SeenCache(64),
            stats=SimpleNamespace(), admits=self.admits, clock=lambda: self.now, lazy=self.lazy,
        )  # fmt: skip

    def change(self, what: str, i: int) -> None:
        peer = PEERS[i % len(PEERS)]
        match what:
            case "prune":
                self.lazy.prune(peer)
            case "graft":
                self.lazy.graft(peer)
            case "forget":
                self.lazy.forget(peer)
            case "route_gone":
                self.routes.remove(peer)
            case "route_back":
                self.routes.add(peer)
            case "their_mesh":
                self.routes.heard(peer, MAX_HOPS, mesh=bool(i % 2))
            case "topics":
                link = self.links[i % len(self.links)]
                link.topics = frozenset({OTHER}) if TOPIC in link.topics else frozenset({TOPIC})
            case "governance":  # a new fold: membership may differ
                self.replica.fold = object()
                self.members ^= {peer}
            case "second":
                self.now += 10**9
            case "link_gone" if len(self.links) > 1:
                del self.links[i % len(self.links)]
            case "link_new":
                self.links.append(FakeLink(peer, frozenset({TOPIC})))


CHANGES = [
    "prune", "graft", "forget", "route_gone", "route_back", "their_mesh", "topics", "governance",
    "second", "link_gone", "link_new",
]  # fmt: skip


def ids(split: tuple[list[Any], ...]) -> list[list[int]]:
    return [[id(ln) for ln in part] for part in split]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(CHANGES),
            st.integers(0, 11),
        ),
        max_size=30,
    )
)
def test_the_kept_split_is_the_split_worked_out_afresh(changes: list[tuple[str, int]]) -> None:
    world = World()
    kept = world.router()
    for what, i in changes:
        world.change(what, i)
        links: Any = list(world.links)
        assert ids(kept._split(links, world.now)) == ids(world.router()._split(links, world.now))


def test_the_split_is_kept_while_nothing_changes() -> None:
    world = World()
    router = world.router()
    links: Any = list(world.links)
    first = router._split(links, world.now)
    assert router._split(list(links), world.now + 10**8) is first  # same second
    world.lazy.prune(PEERS[0])
    assert router._split(links, world.now) is not first
