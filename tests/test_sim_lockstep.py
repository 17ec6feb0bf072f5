"""A fabric split across two trio runs in lockstep (sim/lockstep.py, sim/remote.py).

The two runs here are threads joined by a pair of queues, each with its own
`SimClock`; `pttsync simulate` runs them as processes on a socket
(sim/bridge.py).  The property: whatever a script of dials, frames and closes does, every frame
arrives at the same virtual time, to the same node, with the network split
in two as with it whole.
"""

from __future__ import annotations

import contextlib
import functools
import math
import queue
import threading
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.errors import ConnectionLostError, UsageError
from pttsync.net.timers import use_ticks
from pttsync.sim.bridge import NOTHING
from pttsync.sim.clock import SimClock
from pttsync.sim.fabric import TICK, Fabric, LinkModel
from pttsync.sim.lockstep import Lockstep

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

END = 20.0  # virtual seconds each run lasts: every script's frames have arrived by then
Action = tuple[float, int, int]  # (when, from node, to node)
Record = tuple[float, str, bytes]  # (when it arrived, at which node, the frame)


class QueueBridge:
    """One end of a duplex pipe between two threads."""

    def __init__(self, out: queue.Queue[Any], inn: queue.Queue[Any]) -> None:
        self.out, self.inn = out, inn

    def send(self, obj: Any) -> None:
        self.out.put(obj)

    def recv(self, block: bool) -> Any:
        if not block:
            try:
                return self.inn.get_nowait()
            except queue.Empty:
                return NOTHING
        return self.inn.get(timeout=30)  # a lockstep bug must fail, not hang the suite

    def flush(self, gone: Callable[[Any], bool]) -> None:
        pass

    def drop_output(self) -> None:
        pass


def bridges() -> tuple[QueueBridge, QueueBridge]:
    a: queue.Queue[Any] = queue.Queue()
    b: queue.Queue[Any] = queue.Queue()
    return QueueBridge(a, b), QueueBridge(b, a)


def name(i: int) -> str:
    return f"n{i}"


async def play(
    fabric: Fabric, nodes: int, script: Sequence[Action], mine: Callable[[int], bool]
) -> list[Record]:
    """Run node `i` for each `mine(i)`: it listens, records every frame it receives,
    and sends its frames of `script` (dialing each peer at its first frame, closing
    after its last).  Ends at END."""
    use_ticks(TICK)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, SimClock)
    clock.drive()
    got: list[Record] = []
    pairs: dict[tuple[int, int], list[tuple[float, bytes]]] = {}
    for seq, (at, src, dst) in enumerate(script):
        pairs.setdefault((src, dst), []).append((at, f"{src}>{dst}#{seq}".encode()))

    async def sender(src: int, dst: int, frames: list[tuple[float, bytes]]) -> None:
        await trio.sleep_until(frames[0][0])
        try:
            stream = await fabric.network(name(src), b"").connect(f"{name(dst)}:1")
        except ConnectionLostError:
            return
        try:
            for at, frame in frames:
                await trio.sleep_until(max(at, trio.current_time()))
                await stream.send_all(frame)
        except trio.BrokenResourceError:  # lost too often: TCP gives up
            pass
        await stream.aclose()

    with trio.move_on_at(END):
        async with trio.open_nursery() as nursery:
            for i in range(nodes):
                if mine(i):

                    async def handler(stream: trio.abc.Stream, _: str, me: str = name(i)) -> None:
                        with contextlib.suppress(trio.BrokenResourceError):
                            while data := await stream.receive_some():
                                got.append((trio.current_time(), me, bytes(data)))
                        await stream.aclose()

                    net = fabric.network(name(i), b"")
                    await nursery.start(net.serve, f"{name(i)}:1", handler)
            for (src, dst), frames in pairs.items():
                if mine(src):
                    nursery.start_soon(sender, src, dst, frames)
    return got


def whole(model: LinkModel, nodes: int, script: Sequence[Action]) -> list[Record]:
    fabric = Fabric(model=model, seed=1)
    got = trio.run(play, fabric, nodes, script, lambda i: True, clock=SimClock())
    return arrived(got)


def arrived(got: list[Record]) -> list[Record]:
    """By time and node; a node's frames of one instant stay in their order of arrival."""
    return sorted(got, key=lambda r: (r[0], r[1]))


def in_two_parts(model: LinkModel, body: Callable[[Fabric, int], Awaitable[Any]]) -> list[Any]:
    """`body(fabric, k)` run by part k = 0 and 1, each in its own thread and trio run,
    in lockstep; node NAME+i is part i % 2's.  Their results, by part."""
    results: list[Any] = [None, None]
    errors: list[BaseException] = []
    fabrics = [Fabric(model=model, seed=1) for _ in range(2)]
    ends = bridges()

    def part(k: int) -> None:
        step = Lockstep(ends[k], k, model.latency[0])
        fabrics[k].split(step, lambda node: int(node[1:]) % 2 == k)
        try:
            results[k] = trio.run(body, fabrics[k], k, clock=SimClock(step))
        except BaseException as exc:
            errors.append(exc)
        finally:
            step.finish()

    threads = [threading.Thread(target=part, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def split(
    model: LinkModel, nodes: int, script: Sequence[Action]
) -> tuple[list[Record], list[Fabric]]:
    """The same script, node i run by part i % 2, each part in its own thread."""
    fabrics: list[Fabric] = [Fabric(), Fabric()]

    async def body(fabric: Fabric, k: int) -> list[Record]:
        fabrics[k] = fabric
        return await play(fabric, nodes, script, lambda i: i % 2 == k)

    results = in_two_parts(model, body)
    return arrived(results[0] + results[1]), fabrics


scripts = st.integers(2, 5).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.tuples(
                st.integers(0, 4000).map(lambda ms: ms / 1000),
                st.integers(0, n - 1),
                st.integers(0, n - 1),
            ).filter(lambda a: a[1] != a[2]),
            max_size=40,
        ),
    )
)


@settings(max_examples=40, deadline=None)
@given(scripts, st.sampled_from([(0.005, 0.080), (0.010, 0.010), (0.001, 0.300)]))
def test_a_split_network_delivers_every_frame_when_the_whole_one_does(
    script: tuple[int, list[Action]], latency: tuple[float, float]
) -> None:
    nodes, actions = script
    model = LinkModel(latency=latency, jitter=0.0)
    expected = whole(model, nodes, actions)
    got, fabrics = split(model, nodes, actions)
    assert sorted(got) == sorted(expected)
    assert len(got) == len(actions)
    # Every connection closed both ways: neither part keeps a half of it.
    assert [f.remote.open for f in fabrics if f.remote is not None] == [0, 0]


@settings(max_examples=15, deadline=None)
@given(scripts)
def test_a_split_run_with_jitter_and_loss_is_the_same_every_time(
    script: tuple[int, list[Action]],
) -> None:
    nodes, actions = script
    model = LinkModel(latency=(0.005, 0.080), jitter=0.5, loss=0.2, max_retries=2)
    first, _ = split(model, nodes, actions)
    again, _ = split(model, nodes, actions)
    # The same frames at the same times.  (Which of two frames from two connections
    # a node reads first at one instant is trio's task order, which these threads
    # cannot seed; `pttsync simulate` seeds it in each process: run.deterministic_trio.)
    assert sorted(first) == sorted(again)
    # Per connection, frames arrive in the order they were sent.
    sent_order = {f"{src}>{dst}#{seq}".encode(): seq for seq, (_, src, dst) in enumerate(actions)}
    by_pair: dict[bytes, list[int]] = {}
    for _, _, frame in first:
        by_pair.setdefault(frame.split(b"#")[0], []).append(sent_order[frame])
    assert all(seqs == sorted(seqs) for seqs in by_pair.values())


def test_a_dial_to_a_node_nobody_serves_is_refused_across_too() -> None:
    model = LinkModel(latency=(0.01, 0.01), jitter=0.0)
    outcome: dict[str, float] = {}

    async def dial_nobody(fabric: Fabric, k: int) -> None:
        use_ticks(TICK)
        clock = trio.lowlevel.current_clock()
        assert isinstance(clock, SimClock)
        clock.drive()
        if k == 0:
            with pytest.raises(ConnectionLostError, match="refused"):
                await fabric.network("n0", b"").connect("n1:1")
            outcome["refused_at"] = trio.current_time()
        await trio.sleep(1.0)

    in_two_parts(model, dial_nobody)
    assert outcome["refused_at"] == pytest.approx(0.02)  # a round trip, as when whole


def test_an_item_that_would_arrive_inside_the_window_is_a_bug() -> None:
    step = Lockstep(bridges()[0], 0, 0.005)
    with pytest.raises(AssertionError, match="crosses sooner"):
        step.post(0.004, "too soon")


def test_a_lockstep_needs_a_least_latency() -> None:
    with pytest.raises(UsageError, match="least latency"):
        Lockstep(bridges()[0], 0, 0.0)
    with pytest.raises(UsageError, match="parts 0 and 1"):
        Lockstep(bridges()[0], 2, 0.005)
    with pytest.raises(UsageError, match="least latency"):
        Lockstep(bridges()[0], 0, math.inf)


async def told_hosts(fabric: Fabric, *, serve: bool, dial: bool) -> list[str]:
    """n1 serves (if `serve`) and n0, n2 dial it (if `dial`): the hosts n1's handler
    was told, the part before ':' of what it gets (net/gate.py counts by it)."""
    use_ticks(TICK)
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, SimClock)
    clock.drive()
    told: list[str] = []

    async def handler(stream: trio.abc.Stream, remote: str) -> None:
        told.append(remote.rpartition(":")[0])
        await stream.aclose()

    with trio.move_on_after(1.0):
        async with trio.open_nursery() as nursery:
            if serve:
                await nursery.start(fabric.network("n1", b"").serve, "n1:1", handler)
            for dialer in ("n0", "n2") if dial else ():
                await fabric.network(dialer, b"").connect("n1:1")
    return sorted(told)


def test_a_listener_is_told_the_dialer_as_host_split_or_whole() -> None:
    """A dial across names its dialer as the host, as a dial within one fabric does:
    the listening node's per-host cap on connections not yet admitted holds alike."""
    model = LinkModel(latency=(0.01, 0.01), jitter=0.0)
    whole = trio.run(
        functools.partial(told_hosts, Fabric(model=model, seed=1), serve=True, dial=True),
        clock=SimClock(),
    )

    async def body(fabric: Fabric, k: int) -> list[str]:
        return await told_hosts(fabric, serve=k == 1, dial=k == 0)

    assert whole == in_two_parts(model, body)[1] == ["n0", "n2"]
