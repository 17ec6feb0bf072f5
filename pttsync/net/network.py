"""Where a node's bytes go: real TCP, or an in-memory network for tests and simulation.

A node never opens sockets itself.  It asks its `Network` to `connect` to
an address, or to `serve` one, and gets trio streams back; then it asks the
network to `secure` each stream (the Noise XX handshake of transport.py for
every real network; the simulator's fabric may stand in for it).  `TcpNetwork`
is the real thing; `MemoryNetwork` hosts many nodes in one trio run (the
node tests under the autojump clock, and the simulator), with the very
same node, transport and protocol code on top.

Addresses are "host:port" text everywhere (IPv6 as "[::1]:7400").
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import TYPE_CHECKING, Protocol

import trio
import trio.testing

from ..errors import ConnectionLostError, UsageError
from .transport import secure_handshake
from .wire import check_address

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..core.identity import Identity
    from .peer import Channel

log = logging.getLogger(__name__)


class Network(Protocol):
    """How a node dials and listens."""

    async def connect(self, address: str) -> trio.abc.Stream:
        """A stream to `address`.  Raises ConnectionLostError if nothing answers."""
        ...

    async def serve(
        self,
        address: str,
        handler: Callable[[trio.abc.Stream, str], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept connections on `address` forever, each handled in its own task.

        `task_status.started(bound address)` once connections are accepted;
        the handler gets the stream and the remote address.
        """
        ...

    async def secure(
        self,
        stream: trio.abc.Stream,
        identity: Identity,
        *,
        initiator: bool,
        expect: bytes | None,
        timeout: float,  # noqa: ASYNC109 - the peer's deadline, as secure_handshake's
    ) -> Channel:
        """The authenticated frame channel over `stream` (see transport.secure_handshake).

        Raises HandshakeError or ConnectionLostError as secure_handshake does.
        """
        ...


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class TcpNetwork:
    """Real TCP (trio.serve_tcp and trio.open_tcp_stream)."""

    secure = staticmethod(secure_handshake)  # the Noise XX handshake

    async def connect(self, address: str) -> trio.abc.Stream:
        host, port = split_address(address)
        try:
            return await trio.open_tcp_stream(host, port)
        except OSError as exc:
            raise ConnectionLostError(f"cannot connect to {address}: {_why(exc)}") from None

    async def serve(
        self,
        address: str,
        handler: Callable[[trio.abc.Stream, str], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host, port = split_address(address, allow_zero=True)

        async def accepted(stream: trio.SocketStream) -> None:
            try:
                peer = stream.socket.getpeername()
                remote = format_address(str(peer[0]), int(peer[1]))
            except OSError:
                remote = "?"
            await handler(stream, remote)

        try:
            listeners = await trio.open_tcp_listeners(port, host=host)
        except OSError as exc:
            raise UsageError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        name = listeners[0].socket.getsockname()
        bound = format_address(host, int(name[1]))
        log.info("listening on %s", bound)
        await trio.serve_listeners(
            accepted,
            listeners,
            task_status=_Relay(task_status, bound),
        )


class _Relay:
    """Passes our bound address to task_status instead of trio's listener list."""

    def __init__(self, status: trio.TaskStatus[str], value: str) -> None:
        self._status, self._value = status, value

    def started(self, _value: object = None) -> None:
        self._status.started(self._value)


class MemoryNetwork:
    """Many nodes in one trio run, connected by in-memory streams.

    `serve("name:0")` gives the listener a fresh port.  Connecting to an
    address nobody serves fails as a refused TCP connection would.
    """

    secure = staticmethod(secure_handshake)  # the Noise XX handshake

    def __init__(self) -> None:
        self._listeners: dict[str, tuple[trio.Nursery, Callable[..., Awaitable[None]]]] = {}
        self._ports = itertools.count(1)
        self.connections = 0

    def pipe(self) -> tuple[trio.abc.Stream, trio.abc.Stream]:
        """A connected pair of streams (override to add latency, loss, limits)."""
        return trio.testing.memory_stream_pair()

    async def connect(self, address: str) -> trio.abc.Stream:
        await trio.lowlevel.checkpoint()
        entry = self._listeners.get(address)
        if entry is None:
            raise ConnectionLostError(f"cannot connect to {address}: connection refused")
        nursery, handler = entry
        client, server = self.pipe()
        self.connections += 1
        nursery.start_soon(handler, server, f"mem-client-{self.connections}:1")
        return client

    async def serve(
        self,
        address: str,
        handler: Callable[[trio.abc.Stream, str], Awaitable[None]],
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        host, port = split_address(address, allow_zero=True)
        bound = format_address(host, port or next(self._ports) + 10000)
        if bound in self._listeners:
            raise UsageError(f"cannot listen on {bound}: address in use")
        async with trio.open_nursery() as nursery:
            self._listeners[bound] = (nursery, handler)
            try:
                task_status.started(bound)
                await trio.sleep_forever()
            finally:
                del self._listeners[bound]
                nursery.cancel_scope.cancel()


def _why(exc: OSError) -> str:
    """The operating system's words for a failed connect ("Connection refused"), also
    when trio tried several addresses and gathered their errors in its cause."""
    if exc.strerror:
        return exc.strerror
    cause = exc.__cause__
    if isinstance(cause, BaseExceptionGroup):
        said = {
            os.strerror(e.errno) if e.errno else e.strerror or str(e)
            for e in cause.exceptions
            if isinstance(e, OSError)
        }
        if said:
            return "; ".join(sorted(said))
    return str(exc)


def split_address(address: str, *, allow_zero: bool = False) -> tuple[str, int]:
    """HOST:PORT as (host, port); with `allow_zero`, port 0 (a free one) too.

    Raises:
        UsageError: not a host and a port.
    """
    try:
        if allow_zero and address.endswith(":0"):
            host, _ = check_address(address[:-1] + "1")
            return host, 0
        return check_address(address)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
