"""The dialer's share of the slots, and the masters it dials when it has no way to one
(net/dialer.py), on trio's autojump clock with a network that refuses every dial."""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import trio
from trio.testing import MockClock

from pttsync.errors import ConnectionLostError
from pttsync.net.addressbook import AddressBook
from pttsync.net.config import NodeConfig
from pttsync.net.dialer import Dialer
from pttsync.net.dispatch import Dispatcher
from pttsync.net.node import MAX_REFERRALS, Node
from pttsync.net.peer import Direction
from pttsync.net.wire import Peers

MASTER = b"\x01" * 32
PEERS = [bytes([i]) * 32 for i in range(2, 8)]


@dataclass
class FakeLink:
    address: str
    listen: str
    direction: Direction


class RefusingNetwork:
    """Every dial is refused at once; the addresses dialed, in order."""

    def __init__(self) -> None:
        self.dialed: list[str] = []

    async def connect(self, address: str) -> trio.abc.Stream:
        self.dialed.append(address)
        await trio.lowlevel.checkpoint()
        raise ConnectionLostError(f"cannot connect to {address}: refused")


async def never_linked(*link: object) -> None:
    raise AssertionError("every dial is refused")


async def dials(masters: frozenset[bytes], *, slots: int = 4, outbound: int = 2) -> list[str]:
    """What a node with `slots` slots, `outbound` of them links it dialed, dials in 1 s."""
    book = AddressBook(random.Random(1))
    book.add("master:1", MASTER)
    for i, p in enumerate(PEERS):
        book.add(f"peer{i}:1", p)
    links = {
        bytes([i]) * 32: FakeLink(f"{i}:1", f"{i}:1", Direction.OUTBOUND)
        for i in range(100, 100 + outbound)
    }
    network = RefusingNetwork()
    dialer = Dialer(
        b"\x00" * 32, book=book, links=links,  # type: ignore[arg-type]
        config=NodeConfig(max_peers=slots), network=network,  # type: ignore[arg-type]
        listen_address=lambda: "me:1", run_link=never_linked,
        out_of_reach=lambda: masters,
    )  # fmt: skip
    dialer.dialing.update(ln.address for ln in links.values())  # connected through, as run
    with trio.move_on_after(1):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(dialer.run, nursery)
    return network.dialed


async def test_a_node_with_its_outbound_share_dials_nobody(autojump_clock: MockClock) -> None:
    assert await dials(frozenset()) == []  # 2 of 4 slots: half are for peers dialing in


async def test_with_no_way_to_a_master_it_dials_the_masters_on_every_free_slot(
    autojump_clock: MockClock,
) -> None:
    dialed = await dials(frozenset({MASTER}))
    # Two slots free, beyond its share: only the master is dialed there (go-pttai's
    # ConnectMaster), again and again as it refuses; nobody else.
    assert dialed and set(dialed) == {"master:1"}


async def test_stranded_each_outbound_link_counts_once(autojump_clock: MockClock) -> None:
    """Was: an outbound link's address stays in `dialing` for the link's life, so it
    counted twice, and a node of a part with no master, one link out of two slots,
    took itself for full (the simulator: `--max-peers 3 --partition 9:26 --churn 3`)."""
    assert await dials(frozenset(), slots=2, outbound=1) == []  # its share: as before
    assert "master:1" in await dials(frozenset({MASTER}), slots=2, outbound=1)


def test_the_peers_a_wanted_master_names_are_dialed_like_it() -> None:
    """A full master refuses a stranded peer, but sends its `Peers` first: peers that
    reached it.  Was: a part whose masters were all full stayed apart for good."""
    named: list[tuple[bytes, list[bytes]]] = []
    me = b"\x00" * 32
    dispatcher = Dispatcher(
        me, topics={}, book=AddressBook(random.Random(1)), book_changed=lambda: None,
        referred=lambda by, peers: named.append((by, peers)),
    )  # fmt: skip
    link: Any = SimpleNamespace(peer_id=MASTER)
    dispatcher.handle(link, Peers(((PEERS[0], "p0:1"), (me, "me:1"))), 0.0)
    assert named == [(MASTER, [PEERS[0]])]  # not itself

    node: Any = SimpleNamespace(_masters_wanted=frozenset({MASTER}), _referrals={})
    Node._referred(node, PEERS[1], [PEERS[2]])  # not a master it wants: ignored
    assert node._referrals == {}
    Node._referred(node, MASTER, PEERS[:2])
    assert list(node._referrals) == PEERS[:2]
    many = [bytes([9, i]) * 16 for i in range(MAX_REFERRALS + 5)]
    Node._referred(node, MASTER, many)
    assert list(node._referrals) == many[-MAX_REFERRALS:]  # bounded, the newest kept
