"""A connection's incoming frames, read and their records verified one frame ahead.

Verifying a record's signatures is most of what receiving it costs, and
`cryptography` releases the GIL while it verifies.  So while the
conversation handles frame k (decoding, HandleOplogs, the store: all in the
trio thread), the inbox reads frame k+1 and verifies its records on worker
threads: the two overlap, and the verification itself spreads over the
cores.  What it verified goes into the decode table (`oplogcodec.remember`),
where the core's `decode_oplog` finds it by its exact bytes and does not
verify it again.  The core still decodes and judges every record itself:
the inbox only does the expensive part early, and a record it could not
verify is simply left to the core to refuse.

Bounded: one frame waits in the channel and one is being verified, so a
connection holds at most two frames more than before; the worker threads of
all connections share one `CapacityLimiter` of one thread per core.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import trio

from ..core.oplogcodec import decode_known, remember, verify_records
from ..errors import ConnectionLostError, RemoteProtocolError
from .wirecodec import decode_any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ..core.oplog import Oplog
    from .conversation import Conversation
    from .peer import PeerLink
    from .wire import AnyMessage

MIN_PARALLEL = 16
"""Fewer unverified records than this in a frame are left to the core: a thread hop
costs more than it saves (pushes of a few fresh writes)."""


def records_of(frame: bytes) -> tuple[bytes, ...]:
    """The encoded records a frame carries, or () (a frame that does not decode is the
    conversation's business, which finds the same error)."""
    try:
        msg = decode_any(frame)
    except RemoteProtocolError:
        return ()
    oplogs = getattr(msg, "oplogs", ())
    return oplogs if isinstance(oplogs, tuple) else ()


class Verifier:
    """Verifies batches of records on worker threads, at most `threads` at a time."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = max(1, threads or os.cpu_count() or 1)
        self.limiter = trio.CapacityLimiter(self.threads)
        self.verified = 0  # records verified ahead (statistics)

    async def verify(self, bodies: tuple[bytes, ...]) -> None:
        todo = [b for b in bodies if decode_known(b) is None]
        if len(todo) < MIN_PARALLEL:
            return
        n = min(self.threads, len(todo) // (MIN_PARALLEL // 2))
        chunks = [todo[i::n] for i in range(n)]
        results: list[list[tuple[bytes, Oplog]]] = []

        async def one(chunk: list[bytes]) -> None:
            results.append(
                await trio.to_thread.run_sync(verify_records, chunk, limiter=self.limiter)
            )

        async with trio.open_nursery() as nursery:
            for chunk in chunks:
                nursery.start_soon(one, chunk)
        for done in results:
            for data, oplog in done:
                remember(data, oplog)
            self.verified += len(done)


class Inbox:
    """Frames of one link, each verified ahead by `verifier`; `next()` in order.

    `run` is the reader task; an error it meets (the peer's framing, a lost
    connection) comes out of `next()`, in order, where the conversation
    handles it as if it had read the frame itself.
    """

    def __init__(self, link: PeerLink, verifier: Verifier) -> None:
        self.link = link
        self.verifier = verifier
        self._send, self._receive = trio.open_memory_channel[bytes | None | Exception](1)

    async def run(self) -> None:
        async with self._send:
            while True:
                try:
                    frame = await self.link.receive_frame()
                except (RemoteProtocolError, ConnectionLostError) as exc:
                    await self._send.send(exc)
                    return
                if frame is not None:
                    await self.verifier.verify(records_of(frame))
                await self._send.send(frame)
                if frame is None:
                    return

    async def next(self) -> bytes | None:
        item = await self._receive.receive()
        if isinstance(item, Exception):
            raise item
        return item


class _Handed:
    """The conversation's handler of the frames a parking channel hands it while the
    reader waits (`PeerLink.park`, the simulator's): a frame whose replies all go
    out at once needs nothing of the reader's task.  Anything else (replies that
    must wait for the queue, the conversation's end, a bug of ours) is left for
    the task, which `finish`es it as it would a frame it had read itself."""

    __slots__ = ("conv", "failure", "left", "link", "now")

    def __init__(self, conv: Conversation, link: PeerLink) -> None:
        self.conv = conv
        self.link = link
        self.left: Sequence[AnyMessage] = ()  # replies the task must send
        self.failure: Exception | None = None  # raised by the task, as its own
        # trio.current_time, read off the run's clock itself (two calls fewer a frame)
        self.now = trio.lowlevel.current_clock().current_time

    def take(self, frame: bytes) -> bool:
        """Give `frame` to the conversation; True if all its work is done."""
        conv = self.conv
        try:
            replies = conv.receive(frame, self.now())
            if conv.ended is not None:
                self.left = replies
                return False
            for i, msg in enumerate(replies):
                if not self.link.send_now(msg):
                    self.left = replies[i:]
                    return False
        except Exception as exc:
            self.failure = exc
            return False
        return True

    def finish(self) -> Sequence[AnyMessage]:
        """What the task has left to do: the replies to send, or the failure raised."""
        if self.failure is not None:
            raise self.failure
        left, self.left = self.left, ()
        return left


async def feed(
    conv: Conversation,
    link: PeerLink,
    frame: bytes | None,
    verifier: Verifier | None,
    on_admit: Callable[[], None],
) -> Sequence[AnyMessage]:
    """Give `frame`, then every later frame of `link`, to `conv` and send its replies,
    until it ends; read one frame ahead through an `Inbox` if there is a `verifier`.
    Returns the replies to the frame that ended it (a Bye, or nothing), unsent.

    `on_admit()` runs when the conversation admits the peer.  The errors of the
    link (its framing, a lost connection) and of ours come out as raised, not
    wrapped in an exception group.
    """
    if verifier is None:  # no reader ahead: no nursery either (one a connection, each side)
        handed = _Handed(conv, link) if link.parks else None
        return await _converse(conv, link, frame, link.receive_frame, handed, on_admit)
    failure: Exception | None = None
    replies: Sequence[AnyMessage] = ()
    async with trio.open_nursery() as nursery:
        inbox = Inbox(link, verifier)
        nursery.start_soon(inbox.run)
        try:
            replies = await _converse(conv, link, frame, inbox.next, None, on_admit)
        except Exception as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    return replies


async def _converse(
    conv: Conversation,
    link: PeerLink,
    frame: bytes | None,
    next_frame: Callable[[], Awaitable[bytes | None]],
    handed: _Handed | None,
    on_admit: Callable[[], None],
) -> Sequence[AnyMessage]:
    """`feed`'s loop: each frame to `conv`, its replies sent, until it ends."""
    while True:
        was_admitted = conv.admitted
        replies = conv.receive(frame, trio.current_time())
        if conv.ended is None and conv.admitted and not was_admitted:
            on_admit()
        # Once admitted, a parking channel hands the frames to `handed`
        # while this task waits; it wakes for what `handed` left it.
        while conv.ended is None:
            if replies:
                await link.send_all(replies)
            if handed is None or not conv.admitted or not await link.park(handed.take):
                break
            replies = handed.finish()
        if conv.ended is not None:
            return replies
        frame = await next_frame()
