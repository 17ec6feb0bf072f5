"""The simulated network: connections with latency, loss, bandwidth, partitions and crashes.

Every node of a simulation gets its own `SimNetwork` (the `Network` a
`Node` dials and listens through); they all share one `Fabric`, which
carries every byte on trio's clock (a run's `SimClock`, clock.py, so
a simulated hour costs no wall time).

The model is TCP's, seen from the application:

* **Latency.**  Each pair of nodes has a one-way latency, drawn once from
  `LinkModel.latency`: uniform in the range, or log-normal with the range
  as its 5th to 95th percentile (a long tail of slow links, as on the
  Internet); each frame adds up to `jitter` of it at random.
  Frames of one connection arrive in order; frames of different
  connections interleave freely (so messages reorder *across* connections).
* **Loss.**  A frame is lost with probability `loss` and sent again after a
  retransmission timeout that doubles each time (head-of-line blocking: the
  frames behind it wait).  A frame lost on `max_retries` retransmissions
  too (`max_retries + 1` attempts in all) breaks the connection, as TCP
  gives up; nothing sent after it arrives.
* **Bandwidth.**  With `bandwidth` set, each direction of a connection
  sends at most that many bytes per second; a sender waits for the wire,
  so a node's bounded send queue fills and its pushes are dropped.
* **Partitions.**  A `Cut` splits the nodes into groups from `start` to
  `end`.  Every attempt to send across it is lost, so a connection used
  across it breaks after the retries; a dial across it hangs until the
  node's connect timeout.  Idle connections survive a short cut, as TCP's do.
* **Crashes.**  `crash(name)` breaks every connection of a node at once
  (its peers see the reset one latency later) and drops its listener.

Connections start with a TCP handshake (one round trip).  With the
default `transport="direct"` the secure handshake costs one more round trip
and proves nothing: the fabric knows who is who, so no Noise messages are
made (they would cost ~2 ms of CPU per connection, which a thousand-node
run cannot afford).  `transport="noise"` runs the real Noise XX handshake
and encryption over the simulated bytes, for smaller, fuller-fidelity runs.

All randomness comes from the fabric's seed, per connection, so a run is
the same every time it is given the same seed.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..errors import (
    ConnectionLostError,
    HandshakeError,
    HandshakeTimeoutError,
    SelfConnectionError,
    UsageError,
)
from ..net.network import format_address
from ..net.timers import Handoff, call_at, sleep
from ..net.transport import secure_handshake
from .framememo import FrameMemo
from .link import (
    _RESET,
    DISTRIBUTIONS,
    TICK,
    Cut,
    LinkModel,
    SimChannel,
    SimStream,
    Traffic,
    _Connection,
    _End,
    _Pipe,
    inbound,
)
from .remote import Remote

__all__ = [
    "DISTRIBUTIONS",
    "TICK",
    "TRANSPORTS",
    "Cut",
    "Fabric",
    "LinkModel",
    "SimChannel",
    "SimNetwork",
    "SimStream",
    "Traffic",
]

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..core.identity import Identity
    from ..net.peer import Channel
    from .lockstep import Lockstep

log = logging.getLogger(__name__)

TRANSPORTS = ("direct", "noise")


@dataclass(slots=True)
class _Listener:
    owner: str
    nursery: trio.Nursery
    handler: Callable[[trio.abc.Stream, str], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    """Scheduled deliveries, earliest first (ties in the order they were made)."""

    heap: list[tuple[float, int, _Pipe, bytes | int]] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)


def _give_back(to: tuple[_Pipe, bytes | int]) -> None:
    """A frame on its way to a handler when the handing ended: its reader takes it."""
    pipe, item = to
    pipe.queued_inline -= 1
    pipe.put(item)


class Fabric:
    """Every simulated connection, and the delivery of their frames at their times."""

    def __init__(
        self, *, model: LinkModel | None = None, seed: int = 0, transport: str = "direct"
    ) -> None:
        if transport not in TRANSPORTS:
            raise UsageError(f"transport must be one of {', '.join(TRANSPORTS)}")
        self.model = model or LinkModel()
        self.seed = seed
        self.transport = transport
        self.cuts: list[Cut] = []
        self.traffic: dict[str, Traffic] = {}
        self.identities: dict[str, bytes] = {}  # node name -> peer ID
        self._listeners: dict[str, _Listener] = {}
        self._connections: dict[str, list[_Connection]] = {}
        self._latency: dict[tuple[str, str], float] = {}
        self._pending = _Pending()
        self._armed: set[float] = set()  # the times a delivery call is due
        self._pair_dials: dict[str, int] = {}  # "dialer>target" -> its dials so far
        # Frames for parked readers' handlers (`_End.park`), handed over by one task.
        self._to_hand: Handoff[tuple[_Pipe, bytes | int]] = Handoff()
        self.handed = 0  # frames it handed (statistics)
        self.frames = FrameMemo()  # frames decoded lately, for every node (framememo.py)
        self.remote: Remote | None = None  # the connections to another process's peers

    def split(self, lockstep: Lockstep, mine: Callable[[str], bool]) -> Remote:
        """Run only the nodes `mine(name)` holds; the others' connections cross to
        the other process of `lockstep` (remote.py).  Call before any node starts."""
        if self.remote is not None:
            raise UsageError("the fabric is split already")
        self.remote = Remote(self, lockstep, mine)
        return self.remote

    @property
    def inline(self) -> bool:
        """True while a task hands frames to parked readers (`hand_inline`)."""
        return self._to_hand.running

    # -- the nodes' view --------------------------------------------------------------

    def network(self, name: str, peer_id: bytes) -> SimNetwork:
        """The `Network` of node `name` (whose peer ID is `peer_id`)."""
        self.identities[name] = peer_id
        self.traffic.setdefault(name, Traffic())
        return SimNetwork(self, name)

    def traffic_of(self, name: str) -> Traffic:
        return self.traffic.setdefault(name, Traffic())

    def latency(self, a: str, b: str) -> float:
        """The one-way latency between two nodes (drawn once per pair, from the seed)."""
        key = (a, b) if a < b else (b, a)
        value = self._latency.get(key)
        if value is None:
            lo, hi = self.model.latency
            rng = random.Random(f"{self.seed}/latency/{key[0]}/{key[1]}")
            if self.model.distribution == "lognormal" and hi > 0:
                # lo..hi is the 5th..95th percentile: median sqrt(lo*hi), sigma ln(hi/lo)/3.29.
                median = math.sqrt(lo * hi) if lo > 0 else hi / 2
                sigma = math.log(hi / lo) / 3.29 if lo > 0 else 1.0
                value = min(60.0, rng.lognormvariate(math.log(median), sigma))
            else:
                value = rng.uniform(lo, hi)
            self._latency[key] = value
        return value

    def is_cut(self, a: str, b: str, t: float) -> bool:
        # Asked for every frame sent: without partitions, no generator to build.
        return bool(self.cuts) and any(cut.splits(a, b, t) for cut in self.cuts)

    @property
    def in_flight(self) -> int:
        return len(self._pending.heap)

    def connections_of(self, name: str) -> int:
        return sum(1 for c in self._connections.get(name, ()) if not c.over)

    # -- faults ------------------------------------------------------------------------

    def crash(self, name: str) -> None:
        """Node `name` stops: its connections reset, its listener is gone."""
        now = trio.current_time()
        for address in [a for a, ln in self._listeners.items() if ln.owner == name]:
            del self._listeners[address]
        for conn in self._connections.pop(name, []):
            other = conn.other(name)
            mine, _ = conn.pipes(other)  # what flows to the crashed node
            theirs, _ = conn.pipes(name)  # what flows to its peer
            conn.doomed_at = min(conn.doomed_at, now + conn.latency)
            self.schedule(now, mine, _RESET)
            self.schedule(now + conn.latency, theirs, _RESET)
            peers = self._connections.get(other)
            if peers is not None and conn in peers:
                peers.remove(conn)

    # -- delivery ------------------------------------------------------------------------

    def schedule(self, when: float, pipe: _Pipe, item: bytes | int) -> None:
        """Deliver `item` to `pipe` at `when` (or its end, _EOF, or a reset, _RESET)."""
        if pipe.remote is not None:
            assert self.remote is not None
            self.remote.send(when, pipe, item)
            return
        p = self._pending
        heapq.heappush(p.heap, (when, next(p.counter), pipe, item))
        if when not in self._armed:  # one delivery call a distinct time (a 1 ms tick)
            self._armed.add(when)
            call_at(when, functools.partial(self._deliver, when))

    def _deliver(self, at: float) -> None:
        """Deliver every item due by now (run by the timers' service at `at`)."""
        self._armed.discard(at)
        heap = self._pending.heap
        now = trio.current_time()
        handoff = self._to_hand
        inline, to_hand = handoff.running, handoff.items
        while heap and heap[0][0] <= now:
            _, _, pipe, item = heapq.heappop(heap)
            if inline and pipe.takes_inline():
                pipe.queued_inline += 1
                to_hand.append((pipe, item))
            else:
                pipe.put(item)
        if to_hand:
            handoff.ring()

    async def hand_inline(self) -> None:
        """Hand the frames that arrive for parked readers to their handlers
        (`_End.park`), all those due at one instant in one turn of this task: a
        frame then costs no wake-up of its reader's task.  Run it as a task for as
        long as the fabric is used; without it every reader is woken a frame.  At
        its end the frames on their way go to their readers the usual way."""
        if self.inline:
            raise UsageError("the fabric's frames are already handed by a task")
        await self._to_hand.run(self._hand, _give_back)

    def _hand(self, to: tuple[_Pipe, bytes | int]) -> None:
        pipe, item = to
        self.handed += pipe.hand(item)

    # -- connections ----------------------------------------------------------------------

    async def _connect(self, dialer: str, address: str) -> SimStream:
        host = address.rpartition(":")[0]
        if self.remote is not None and not self.remote.mine(host):
            latency = self.latency(dialer, host)
            await self._through_cuts(dialer, host)
            name = self._name(dialer, host)
            return await self.remote.connect(name, dialer, host, address, latency)
        listener = self._listeners.get(address)
        if listener is None:
            await sleep(2 * self.latency(dialer, host), exact=True)
            raise ConnectionLostError(f"cannot connect to {address}: connection refused")
        target = listener.owner
        latency = self.latency(dialer, target)
        await self._through_cuts(dialer, target)
        # SYN, SYN-ACK.  The simulated delays sleep on the timers' service, exact:
        # `trio.sleep`'s cancel scopes were a tenth of 10,000 peers' setup.
        await sleep(2 * latency, exact=True)
        listener = self._listeners.get(address)
        if listener is None or listener.owner != target:
            raise ConnectionLostError(f"cannot connect to {address}: connection refused")
        # Its randomness is its own (not the order of the dials of one instant).
        name = self._name(dialer, target)
        rng = random.Random(f"{self.seed}/conn/{name}")
        conn = _Connection(self, dialer, target, latency, rng)
        self.opened(conn, dialer)
        self.opened(conn, target)
        server = SimStream(_End(conn, target), dialer)
        listener.nursery.start_soon(listener.handler, server, inbound(dialer, name))
        return SimStream(_End(conn, dialer), target)

    def _name(self, dialer: str, target: str) -> str:
        """A new connection's name: its ends and the count of such dials so far."""
        pair = f"{dialer}>{target}"
        n = self._pair_dials[pair] = self._pair_dials.get(pair, 0) + 1
        return f"{pair}#{n}"

    async def _through_cuts(self, dialer: str, target: str) -> None:
        """SYN retransmissions at 0, 1, 3, 7, 15, 31 s: a dial across a cut hangs
        until one gets through or the caller's connect timeout gives up."""
        start = trio.current_time()
        for wait in (0.0, 1.0, 3.0, 7.0, 15.0, 31.0):
            if wait:
                await trio.sleep_until(start + wait)
            if not self.is_cut(dialer, target, trio.current_time()):
                return
        await trio.sleep_forever()

    def listener(self, address: str) -> _Listener | None:
        """Who listens on `address` now, if anyone."""
        return self._listeners.get(address)

    def opened(self, conn: _Connection, side: str) -> None:
        """Count `conn` among node `side`'s connections."""
        live = [c for c in self._connections.get(side, ()) if not c.over]
        live.append(conn)
        self._connections[side] = live
        self.traffic_of(side).connections += 1

    async def _serve(
        self,
        owner: str,
        address: str,
        handler: Callable[[trio.abc.Stream, str], Awaitable[None]],
        task_status: trio.TaskStatus[str],
    ) -> None:
        host, _, port = address.rpartition(":")
        if host != owner:
            raise UsageError(f"node {owner} can only listen on {owner}:PORT, not {address}")
        bound = format_address(host, int(port) or 7400)
        if bound in self._listeners:
            raise UsageError(f"cannot listen on {bound}: address in use")
        async with trio.open_nursery() as nursery:
            mine = self._listeners[bound] = _Listener(owner, nursery, handler)
            try:
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                if self._listeners.get(bound) is mine:  # not a successor's, after a restart
                    del self._listeners[bound]
                nursery.cancel_scope.cancel()

    async def _secure(
        self,
        stream: trio.abc.Stream,
        identity: Identity,
        *,
        initiator: bool,
        expect: bytes | None,
        timeout: float,  # noqa: ASYNC109 - the node's handshake deadline, as secure_handshake's
    ) -> Channel:
        if self.transport == "noise":
            return await secure_handshake(
                stream, identity, initiator=initiator, expect=expect, timeout=timeout
            )
        if not isinstance(stream, SimStream):
            raise UsageError("the direct transport secures only the fabric's own streams")
        remote_id = self.identities[stream.remote]
        if remote_id == identity.peer_id:
            await stream.aclose()
            raise SelfConnectionError("the peer presented our own peer ID")
        # Noise XX is one and a half round trips; each side waits one.
        delay = 2 * stream.end.connection.latency
        await sleep(min(delay, timeout), exact=True)
        if delay >= timeout:
            await stream.aclose()
            raise HandshakeTimeoutError(f"the handshake timed out after {timeout:g} s")
        if stream.end.inn.broken or stream.end.closed:
            raise ConnectionLostError("the connection broke during the handshake")
        if expect is not None and expect != remote_id:
            await stream.aclose()
            raise HandshakeError("the peer proved another identity than the one dialed")
        return SimChannel(stream.end, remote_id, initiator=initiator)


class SimNetwork:
    """One node's `Network` on a `Fabric` (addresses are "NAME:PORT")."""

    def __init__(self, fabric: Fabric, name: str) -> None:
        self.fabric = fabric
        self.name = name

    async def connect(self, address: str) -> trio.abc.Stream:
        return await self.fabric._connect(self.name, address)

    async def serve(
        self,
        address: str,
        handler: Callable[[trio.abc.Stream, str], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        await self.fabric._serve(self.name, address, handler, task_status)

    async def secure(
        self,
        stream: trio.abc.Stream,
        identity: Identity,
        *,
        initiator: bool,
        expect: bytes | None,
        timeout: float,  # noqa: ASYNC109 - the node's handshake deadline, as secure_handshake's
    ) -> Channel:
        return await self.fabric._secure(
            stream, identity, initiator=initiator, expect=expect, timeout=timeout
        )
