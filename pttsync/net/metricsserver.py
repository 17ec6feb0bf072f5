"""Serving a metrics registry over HTTP, as Prometheus scrapes it: `GET /metrics`.

A trio task, not prometheus_client's threaded server: the registry's
collector reads the node's state (metrics.py), which only the node's trio
thread may touch.  The HTTP is the least a scraper needs: one request per
connection (`Connection: close`), GET or HEAD, `/metrics` (the text format,
or OpenMetrics when the scraper's Accept header asks for it, as
prometheus_client's `choose_encoder` decides) and `/` (a pointer to
/metrics).  Anything else is answered 404 or 405, and a request that is
malformed, too large or too slow is answered 400 or 408, or dropped.

Bounded: a request's head at most `MAX_HEAD` bytes read within
`REQUEST_TIMEOUT` seconds, and at most `MAX_CLIENTS` scrapes served at once
(more are closed unanswered).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio
from prometheus_client.exposition import choose_encoder

from ..errors import UsageError
from .network import format_address, split_address

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

MAX_HEAD = 8192  # bytes of request line and headers
REQUEST_TIMEOUT = 10.0  # seconds to read a request and write its answer
MAX_CLIENTS = 16  # scrapes served at once

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
}


async def serve_metrics(
    registry: CollectorRegistry,
    address: str,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `registry` on `address` until cancelled; `task_status.started(bound address)`."""
    host, port = split_address(address, allow_zero=True)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise UsageError(f"cannot serve metrics on {address}: {exc.strerror or exc}") from None
    sockname = listeners[0].socket.getsockname()
    bound = format_address(host, int(sockname[1]))
    limiter = trio.CapacityLimiter(MAX_CLIENTS)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            await trio.aclose_forcefully(stream)
            return
        try:
            await _answer(stream, registry)
        finally:
            limiter.release()

    log.info("serving metrics on http://%s/metrics", bound)
    task_status.started(bound)
    await trio.serve_listeners(handle, listeners)


async def _answer(stream: trio.SocketStream, registry: CollectorRegistry) -> None:
    try:
        with trio.move_on_after(REQUEST_TIMEOUT) as scope:
            head = await _read_head(stream)
            if head is None:
                await _reply(stream, 400, b"request head too large or cut short\n")
                await _drain(stream)
            else:
                status, content_type, body, head_only = _route(head, registry)
                await _reply(stream, status, body, content_type, head_only=head_only)
        if scope.cancelled_caught:
            with trio.move_on_after(1):
                await _reply(stream, 408, b"request timed out\n")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # the scraper went away
    finally:
        await trio.aclose_forcefully(stream)


async def _drain(stream: trio.SocketStream) -> None:
    """After an error answer, read (and drop) what the client still sends, briefly: a
    socket closed with unread input resets the connection, and the answer is lost."""
    await stream.send_eof()
    with trio.move_on_after(1):
        for _ in range(16):
            if not await stream.receive_some(4096):
                return


async def _read_head(stream: trio.abc.ReceiveStream) -> bytes | None:
    """The request line and headers, or None if larger than MAX_HEAD or closed early."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
    return bytes(data[: data.index(b"\r\n\r\n")])


def _route(head: bytes, registry: CollectorRegistry) -> tuple[int, str, bytes, bool]:
    """(status, content type, body, HEAD) for a request head."""
    text = "text/plain; charset=utf-8"
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, text, b"not an HTTP/1.x request\n", False
    method, target = parts[0], parts[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return 405, text, b"only GET and HEAD\n", False
    head_only = method == "HEAD"
    if target == "/":
        return 200, text, b"pttsync node: metrics at /metrics\n", head_only
    if target != "/metrics":
        return 404, text, b"not found: the metrics are at /metrics\n", head_only
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    encoder, content_type = choose_encoder(accept)
    return 200, content_type, encoder(registry), head_only


async def _reply(
    stream: trio.abc.SendStream,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    *,
    head_only: bool = False,
) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    await stream.send_all(head if head_only else head + body)
