"""The simulated wire: what one connection does with the frames put on it.

The fabric (fabric.py) owns the connections and delivers frames at their
times; this module is one connection's side of that: the link model (the
settings), a partition's `Cut`, the traffic counters, the two pipes of a
connection with their latency, loss and retransmission, bandwidth and
reset, and the two views of one side of it: a byte stream (`SimStream`,
what `Network.connect` returns) and a frame channel (`SimChannel`, what the
direct transport's secure step returns).  fabric.py's text describes the
model as a whole.  A connection sees its fabric only as a `Medium` (the
link model, partitions, delivery and the traffic counters), so this module
does not depend on fabric.py.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import trio

from ..core.sync.frames import MAX_FRAME_SIZE
from ..errors import ConnectionLostError, UsageError
from ..net.timers import Alarm

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from ..net.peer import LinkStats
    from .framememo import FrameMemo

    Handle = Callable[[bytes], bool]

DISTRIBUTIONS = ("uniform", "lognormal")
TICK = 0.001
"""Frames arrive on whole milliseconds of virtual time (a delivery costs a call by
the timers' service; a millisecond is well under any latency worth simulating)."""


@dataclass(frozen=True, slots=True)
class LinkModel:
    """How the simulated wire behaves (see the module text)."""

    latency: tuple[float, float] = (0.005, 0.080)  # one-way seconds, per node pair
    distribution: str = "uniform"  # of the latencies: uniform, or lognormal
    jitter: float = 0.1  # extra latency per frame, up to this fraction of the link's
    loss: float = 0.0  # probability that one attempt to send a frame is lost
    bandwidth: float = 0.0  # bytes per second per direction of a connection; 0: unlimited
    min_rto: float = 0.2  # the first retransmission timeout (doubling after each loss)
    max_retries: int = 6  # retransmissions of one frame before the connection breaks

    def __post_init__(self) -> None:
        lo, hi = self.latency
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= 60):
            raise UsageError("latency must be a range lo:hi with 0 <= lo <= hi <= 60 s")
        if self.distribution not in DISTRIBUTIONS:
            raise UsageError(f"latency distribution must be one of {', '.join(DISTRIBUTIONS)}")
        if not 0 <= self.jitter <= 10:
            raise UsageError("jitter must be in [0, 10] (a fraction of the link's latency)")
        if not 0 <= self.loss < 1:
            raise UsageError("loss must be a probability in [0, 1)")
        if not (math.isfinite(self.bandwidth) and self.bandwidth >= 0):
            raise UsageError("bandwidth must be a number of bytes per second (0: unlimited)")
        if not 0 < self.min_rto <= 60 or not 0 <= self.max_retries <= 30:
            raise UsageError("min_rto must be in (0, 60] s and max_retries in [0, 30]")


@dataclass(frozen=True, slots=True)
class Cut:
    """A partition: from `start` to `end` (trio seconds) only nodes of one group talk."""

    start: float
    end: float
    groups: tuple[frozenset[str], ...]

    def splits(self, a: str, b: str, t: float) -> bool:
        if not self.start <= t < self.end:
            return False
        return not any(a in g and b in g for g in self.groups)


@dataclass(slots=True)
class Traffic:
    """What one node sent and received over the fabric (frames or stream writes)."""

    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    connections: int = 0  # connections it opened or accepted


_EOF: Final = 0  # scheduled instead of bytes: the sender closed its side
_RESET: Final = 1  # scheduled instead of bytes: the connection broke


class _Pipe:
    """One direction of a connection: what arrived and is not yet read."""

    __slots__ = (
        "broken", "eof", "handed", "inline", "items", "last_arrival", "queued_inline",
        "receiver", "remote", "tx_free", "waiter",
    )  # fmt: skip

    def __init__(self, receiver: str) -> None:
        self.receiver = receiver
        self.items: deque[bytes] = deque()
        self.eof = False
        self.broken = False
        self.last_arrival = 0.0
        self.tx_free = 0.0  # when the sender's wire is free again (bandwidth)
        self.waiter = Alarm()  # the reader's, rung by a delivery
        # The parked reader's handler of frames (`_End.park`), and the frames on
        # their way to it (the fabric's inline delivery keeps their order).
        self.inline: Handle | None = None
        self.queued_inline = 0
        self.handed = False  # the handler gave a frame back to the reader's task
        # (connection, towards its dialer) if another process runs the reader (remote.py)
        self.remote: tuple[str, bool] | None = None

    def wake(self) -> None:
        self.waiter.ring()

    async def wait(self) -> None:
        await self.waiter.wait_until(math.inf)

    def takes_inline(self) -> bool:
        """True if a frame arriving now goes to the parked reader's handler: the
        handler is set and its reader still parked (not cancelled), and nothing
        arrived before it that the reader has still to read."""
        if self.inline is None:
            return False
        return self.queued_inline > 0 or (not self.items and self.waiter.waiting)

    def put(self, item: bytes | int) -> None:
        """Deliver `item` the usual way: queued for the reader (or its end, or a
        reset), and the reader woken."""
        if isinstance(item, bytes):
            if not self.broken:
                self.items.append(item)
        elif item == _RESET:
            self.broken = True
        else:
            self.eof = True
        self.wake()

    def hand(self, item: bytes | int) -> bool:
        """Deliver `item`, which the fabric queued for the handler (`takes_inline`):
        to the handler if its reader is still parked (True), else the usual way."""
        self.queued_inline -= 1
        handle = self.inline
        if handle is None or not isinstance(item, bytes) or self.broken or not self.waiter.waiting:
            self.put(item)
            return False
        if not handle(item):  # the reader's task has the rest of that frame's work
            self.inline = None
            self.handed = True
            self.wake()
        return True


def inbound(dialer: str, name: str) -> str:
    """What a listener's handler is told of a connection from `dialer`: "HOST:WHICH",
    the host being what the node's door counts places by (net/gate.py)."""
    return f"{dialer}:{name}"


class Medium(Protocol):
    """What a connection needs of the fabric it runs on (fabric.Fabric is one)."""

    frames: FrameMemo  # what its nodes encode and decode, shared (framememo.py)
    cuts: list[Cut]  # its partitions (none: `is_cut` is never true)

    @property
    def model(self) -> LinkModel: ...

    def is_cut(self, a: str, b: str, t: float) -> bool:
        """True if a partition separates nodes `a` and `b` at time `t`."""
        ...

    def schedule(self, when: float, pipe: _Pipe, item: bytes | int) -> None:
        """Deliver `item` to `pipe` at `when` (or its end, _EOF, or a reset, _RESET)."""
        ...

    def traffic_of(self, name: str) -> Traffic:
        """The traffic counters of node `name`."""
        ...

    @property
    def inline(self) -> bool:
        """True if a task of the fabric's hands frames to parked readers (`_End.park`)."""
        ...


class _Connection:
    """Two pipes between a dialer and a listener, and what they share."""

    def __init__(
        self, fabric: Medium, dialer: str, listener: str, latency: float, rng: random.Random
    ) -> None:
        self.fabric = fabric
        self.ends = (dialer, listener)
        self.latency = latency
        self.rng = rng
        self.to_listener = _Pipe(listener)
        self.to_dialer = _Pipe(dialer)
        self.doomed_at = math.inf  # when it breaks (a crash, or a frame lost too often)
        self.closed_sides = 0  # sides that closed (2: the connection is over)
        self.rto = max(fabric.model.min_rto, 4 * latency)

    @property
    def over(self) -> bool:
        return self.closed_sides >= 2 or self.doomed_at <= trio.current_time()

    def pipes(self, side: str) -> tuple[_Pipe, _Pipe]:
        """(outgoing, incoming) for one side, by node name."""
        if side == self.ends[0]:
            return self.to_listener, self.to_dialer
        return self.to_dialer, self.to_listener

    def other(self, side: str) -> str:
        return self.ends[1] if side == self.ends[0] else self.ends[0]

    def send(self, out: _Pipe, item: bytes | int, depart: float) -> None:
        """Put one item (bytes, or _EOF) on the wire at `depart` towards `out` (one
        of this connection's pipes), or break the connection trying.  Once a frame
        is lost for good, nothing sent after it arrives: TCP delivers a stream in
        order or not at all."""
        if self.doomed_at < math.inf:
            return
        model, fabric = self.fabric.model, self.fabric
        t = depart
        if model.loss > 0 or fabric.cuts:  # else no attempt is lost (and no draw is made)
            a, b = self.ends
            rto = self.rto
            for attempt in range(model.max_retries + 1):
                lost = fabric.is_cut(a, b, t) or (model.loss > 0 and self.rng.random() < model.loss)
                if not lost:
                    break
                if attempt == model.max_retries:
                    self.doom(t + rto)
                    return
                t += rto
                rto *= 2
        arrival = t + self.latency * (1 + model.jitter * self.rng.random())
        # Arrivals fall on the fabric's clock ticks (1 ms): frames due within one
        # tick are delivered by one delivery call (fabric.py), not one each.
        arrival = max(math.ceil(arrival / TICK - 1e-6) * TICK, out.last_arrival)
        if arrival >= self.doomed_at:
            return  # it would arrive after the connection broke
        out.last_arrival = arrival
        fabric.schedule(arrival, out, item)

    def doom(self, when: float) -> None:
        """Break the connection at `when` (each side learns it as a reset)."""
        if when >= self.doomed_at:
            return
        self.doomed_at = when
        for pipe in (self.to_listener, self.to_dialer):
            self.fabric.schedule(when, pipe, _RESET)


class _End:
    """One side of a connection: the stream (bytes) and channel (frames) views share it."""

    def __init__(self, connection: _Connection, side: str) -> None:
        self.connection = connection
        self.side = side
        self.out, self.inn = connection.pipes(side)
        self.traffic = connection.fabric.traffic_of(side)
        self.closed = False
        # trio.current_time, read off the run's clock itself (two calls fewer a frame)
        self._now = trio.lowlevel.current_clock().current_time
        self._buffer = b""  # stream view: the rest of a partly read item

    def put(self, item: bytes) -> tuple[float, float]:
        """Put one item on the wire: (now, when it leaves).  ConnectionLostError if closed."""
        if self.closed:
            raise ConnectionLostError("this side of the connection is closed")
        conn = self.connection
        now = self._now()
        if self.inn.broken or now >= conn.doomed_at:
            raise ConnectionLostError("the connection was reset")
        depart = now
        bandwidth = conn.fabric.model.bandwidth
        if bandwidth > 0:
            start = max(now, self.out.tx_free)
            self.out.tx_free = depart = start + len(item) / bandwidth
        self.traffic.messages_sent += 1
        self.traffic.bytes_sent += len(item)
        conn.send(self.out, item, depart)
        return now, depart

    async def send(self, item: bytes) -> None:
        now, depart = self.put(item)
        if depart > now:
            await trio.sleep_until(depart)  # the sender's wire is busy: back-pressure
        else:
            # Not a full checkpoint: one context switch fewer per frame, and the
            # caller (a link's writer) yields on its own queue anyway.
            await trio.lowlevel.checkpoint_if_cancelled()

    async def receive(self) -> bytes | None:
        """The next item; None at a clean end.  ConnectionLostError if reset or closed here."""
        while True:
            if self.closed:
                raise ConnectionLostError("this side of the connection is closed")
            if self.inn.items:
                await trio.lowlevel.checkpoint_if_cancelled()
                item = self.inn.items.popleft()
                self.count(item)
                return item
            if self.inn.broken:
                raise ConnectionLostError("the connection was reset")
            if self.inn.eof:
                await trio.lowlevel.checkpoint()
                return None
            await self.inn.wait()

    async def park(self, handle: Handle) -> bool:
        """Wait for what arrives with `handle` attached: frames that arrive while this
        side waits are given to `handle(frame)` by the fabric's delivery task, not
        returned, as long as it returns True (it took the frame and all its work).

        Returns True once `handle` returned False (it took a frame, but the caller's
        task has the rest of its work); False at once, or when woken, if there is
        something to `receive` instead (a frame queued, the end, a reset, the side
        closed) or the fabric hands nothing inline: the caller then receives.
        """
        inn = self.inn
        if self.closed or inn.items or inn.broken or inn.eof or not self.connection.fabric.inline:
            return False
        inn.inline = handle
        inn.handed = False
        try:
            await inn.wait()
        finally:
            inn.inline = None
        return inn.handed

    def count(self, item: bytes) -> None:
        """Count one frame received."""
        self.traffic.messages_received += 1
        self.traffic.bytes_received += len(item)

    def close(self) -> None:
        """Close this side: the peer reads what is in flight, then the end."""
        if self.closed:
            return
        self.closed = True
        self.inn.wake()
        conn = self.connection
        conn.closed_sides += 1
        if not self.inn.broken:
            conn.send(self.out, _EOF, trio.current_time())  # the FIN: lost or cut like a frame


class SimStream(trio.abc.Stream):
    """One side of a simulated connection as a byte stream (what `connect` returns)."""

    def __init__(self, end: _End, remote: str) -> None:
        self.end = end
        self.remote = remote  # the node at the other end

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if data:
            await self.end.send(bytes(data))
        else:
            await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        end = self.end
        if not end._buffer:
            try:
                item = await end.receive()
            except ConnectionLostError as exc:
                raise trio.BrokenResourceError(str(exc)) from None
            if item is None:
                return b""
            end._buffer = item
        n = len(end._buffer) if max_bytes is None else max_bytes
        data, end._buffer = end._buffer[:n], end._buffer[n:]
        return data

    async def aclose(self) -> None:
        self.end.close()
        await trio.lowlevel.checkpoint()


class SimChannel:
    """One side of a connection as a frame channel (the direct transport's `Channel`)."""

    def __init__(self, end: _End, remote_id: bytes, *, initiator: bool) -> None:
        self.end = end
        self.remote_id = remote_id
        self.initiator = initiator
        # Asked of every frame sent: looked up once (a fabric's link model is fixed).
        self._limited = end.connection.fabric.model.bandwidth > 0
        self._put = end.put
        # What `PeerLink` encodes and decodes its frames with: the fabric's, which every
        # node shares (framememo.py: most frames are equal to one another node sent or
        # received lately).
        frames = end.connection.fabric.frames
        self.encode, self.decode = frames.encode, frames.decode

    async def send_frame(self, payload: bytes) -> None:
        if len(payload) > MAX_FRAME_SIZE:
            raise UsageError(f"a {len(payload)}-byte frame is over the limit of {MAX_FRAME_SIZE}")
        await self.end.send(payload)

    def send_frame_nowait(self, payload: bytes) -> bool:
        """Send one frame now if the wire takes it without waiting (no bandwidth limit).

        PeerLink uses it to skip its writer task when nothing is queued.
        Raises ConnectionLostError and UsageError as `send_frame` does.
        """
        if len(payload) > MAX_FRAME_SIZE:
            raise UsageError(f"a {len(payload)}-byte frame is over the limit of {MAX_FRAME_SIZE}")
        if self._limited:
            return False
        self._put(payload)
        return True

    async def receive_frame(self) -> bytes | None:
        return await self.end.receive()

    async def park(self, handle: Handle, stats: LinkStats | None = None) -> bool:
        """Wait with `handle` taking the frames that arrive (`_End.park`): a reader
        parked here costs no wake-up of its task a frame.  Each frame is counted in
        the fabric's traffic, and in `stats` too if given (the link's: one call a
        frame fewer than a count of its own around `handle`)."""
        traffic = self.end.traffic

        def counted(frame: bytes) -> bool:
            n = len(frame)
            traffic.messages_received += 1
            traffic.bytes_received += n
            if stats is not None:
                stats.messages_received += 1
                stats.bytes_received += n
            return handle(frame)

        return await self.end.park(counted)

    async def aclose(self) -> None:
        self.end.close()
        await trio.lowlevel.checkpoint()
