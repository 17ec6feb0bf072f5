"""The simulated network: latency, loss, bandwidth, cuts, crashes, closes and both transports."""

from __future__ import annotations

import contextlib
import math
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from pttsync.core.identity import Identity
from pttsync.core.sync.frames import MAX_FRAME_SIZE
from pttsync.errors import ConnectionLostError, HandshakeError, PttsyncError, UsageError
from pttsync.net.peer import Channel
from pttsync.net.transport import SecureChannel
from pttsync.sim.fabric import TICK, Cut, Fabric, LinkModel, SimChannel, SimNetwork, SimStream

from .helpers import make_identity

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

EXACT = 1e-9  # virtual time is exact: this only absorbs float rounding
FIXED = (0.01, 0.01)  # a link latency range with one value: every pair is 10 ms apart
Outcome = Channel | PttsyncError


def fixed(**changes: float | tuple[float, float]) -> LinkModel:
    """A 10 ms link without jitter (so times can be asserted exactly), with `changes`."""
    settings: dict[str, float | tuple[float, float]] = {"latency": FIXED, "jitter": 0.0}
    settings.update(changes)
    return LinkModel(**settings)  # type: ignore[arg-type]


class Sim:
    """A fabric in a running trio, with named nodes (identities from their names)."""

    def __init__(self, fabric: Fabric, nursery: trio.Nursery) -> None:
        self.fabric = fabric
        self.nursery = nursery
        self.identities: dict[str, Identity] = {}
        self.networks: dict[str, SimNetwork] = {}

    def node(self, name: str, identity: Identity | None = None) -> SimNetwork:
        if name not in self.networks:
            ident = identity or make_identity(name)
            self.identities[name] = ident
            self.networks[name] = self.fabric.network(name, ident.peer_id)
        return self.networks[name]

    def peer_id(self, name: str) -> bytes:
        return self.identities[name].peer_id

    async def listen(
        self, name: str, port: int = 1, *, nursery: trio.Nursery | None = None
    ) -> tuple[str, trio.MemoryReceiveChannel[Outcome]]:
        """Serve node `name`; each accepted connection is secured and handed over (or its error)."""
        net = self.node(name)
        send, receive = trio.open_memory_channel[Outcome](math.inf)

        async def handler(stream: trio.abc.Stream, remote: str) -> None:
            try:
                channel = await net.secure(
                    stream, self.identities[name], initiator=False, expect=None, timeout=10
                )
            except PttsyncError as exc:
                send.send_nowait(exc)
            else:
                send.send_nowait(channel)

        address: str = await (nursery or self.nursery).start(net.serve, f"{name}:{port}", handler)
        return address, receive

    async def dial(self, name: str, address: str, *, expect: bytes | None = None) -> Channel:
        net = self.node(name)
        stream = await net.connect(address)
        return await net.secure(
            stream, self.identities[name], initiator=True, expect=expect, timeout=10
        )

    async def pair(self, dialer: str, listener: str, port: int = 1) -> tuple[Channel, Channel]:
        """A secured connection from `dialer` to `listener`: (dialer's side, listener's side)."""
        address, inbox = await self.listen(listener, port)
        client = await self.dial(dialer, address)
        server = await inbox.receive()
        assert not isinstance(server, PttsyncError)
        return client, server


@asynccontextmanager
async def running(fabric: Fabric, limit: float = 600.0) -> AsyncIterator[Sim]:
    """`fabric` and a nursery for the body, which must finish within `limit` s (the
    deliveries need no task: they are calls at their times, net/timers.py)."""
    with trio.fail_after(limit):
        async with trio.open_nursery() as nursery:
            yield Sim(fabric, nursery)
            nursery.cancel_scope.cancel()


async def receive_all(channel: Channel) -> list[tuple[bytes, float]]:
    """Every frame up to the clean end, each with the time it was received."""
    got: list[tuple[bytes, float]] = []
    while (frame := await channel.receive_frame()) is not None:
        got.append((frame, trio.current_time()))
    return got


async def collect(channel: Channel, into: list[tuple[bytes, float]]) -> None:
    """`receive_all` as a task: frames are stamped as they arrive, while the test sends."""
    into.extend(await receive_all(channel))


async def receive_until_lost(channel: Channel) -> tuple[list[bytes], float]:
    """Every frame until the connection breaks, and when it broke (fails at a clean end)."""
    got: list[bytes] = []
    while True:
        try:
            frame = await channel.receive_frame()
        except ConnectionLostError:
            return got, trio.current_time()
        assert frame is not None, "expected a reset, got a clean end"
        got.append(frame)


def numbered(i: int, size: int = 8) -> bytes:
    return i.to_bytes(4, "big") + b"." * (size - 4)


def number(frame: bytes) -> int:
    return int.from_bytes(frame[:4], "big")


# -- the link model and the fabric's settings ------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"latency": (-0.001, 0.1)},
        {"latency": (0.2, 0.1)},
        {"latency": (0.0, 60.5)},
        {"latency": (math.nan, 0.1)},
        {"latency": (0.0, math.inf)},
        {"jitter": -0.1},
        {"jitter": 10.5},
        {"jitter": math.nan},
        {"loss": -0.01},
        {"loss": 1.0},
        {"loss": math.nan},
        {"bandwidth": -1.0},
        {"bandwidth": math.inf},
        {"bandwidth": math.nan},
        {"min_rto": 0.0},
        {"min_rto": -1.0},
        {"min_rto": 60.5},
        {"min_rto": math.nan},
        {"max_retries": -1},
        {"max_retries": 31},
    ],
)
def test_link_model_rejects_bad_settings(settings: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        LinkModel(**settings)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "settings",
    [
        {"latency": (0.0, 0.0)},
        {"latency": (60.0, 60.0)},
        {"jitter": 0.0},
        {"jitter": 10.0},
        {"loss": 0.0},
        {"loss": 0.999},
        {"bandwidth": 0.0},
        {"bandwidth": 1.0},
        {"min_rto": 60.0},
        {"max_retries": 0},
        {"max_retries": 30},
    ],
)
def test_link_model_accepts_the_edges_of_its_ranges(settings: dict[str, object]) -> None:
    model = LinkModel(**settings)  # type: ignore[arg-type]
    for key, value in settings.items():
        assert getattr(model, key) == value


def test_fabric_rejects_an_unknown_transport() -> None:
    with pytest.raises(UsageError, match="transport"):
        Fabric(transport="tcp")
    assert Fabric(transport="noise").transport == "noise"
    assert Fabric().model == LinkModel()


def test_a_cut_splits_nodes_of_different_groups_only_while_it_lasts() -> None:
    cut = Cut(10.0, 20.0, (frozenset({"a", "b"}), frozenset({"c"})))
    assert cut.splits("a", "c", 10.0) and cut.splits("c", "b", 19.999)
    assert not cut.splits("a", "b", 15.0)  # the same group
    assert not cut.splits("a", "c", 9.999) and not cut.splits("a", "c", 20.0)  # [start, end)
    assert cut.splits("a", "d", 15.0)  # a node in no group is cut off from everyone
    fabric = Fabric()
    assert not fabric.is_cut("a", "c", 15.0)
    fabric.cuts.append(cut)
    assert fabric.is_cut("a", "c", 15.0) and fabric.is_cut("c", "a", 15.0)
    assert not fabric.is_cut("a", "b", 15.0) and not fabric.is_cut("a", "c", 25.0)


# -- latency and order -----------------------------------------------------------------------


def test_pair_latency_is_in_range_symmetric_and_a_function_of_seed_and_pair() -> None:
    model = LinkModel(latency=(0.02, 0.3))
    names = [f"n{i}" for i in range(12)]
    pairs = [(a, b) for a in names for b in names if a < b]
    one, again, other = (Fabric(model=model, seed=s) for s in (5, 5, 6))
    for a, b in pairs:
        lat = one.latency(a, b)
        assert 0.02 <= lat <= 0.3
        assert one.latency(b, a) == lat  # one latency per pair, both ways
        assert again.latency(b, a) == lat  # same seed, same pair: the same draw
    # The draws differ between pairs and between seeds.
    assert len({one.latency(a, b) for a, b in pairs}) == len(pairs)
    assert sum(one.latency(a, b) != other.latency(a, b) for a, b in pairs) == len(pairs)
    # The range is honoured at its edges: a one-value range gives that value.
    assert Fabric(model=LinkModel(latency=(0.05, 0.05))).latency("x", "y") == 0.05


async def test_connect_and_the_direct_handshake_cost_one_round_trip_each(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=fixed(latency=(0.03, 0.03)))) as sim:
        address, inbox = await sim.listen("b", 9)
        assert address == "b:9"
        start = trio.current_time()
        stream = await sim.node("a").connect(address)
        assert isinstance(stream, SimStream) and stream.remote == "b"
        assert trio.current_time() - start == pytest.approx(0.06, abs=EXACT)  # SYN, SYN-ACK
        channel = await sim.node("a").secure(
            stream, sim.identities["a"], initiator=True, expect=None, timeout=10
        )
        assert trio.current_time() - start == pytest.approx(0.12, abs=EXACT)
        server = await inbox.receive()
        assert isinstance(channel, SimChannel) and isinstance(server, SimChannel)
        assert trio.current_time() - start == pytest.approx(0.12, abs=EXACT)
        sent = trio.current_time()
        await channel.send_frame(b"ping")
        assert await server.receive_frame() == b"ping"
        assert trio.current_time() - sent == pytest.approx(0.03, abs=EXACT)  # one way
        assert sim.fabric.connections_of("a") == sim.fabric.connections_of("b") == 1


async def test_one_way_latency_is_within_the_model_and_frames_arrive_in_order(
    autojump_clock: MockClock,
) -> None:
    model = LinkModel(latency=(0.02, 0.06), jitter=0.5)
    async with running(Fabric(model=model, seed=3)) as sim:
        client, server = await sim.pair("a", "b")
        link = sim.fabric.latency("a", "b")
        assert 0.02 <= link <= 0.06
        sent_at: list[float] = []

        async def sender() -> None:
            for i in range(200):
                sent_at.append(trio.current_time())
                await client.send_frame(numbered(i))
                await trio.sleep(0.0005 * (i % 7))  # bursts faster than the jitter
            await client.aclose()

        sim.nursery.start_soon(sender)
        got = await receive_all(server)
    assert [number(f) for f, _ in got] == list(range(200))
    delays = [t - sent_at[number(f)] for f, t in got]
    assert all(link - EXACT <= d <= link * 1.5 + TICK + EXACT for d in delays)
    assert all(0.02 <= d <= 0.06 * 1.5 for d in delays)
    assert max(delays) - min(delays) > 0.2 * link  # the jitter shows (and still no reordering)
    times = [t for _, t in got]
    assert times == sorted(times)


async def test_frames_of_different_connections_reorder_by_their_links_latencies(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=LinkModel(latency=(0.01, 0.2), jitter=0.0), seed=2)) as sim:
        near, far = sorted(["c", "d"], key=lambda n: sim.fabric.latency("a", n))
        gap = sim.fabric.latency("a", far) - sim.fabric.latency("a", near)
        assert gap > 0.02, "the seed should give the two links clearly different latencies"
        to_far, far_side = await sim.pair("a", far, 1)
        to_near, near_side = await sim.pair("a", near, 2)
        arrivals: list[tuple[str, float]] = []

        async def watch(label: str, channel: Channel) -> None:
            assert await channel.receive_frame() == label.encode()
            arrivals.append((label, trio.current_time()))

        async with trio.open_nursery() as watchers:
            watchers.start_soon(watch, "first", far_side)
            watchers.start_soon(watch, "second", near_side)
            await to_far.send_frame(b"first")
            await trio.sleep(gap / 2)
            await to_near.send_frame(b"second")
    assert [label for label, _ in arrivals] == ["second", "first"]
    assert arrivals[1][1] - arrivals[0][1] == pytest.approx(
        gap / 2, abs=TICK + EXACT
    )  # arrivals fall on ticks


async def _arrival_schedule(seed: int) -> list[tuple[int, float]]:
    """Times (from the first send) at which 40 frames arrive over a jittery, lossy link (of
    the same latency whatever the seed: only the connection's own draws can differ)."""
    model = fixed(jitter=1.0, loss=0.2)
    async with running(Fabric(model=model, seed=seed)) as sim:
        client, server = await sim.pair("a", "b")
        start = trio.current_time()
        for i in range(40):
            await client.send_frame(numbered(i))
        await client.aclose()
        got = await receive_all(server)
    return [(number(f), t - start) for f, t in got]


async def test_a_run_is_the_same_for_the_same_seed_and_differs_for_another(
    autojump_clock: MockClock,
) -> None:
    first = await _arrival_schedule(11)
    assert [n for n, _ in first] == list(range(40))
    again, other = await _arrival_schedule(11), await _arrival_schedule(12)
    assert [n for n, _ in again] == [n for n, _ in other] == list(range(40))
    assert [t for _, t in again] == pytest.approx([t for _, t in first], abs=EXACT)
    assert all(abs(t - u) > 1e-6 for (_, t), (_, u) in zip(first, other, strict=True))


# -- loss --------------------------------------------------------------------------------------


async def test_moderate_loss_delays_frames_but_loses_none(autojump_clock: MockClock) -> None:
    model = fixed(loss=0.2, min_rto=0.2)
    async with running(Fabric(model=model, seed=4)) as sim:
        client, server = await sim.pair("a", "b")
        sent_at: list[float] = []
        got: list[tuple[bytes, float]] = []
        async with trio.open_nursery() as receiver:
            receiver.start_soon(collect, server, got)
            for i in range(300):
                sent_at.append(trio.current_time())
                await client.send_frame(numbered(i))
                await trio.sleep(0.05)
            await client.aclose()
        assert sim.fabric.in_flight == 0
    assert [number(f) for f, _ in got] == list(range(300))  # all of them, in order
    delays = [t - sent_at[number(f)] for f, t in got]
    assert all(d >= 0.01 - EXACT for d in delays)
    times = [t for _, t in got]
    assert times == sorted(times)
    # A frame that arrives later than both its latency and the frame before it was lost at
    # least once: about a fifth of them, each late by a timeout of 0.2 s or more.
    late = [d for d, t, prev in zip(delays, times, [0.0, *times], strict=False) if t > prev + EXACT]
    retransmitted = [d for d in late if d > 0.01 + EXACT]
    assert 30 <= len(retransmitted) <= 90
    assert all(d >= 0.01 + 0.2 - EXACT for d in retransmitted)
    assert any(d >= 0.01 + 0.2 + 0.4 - EXACT for d in delays)  # lost twice: the RTO doubled
    # Frames behind a lost one waited for it (head-of-line blocking): late by less than any
    # timeout, which only waiting for another frame explains.
    held = [d for d in delays if 0.01 + EXACT < d < 0.01 + 0.2 - EXACT]
    assert len(held) > 30


async def test_without_loss_every_frame_takes_exactly_the_link_latency(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=fixed(), seed=4)) as sim:
        client, server = await sim.pair("a", "b")
        sent_at: list[float] = []
        got: list[tuple[bytes, float]] = []
        async with trio.open_nursery() as receiver:
            receiver.start_soon(collect, server, got)
            for i in range(50):
                sent_at.append(trio.current_time())
                await client.send_frame(numbered(i))
                await trio.sleep(0.003)
            await client.aclose()
    assert [t - sent_at[number(f)] for f, t in got] == pytest.approx([0.01] * 50, abs=EXACT)


@pytest.mark.parametrize(("retries", "breaks_after"), [(0, 0.2), (2, 0.2 + 0.4 + 0.8)])
async def test_loss_near_one_breaks_the_connection_for_both_sides(
    autojump_clock: MockClock, retries: int, breaks_after: float
) -> None:
    model = fixed(loss=0.999999, max_retries=retries, min_rto=0.2)
    async with running(Fabric(model=model, seed=1)) as sim:
        client, server = await sim.pair("a", "b")  # the handshakes are not subject to loss
        start = trio.current_time()
        await client.send_frame(b"doomed")
        got, broke_at = await receive_until_lost(server)
        assert got == []
        # Each of the 1 + retries attempts waits out a doubling timeout, then TCP gives up.
        assert broke_at - start == pytest.approx(breaks_after, abs=EXACT)
        with pytest.raises(ConnectionLostError):
            await client.send_frame(b"more")
        with pytest.raises(ConnectionLostError):
            await client.receive_frame()
        with pytest.raises(ConnectionLostError):
            await server.send_frame(b"reply")
        assert sim.fabric.connections_of("a") == sim.fabric.connections_of("b") == 0


async def test_the_sender_learns_of_the_break_only_when_it_happens(
    autojump_clock: MockClock,
) -> None:
    model = fixed(loss=0.999999, max_retries=1, min_rto=0.5)
    async with running(Fabric(model=model, seed=1)) as sim:
        client, _server = await sim.pair("a", "b")
        start = trio.current_time()
        await client.send_frame(b"doomed")  # breaks the connection at start + 0.5 + 1.0
        await trio.sleep_until(start + 1.4)
        await client.send_frame(b"still looks fine")
        await trio.sleep_until(start + 1.5)
        with pytest.raises(ConnectionLostError, match="reset"):
            await client.send_frame(b"now it does not")


# -- bandwidth ---------------------------------------------------------------------------------


async def test_bandwidth_limits_a_transfer_and_makes_the_sender_wait(
    autojump_clock: MockClock,
) -> None:
    model = fixed(bandwidth=10_000.0)
    async with running(Fabric(model=model, seed=1)) as sim:
        client, server = await sim.pair("a", "b")
        start = trio.current_time()
        returned: list[float] = []

        async def upload() -> None:
            for i in range(50):  # 100 kB at 10 kB/s: 10 s
                await client.send_frame(numbered(i, 2000))
                returned.append(trio.current_time() - start)
            await client.aclose()

        sim.nursery.start_soon(upload)
        # The other direction has a wire of its own: a small reply is not held up.
        await server.send_frame(b"x" * 10)
        assert await client.receive_frame() == b"x" * 10
        assert trio.current_time() - start == pytest.approx(0.001 + 0.01, abs=EXACT)
        got = await receive_all(server)
    assert [number(f) for f, _ in got] == list(range(50))
    # Each send returns once its frame is on the wire: 0.2 s per 2000 bytes.
    assert returned == pytest.approx([0.2 * (i + 1) for i in range(50)], abs=1e-6)
    assert got[0][1] - start == pytest.approx(0.2 + 0.01, abs=1e-6)
    assert got[-1][1] - start == pytest.approx(10.0 + 0.01, abs=1e-6)


async def test_each_connection_has_its_own_bandwidth(autojump_clock: MockClock) -> None:
    model = fixed(bandwidth=1000.0)
    async with running(Fabric(model=model, seed=1)) as sim:
        one, one_server = await sim.pair("a", "b", 1)
        two, two_server = await sim.pair("a", "c", 2)
        start = trio.current_time()
        async with trio.open_nursery() as senders:
            senders.start_soon(one.send_frame, b"1" * 1000)
            senders.start_soon(two.send_frame, b"2" * 1000)
        assert trio.current_time() - start == pytest.approx(1.0, abs=1e-6)  # side by side
        assert await one_server.receive_frame() == b"1" * 1000
        assert await two_server.receive_frame() == b"2" * 1000
        assert trio.current_time() - start == pytest.approx(1.01, abs=1e-6)


# -- partitions --------------------------------------------------------------------------------


async def test_a_dial_across_a_cut_hangs_while_the_same_group_talks(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(), seed=1)
    async with running(fabric) as sim:
        now = trio.current_time()
        fabric.cuts.append(Cut(now, now + 1000, (frozenset({"a", "b"}), frozenset({"c"}))))
        to_c, _ = await sim.listen("c")
        with trio.move_on_after(100) as scope:
            await sim.node("a").connect(to_c)
        assert scope.cancelled_caught  # only the caller's timeout ends it
        assert trio.current_time() - now == pytest.approx(100, abs=EXACT)
        # a and b are on the same side: they connect and talk as usual.
        client, server = await sim.pair("a", "b")
        start = trio.current_time()
        await client.send_frame(b"hello")
        assert await server.receive_frame() == b"hello"
        assert trio.current_time() - start == pytest.approx(0.01, abs=EXACT)
        assert fabric.traffic["c"].connections == 0


async def test_dials_get_through_once_the_cut_ends(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(), seed=1)
    async with running(fabric) as sim:
        now = trio.current_time()
        groups = (frozenset({"a"}), frozenset({"c"}))
        fabric.cuts.append(Cut(now, now + 2, groups))
        to_c, inbox = await sim.listen("c")
        # SYNs at 0 and 1 s are lost; the one at 3 s gets through.
        await sim.node("a").connect(to_c)
        assert trio.current_time() - now == pytest.approx(3 + 0.02, abs=EXACT)
        # A later, long cut: a dial made after it ends is as fast as ever.
        fabric.cuts.append(Cut(now + 10, now + 60, groups))
        await trio.sleep_until(now + 60)
        channel = await sim.dial("a", to_c)
        assert trio.current_time() - now == pytest.approx(60 + 0.04, abs=EXACT)
        await channel.send_frame(b"after the cut")
        first, second = await inbox.receive(), await inbox.receive()
        assert isinstance(first, SimChannel) and isinstance(second, SimChannel)
        assert await second.receive_frame() == b"after the cut"


async def test_a_send_across_a_cut_breaks_the_connection_after_the_retries(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(min_rto=0.2, max_retries=6), seed=1)
    async with running(fabric) as sim:
        to_c, from_a = await sim.pair("a", "c", 1)
        to_b, from_a_b = await sim.pair("a", "b", 2)
        now = trio.current_time()
        fabric.cuts.append(Cut(now + 1, now + 1000, (frozenset({"a", "b"}), frozenset({"c"}))))
        await trio.sleep_until(now + 1)
        await to_c.send_frame(b"across")
        await to_b.send_frame(b"alongside")
        assert await from_a_b.receive_frame() == b"alongside"
        got, broke_at = await receive_until_lost(from_a)
        assert got == []
        # Seven attempts (timeouts 0.2, 0.4, ... 6.4 s), then a last 12.8 s wait: 25.4 s.
        assert broke_at - (now + 1) == pytest.approx(0.2 * 127, abs=1e-6)
        with pytest.raises(ConnectionLostError):
            await to_c.send_frame(b"again")
        # The same group is unaffected.
        await to_b.send_frame(b"still here")
        assert await from_a_b.receive_frame() == b"still here"
        assert fabric.connections_of("c") == 0 and fabric.connections_of("b") == 1


async def test_a_short_cut_delays_a_frame_and_spares_an_idle_connection(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(min_rto=0.2), seed=1)
    async with running(fabric) as sim:
        busy, busy_server = await sim.pair("a", "c", 1)
        idle, idle_server = await sim.pair("a", "d", 2)
        now = trio.current_time()
        everyone_alone = (frozenset({"a"}), frozenset({"c"}), frozenset({"d"}))
        fabric.cuts.append(Cut(now + 1, now + 3, everyone_alone))
        await trio.sleep_until(now + 1)
        await busy.send_frame(b"one")
        await busy.send_frame(b"two")
        # Attempts at +0, +0.2, +0.6 and +1.4 s fall in the cut; the one at +3.0 s does not.
        assert await busy_server.receive_frame() == b"one"
        assert trio.current_time() - now == pytest.approx(1 + 3.0 + 0.01, abs=1e-6)
        assert await busy_server.receive_frame() == b"two"
        await idle.send_frame(b"idle through the cut")
        assert await idle_server.receive_frame() == b"idle through the cut"
        assert fabric.connections_of("a") == 2


# -- crashes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("crashed", ["dialer", "listener"])
async def test_a_crash_resets_the_peers_connections_one_latency_later(
    autojump_clock: MockClock, crashed: str
) -> None:
    fabric = Fabric(model=fixed(latency=(0.05, 0.05)), seed=1)
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        victim, survivor, survivor_side = (
            ("a", "b", server) if crashed == "dialer" else ("b", "a", client)
        )
        now = trio.current_time()
        fabric.crash(victim)
        assert fabric.connections_of(victim) == fabric.connections_of(survivor) == 0
        await trio.sleep(0.02)
        await survivor_side.send_frame(b"into the void")  # the reset is still on its way
        got, reset_at = await receive_until_lost(survivor_side)
        assert got == []
        assert reset_at - now == pytest.approx(0.05, abs=EXACT)
        with pytest.raises(ConnectionLostError):
            await survivor_side.send_frame(b"after the reset")


async def test_a_crash_delivers_what_was_sent_before_it_then_the_reset(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(latency=(0.05, 0.05)), seed=1)
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        await server.send_frame(b"last words")
        await trio.sleep(0.01)
        fabric.crash("b")
        assert await client.receive_frame() == b"last words"
        got, _ = await receive_until_lost(client)
        assert got == []


async def test_a_crash_removes_the_listener_so_dials_are_refused(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(latency=(0.05, 0.05)), seed=1)
    async with running(fabric) as sim:
        address, _ = await sim.listen("b")
        await sim.node("a").connect(address)
        fabric.crash("b")
        start = trio.current_time()
        with pytest.raises(ConnectionLostError, match="refused"):
            await sim.node("a").connect(address)
        assert trio.current_time() - start == pytest.approx(0.1, abs=EXACT)  # the RST's round trip


async def test_a_crash_during_a_dial_refuses_it(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(latency=(0.05, 0.05)), seed=1)
    async with running(fabric) as sim:
        address, _ = await sim.listen("b")

        async def crash_soon() -> None:
            await trio.sleep(0.05)
            fabric.crash("b")

        sim.nursery.start_soon(crash_soon)
        with pytest.raises(ConnectionLostError, match="refused"):
            await sim.node("a").connect(address)
        assert fabric.traffic["a"].connections == 0


# -- listening and dialling --------------------------------------------------------------------


async def unexpected(stream: trio.abc.Stream, remote: str) -> None:
    raise AssertionError("no connection was expected")  # pragma: no cover


async def test_serve_binds_only_its_own_name_and_one_listener_per_address(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=fixed())) as sim:
        address, _ = await sim.listen("b", 0)
        assert address == "b:7400"  # port 0: the default port
        with pytest.raises(UsageError, match="address in use"):
            await sim.listen("b", 7400)
        with pytest.raises(UsageError, match="only listen on"):
            await sim.nursery.start(sim.node("a").serve, "b:1", unexpected)
        await sim.dial("a", address)


async def test_a_dial_to_nothing_is_refused_after_a_round_trip(autojump_clock: MockClock) -> None:
    async with running(Fabric(model=fixed(latency=(0.04, 0.04)))) as sim:
        start = trio.current_time()
        with pytest.raises(ConnectionLostError, match="refused"):
            await sim.node("a").connect("b:1")
        assert trio.current_time() - start == pytest.approx(0.08, abs=EXACT)


async def test_the_listener_learns_the_dialers_name(autojump_clock: MockClock) -> None:
    async with running(Fabric(model=fixed())) as sim:
        send, accepted = trio.open_memory_channel[tuple[trio.abc.Stream, str]](math.inf)

        async def handler(stream: trio.abc.Stream, remote: str) -> None:
            send.send_nowait((stream, remote))

        address = await sim.nursery.start(sim.node("b").serve, "b:1", handler)
        for dialer in ("a", "c"):
            await sim.node(dialer).connect(address)
            stream, remote = await accepted.receive()
            assert isinstance(stream, SimStream) and stream.remote == dialer
            assert remote.rpartition(":")[0] == dialer


# -- closing -----------------------------------------------------------------------------------


async def test_closing_gives_the_peer_the_frames_in_flight_then_a_clean_end(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=LinkModel(latency=(0.01, 0.05), jitter=5.0, loss=0.3), seed=9)
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        for i in range(20):
            await client.send_frame(numbered(i))
        await client.aclose()
        closed_at = trio.current_time()
        got = await receive_all(server)
        assert [number(f) for f, _ in got] == list(range(20))
        # The close went out one latency behind, yet the end waited for the late frames.
        assert got[-1][1] - closed_at > 2 * fabric.latency("a", "b")
        assert await server.receive_frame() is None  # the end stays the end
        # This side closed: it can neither send nor receive.
        with pytest.raises(ConnectionLostError, match="closed"):
            await client.send_frame(b"late")
        with pytest.raises(ConnectionLostError, match="closed"):
            await client.receive_frame()
        await client.aclose()  # idempotent
        assert fabric.connections_of("a") == 1  # half closed
        await server.aclose()
        assert fabric.connections_of("a") == fabric.connections_of("b") == 0


async def test_a_close_arrives_one_latency_later(autojump_clock: MockClock) -> None:
    async with running(Fabric(model=fixed(latency=(0.03, 0.03)))) as sim:
        client, server = await sim.pair("a", "b")
        start = trio.current_time()
        await server.aclose()
        assert await client.receive_frame() is None
        assert trio.current_time() - start == pytest.approx(0.03, abs=EXACT)
        # A half-closed connection still carries the other way (the closed side drops it).
        await client.send_frame(b"to a closed side")


async def test_the_stream_view_reads_partial_items_and_maps_ends_and_resets(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed())
    async with running(fabric) as sim:
        send, accepted = trio.open_memory_channel[trio.abc.Stream](math.inf)

        async def handler(stream: trio.abc.Stream, remote: str) -> None:
            send.send_nowait(stream)

        address = await sim.nursery.start(sim.node("b").serve, "b:1", handler)
        client = await sim.node("a").connect(address)
        server = await accepted.receive()
        await client.send_all(b"")  # nothing to send: not a message
        await client.send_all(b"hello world")
        await client.send_all(bytearray(b"!"))
        assert await server.receive_some(5) == b"hello"
        assert await server.receive_some() == b" world"
        assert await server.receive_some(10) == b"!"
        await client.wait_send_all_might_not_block()
        assert fabric.traffic["a"].messages_sent == 2
        await client.aclose()
        assert await server.receive_some() == b""  # a clean end
        await sim.node("c").connect(address)
        from_c = await accepted.receive()
        fabric.crash("c")
        with pytest.raises(trio.BrokenResourceError):  # a reset
            await from_c.receive_some()


# -- the direct transport ----------------------------------------------------------------------


async def test_direct_secure_gives_each_side_the_others_peer_id(autojump_clock: MockClock) -> None:
    async with running(Fabric(model=fixed())) as sim:
        address, inbox = await sim.listen("b")
        client = await sim.dial("a", address, expect=sim.peer_id("b"))
        server = await inbox.receive()
        assert isinstance(client, SimChannel) and isinstance(server, SimChannel)
        assert client.remote_id == sim.peer_id("b") and client.initiator
        assert server.remote_id == sim.peer_id("a") and not server.initiator
        await client.send_frame(b"to b")
        await server.send_frame(b"to a")
        assert await server.receive_frame() == b"to b"
        assert await client.receive_frame() == b"to a"


async def test_direct_secure_refuses_a_peer_other_than_the_expected_one(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=fixed())) as sim:
        address, inbox = await sim.listen("b")
        with pytest.raises(HandshakeError, match="another identity"):
            await sim.dial("a", address, expect=make_identity("mallory").peer_id)
        server = await inbox.receive()  # the listener's side was fine; then it sees the close
        assert isinstance(server, SimChannel)
        assert await server.receive_frame() is None


async def test_direct_secure_times_out_and_needs_a_fabric_stream(
    autojump_clock: MockClock,
) -> None:
    async with running(Fabric(model=fixed(latency=(1.0, 1.0)))) as sim:
        address, inbox = await sim.listen("b")
        net = sim.node("a")
        stream = await net.connect(address)
        start = trio.current_time()
        with pytest.raises(HandshakeError, match="timed out"):
            await net.secure(stream, sim.identities["a"], initiator=True, expect=None, timeout=1.5)
        assert trio.current_time() - start == pytest.approx(1.5, abs=EXACT)
        server = await inbox.receive()
        assert isinstance(server, SimChannel)
        assert await server.receive_frame() is None  # the timed-out side closed
        left, _right = trio.testing.memory_stream_pair()
        with pytest.raises(UsageError, match="direct transport"):
            await net.secure(left, sim.identities["a"], initiator=True, expect=None, timeout=1)


async def test_direct_secure_fails_if_the_peer_crashes_during_it(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed(latency=(0.1, 0.1)))
    async with running(fabric) as sim:
        address, _ = await sim.listen("b")
        net = sim.node("a")
        stream = await net.connect(address)
        fabric.crash("b")
        with pytest.raises(ConnectionLostError, match="handshake"):
            await net.secure(stream, sim.identities["a"], initiator=True, expect=None, timeout=5)


async def test_frames_over_the_limit_are_refused(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed())
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        with pytest.raises(UsageError, match="over the limit"):
            await client.send_frame(b"x" * (MAX_FRAME_SIZE + 1))
        assert fabric.traffic["a"].messages_sent == 0  # nothing went on the wire
        await client.send_frame(b"y" * MAX_FRAME_SIZE)
        frame = await server.receive_frame()
        assert frame is not None and len(frame) == MAX_FRAME_SIZE


# -- the noise transport -----------------------------------------------------------------------


async def test_the_noise_transport_works_end_to_end(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(latency=(0.02, 0.02)), transport="noise", seed=1)
    async with running(fabric) as sim:
        sim.node("a", Identity.generate())
        sim.node("b", Identity.from_seed(b"b" * 32))
        address, inbox = await sim.listen("b")
        start = trio.current_time()
        client = await sim.dial("a", address, expect=sim.peer_id("b"))
        # TCP's round trip, then Noise XX: the initiator is done after its third message.
        assert trio.current_time() - start == pytest.approx(0.04 + 0.04, abs=EXACT)
        server = await inbox.receive()
        assert trio.current_time() - start == pytest.approx(0.04 + 0.06, abs=EXACT)
        assert isinstance(client, SecureChannel) and isinstance(server, SecureChannel)
        assert client.remote_id == sim.peer_id("b") and server.remote_id == sim.peer_id("a")
        big = bytes(range(256)) * 800  # 200 kB: several Noise messages
        await client.send_frame(b"hello")
        await client.send_frame(big)
        await server.send_frame(b"hi back")
        assert await server.receive_frame() == b"hello"
        assert await server.receive_frame() == big
        assert await client.receive_frame() == b"hi back"
        await client.aclose()
        assert await server.receive_frame() is None
        # The fabric carried ciphertext: more bytes than the payloads, as stream writes.
        payload = 5 + len(big)
        assert fabric.traffic["a"].bytes_sent > payload + 16
        assert fabric.traffic["b"].bytes_received == fabric.traffic["a"].bytes_sent
        assert fabric.traffic["a"].messages_sent >= 2 + 4  # the handshake's two, then 4+ chunks


async def test_the_noise_transport_refuses_an_unexpected_peer(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(), transport="noise", seed=1)
    async with running(fabric) as sim:
        address, inbox = await sim.listen("b")
        with pytest.raises(HandshakeError, match="expected peer"):
            await sim.dial("a", address, expect=make_identity("mallory").peer_id)
        outcome = await inbox.receive()  # the responder never gets the last message
        assert isinstance(outcome, (HandshakeError, ConnectionLostError))


async def test_the_noise_transport_breaks_cleanly_on_a_crash(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(latency=(0.02, 0.02)), transport="noise", seed=1)
    async with running(fabric) as sim:
        client, _server = await sim.pair("a", "b")
        fabric.crash("b")
        got, _ = await receive_until_lost(client)
        assert got == []


# -- traffic -----------------------------------------------------------------------------------


async def test_traffic_counts_messages_and_bytes_per_node(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed())
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        sim.node("idle")
        assert fabric.traffic["a"].connections == fabric.traffic["b"].connections == 1
        for size in (10, 20, 30):
            await client.send_frame(b"x" * size)
        await server.send_frame(b"y" * 5)
        assert await server.receive_frame() == b"x" * 10
        assert await server.receive_frame() == b"x" * 20
        assert await client.receive_frame() == b"y" * 5
        a, b = fabric.traffic["a"], fabric.traffic["b"]
        assert (a.messages_sent, a.bytes_sent, a.messages_received, a.bytes_received) == (
            3, 60, 1, 5,
        )  # fmt: skip
        # Received means read: the third frame arrived but was not read yet.
        assert (b.messages_sent, b.bytes_sent, b.messages_received, b.bytes_received) == (
            1, 5, 2, 30,
        )  # fmt: skip
        assert await server.receive_frame() == b"x" * 30
        assert (b.messages_received, b.bytes_received) == (3, 60)
        assert fabric.traffic["idle"].messages_sent == fabric.traffic["idle"].connections == 0
        await sim.pair("c", "b", 2)
        assert fabric.traffic["b"].connections == 2 and fabric.traffic["c"].connections == 1


# -- bugs ----------------------------------------------------------------------------------------


async def _frames_then_end(seed: int, *, close: bool) -> tuple[list[int], str]:
    """Send frames 0..4 over a link that loses half the attempts and never retries; what
    the receiver got before its end, and which end ("eof" or "reset")."""
    model = fixed(loss=0.5, max_retries=0, min_rto=0.2)
    async with running(Fabric(model=model, seed=seed)) as sim:
        client, server = await sim.pair("a", "b")
        for i in range(5):
            try:
                await client.send_frame(numbered(i))
            except ConnectionLostError:
                break
        if close:
            await client.aclose()
        got: list[int] = []
        try:
            while (frame := await server.receive_frame()) is not None:
                got.append(number(frame))
        except ConnectionLostError:
            return got, "reset"
        return got, "eof"


async def test_frames_behind_a_frame_that_broke_the_connection_never_arrive(
    autojump_clock: MockClock,
) -> None:
    for seed in range(10):
        got, end = await _frames_then_end(seed, close=False)
        assert end == "reset" or got == list(range(5))
        assert got == list(range(len(got))), f"seed {seed}: the receiver got {got}"


async def test_a_lost_frame_is_never_followed_by_a_clean_end(autojump_clock: MockClock) -> None:
    for seed in range(10):
        got, end = await _frames_then_end(seed, close=True)
        assert end == "reset" or got == list(range(5)), f"seed {seed}: {got} then a clean end"


async def test_a_stale_serve_task_does_not_remove_its_successors_listener(
    autojump_clock: MockClock,
) -> None:
    fabric = Fabric(model=fixed())
    async with running(fabric) as sim:
        async with trio.open_nursery() as old:
            await sim.listen("b", 1, nursery=old)
            fabric.crash("b")  # the old incarnation's tasks are not cancelled yet
            sim.networks.pop("b")
            address, inbox = await sim.listen("b", 1)  # the restarted node listens again
            old.cancel_scope.cancel()
        try:
            await sim.dial("a", address)
        except ConnectionLostError as exc:
            pytest.fail(f"the restarted node's listener is gone: {exc}")
        assert isinstance(await inbox.receive(), SimChannel)


async def test_a_close_does_not_cross_a_cut(autojump_clock: MockClock) -> None:
    fabric = Fabric(model=fixed(), seed=1)
    async with running(fabric) as sim:
        client, server = await sim.pair("a", "b")
        now = trio.current_time()
        fabric.cuts.append(Cut(now, now + 3600, (frozenset({"a"}), frozenset({"b"}))))
        await client.aclose()
        with trio.move_on_after(60), contextlib.suppress(ConnectionLostError):
            frame = await server.receive_frame()  # a reset is fine; a clean end crossed the cut
            pytest.fail(f"the close crossed the cut: receive_frame() gave {frame!r}")


def test_lognormal_latencies_have_the_range_as_their_5th_to_95th_percentile() -> None:
    fabric = Fabric(model=LinkModel(latency=(0.010, 0.250), distribution="lognormal"), seed=3)
    values = sorted(fabric.latency(f"a{i}", f"b{i}") for i in range(4000))
    inside = sum(1 for v in values if 0.010 <= v <= 0.250) / len(values)
    assert 0.86 <= inside <= 0.94
    assert values[len(values) // 2] == pytest.approx((0.010 * 0.250) ** 0.5, rel=0.1)
    assert values[-1] > 0.250  # a tail of slow links
    with pytest.raises(UsageError, match="distribution"):
        LinkModel(distribution="zipf")
