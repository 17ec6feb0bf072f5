"""Connections between peers run by two processes of one simulation.

A split run (lockstep.py) gives each process some of the peers; its fabric
(fabric.py) carries the connections between its own peers as always, and
this module the ones that cross.  Each process keeps one half of such a
connection: the pipe towards its own peer, and in place of the other a
pipe whose deliveries cross to the other process (`_Pipe.remote`), at the
time the link model gives them, exactly as the fabric schedules them.

A dial across is the fabric's TCP handshake split in two.  The dialer's
SYN arrives one latency later; if the address has a listener there, the
listener's side opens its half, answers, and starts its handler one more
latency later, when the answer reaches the dialer, whose side then opens
its half and returns: both at the instant the one-process fabric would have
them.  With no listener, the answer is a refusal at that instant too.  The
one difference: the listener is looked for when the SYN arrives, not when
the handshake completes, so a listener that goes within that latency
still takes the connection (which then breaks, as the crash resets it).

The randomness of a half (loss and jitter on what it sends) comes from the
fabric's seed and the connection's name: its dialer, its listener and the
count of the dialer's dials to it.  It does not depend on what else runs
at the same instant, nor on which process runs the other peers.
"""

from __future__ import annotations

import functools
import math
import random
from typing import TYPE_CHECKING, Protocol

import trio

from ..errors import ConnectionLostError
from ..net.timers import Alarm, call_at
from .link import _EOF, _RESET, Medium, SimStream, _Connection, _End, inbound

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .link import _Pipe
    from .lockstep import Item, Lockstep


class Listener(Protocol):
    """A node's listening address, as the fabric keeps it."""

    @property
    def owner(self) -> str: ...

    @property
    def nursery(self) -> trio.Nursery: ...

    @property
    def handler(self) -> Callable[[trio.abc.Stream, str], Awaitable[None]]: ...


class Host(Medium, Protocol):
    """What a `Remote` needs of its fabric (fabric.Fabric is one)."""

    @property
    def seed(self) -> int: ...

    def listener(self, address: str) -> Listener | None:
        """Who listens on `address` now, if anyone."""
        ...

    def opened(self, conn: _Connection, side: str) -> None:
        """Count `conn` among node `side`'s connections."""
        ...


_SYN, _OK, _NO, _FRAME = "syn", "ok", "no", "f"


class _Dial:
    """A dial across, waiting for its answer."""

    __slots__ = ("alarm", "dialer", "latency", "stream", "target", "waiting")

    def __init__(self, dialer: str, target: str, latency: float) -> None:
        self.dialer = dialer
        self.target = target
        self.latency = latency
        self.alarm = Alarm()
        self.stream: SimStream | None = None
        self.waiting = True


class _Half:
    """This process's half of a crossing connection, kept until both directions ended."""

    __slots__ = ("conn", "received_end", "sent_end")

    def __init__(self, conn: _Connection) -> None:
        self.conn = conn
        self.sent_end = False  # this side's end (or a reset) went across
        self.received_end = False  # the other side's came


class Remote:
    """The crossing half of a fabric: dials to and from the other process, and
    the frames of the connections that cross (see the module text)."""

    def __init__(self, fabric: Host, lockstep: Lockstep, mine: Callable[[str], bool]) -> None:
        self.fabric = fabric
        self.lockstep = lockstep
        self.mine = mine  # is node NAME run by this process?
        self._halves: dict[str, _Half] = {}  # connection name -> this process's half
        self._dials: dict[str, _Dial] = {}  # connection name -> the dial waiting
        lockstep.deliver = self._deliver

    @property
    def open(self) -> int:
        """Halves of crossing connections this process still keeps."""
        return len(self._halves)

    # -- the dialer's side ---------------------------------------------------------------

    async def connect(
        self, name: str, dialer: str, target: str, address: str, latency: float
    ) -> SimStream:
        """Open connection `name` from `dialer` to `address` (of `target`, run by the
        other process); its SYN leaves now.  The stream one round trip later, or
        ConnectionLostError."""
        dial = self._dials[name] = _Dial(dialer, target, latency)
        self.lockstep.post(trio.current_time() + latency, (_SYN, name, dialer, address, latency))
        try:
            await dial.alarm.wait_until(math.inf)
        finally:
            dial.waiting = False
        if dial.stream is None:
            raise ConnectionLostError(f"cannot connect to {address}: connection refused")
        return dial.stream

    def _answer(self, name: str, accepted: bool) -> None:
        dial = self._dials.pop(name)
        if accepted:
            dialer = dial.dialer
            conn = self._half(name, dialer, dial.target, dial.latency, dialer)
            stream = SimStream(_End(conn, dialer), dial.target)
            if not dial.waiting:  # the dialer gave up meanwhile: the listener reads the end
                stream.end.close()
                return
            dial.stream = stream
        if dial.waiting:
            dial.alarm.ring()

    # -- the listener's side -------------------------------------------------------------

    def _syn(self, name: str, dialer: str, address: str, latency: float) -> None:
        listener = self.fabric.listener(address)
        back = trio.current_time() + latency
        if listener is None:
            self.lockstep.post(back, (_NO, name))
            return
        conn = self._half(name, dialer, listener.owner, latency, listener.owner)
        self.lockstep.post(back, (_OK, name))
        accept = functools.partial(self._accept, listener, address, conn, dialer, name)
        call_at(back, accept, exact=True)

    def _accept(
        self, listener: Listener, address: str, conn: _Connection, dialer: str, name: str
    ) -> None:
        end = _End(conn, listener.owner)
        if self.fabric.listener(address) is not listener:
            end.close()  # it went meanwhile (its crash reset the connection already)
            return
        listener.nursery.start_soon(listener.handler, SimStream(end, dialer), inbound(dialer, name))

    # -- both ---------------------------------------------------------------------------

    def _half(self, name: str, dialer: str, target: str, latency: float, me: str) -> _Connection:
        """This process's half of connection `name`, kept by side `me`."""
        rng = random.Random(f"{self.fabric.seed}/conn/{name}/{me}")
        conn = _Connection(self.fabric, dialer, target, latency, rng)
        out, _ = conn.pipes(me)
        out.remote = (name, me == target)  # its deliveries cross: (connection, to the dialer)
        self._halves[name] = _Half(conn)
        self.fabric.opened(conn, me)
        return conn

    def send(self, when: float, pipe: _Pipe, item: bytes | int) -> None:
        """Deliver `item` at `when` to `pipe`, whose reader the other process runs."""
        remote = pipe.remote
        assert remote is not None
        name, to_dialer = remote
        self.lockstep.post(when, (_FRAME, name, to_dialer, item))
        if not isinstance(item, bytes):  # its end, or a reset
            half = self._halves.get(name)
            if half is not None:
                half.sent_end = True
                if item == _RESET:  # nothing the other side sends matters now
                    half.received_end = True
                self._forget(name, half)

    def _deliver(self, items: list[Item]) -> None:
        """What the other process sent, each scheduled at its time."""
        for when, what in items:
            kind = what[0]
            if kind == _FRAME:
                self._frame(when, what[1], what[2], what[3])
            elif kind == _SYN:
                call_at(when, functools.partial(self._syn, *what[1:]), exact=True)
            else:
                call_at(when, functools.partial(self._answer, what[1], kind == _OK), exact=True)

    def _frame(self, when: float, name: str, to_dialer: bool, item: bytes | int) -> None:
        half = self._halves.get(name)
        if half is None:
            return  # its half ended (reset here, or closed both ways): lost with it
        conn = half.conn
        self.fabric.schedule(when, conn.to_dialer if to_dialer else conn.to_listener, item)
        if not isinstance(item, bytes):
            half.received_end = True
            if item == _RESET:  # broken: nothing this side sends arrives now
                conn.doomed_at = min(conn.doomed_at, when)
                half.sent_end = True
            elif item == _EOF:
                conn.closed_sides += 1
            self._forget(name, half)

    def _forget(self, name: str, half: _Half) -> None:
        if half.sent_end and half.received_end:
            del self._halves[name]
