"""One connection to a peer, after the secure handshake.

A `PeerLink` owns a `Channel` (a `SecureChannel` on a real network) and runs two tasks over it:

* the **reader** is the node's (`Connections._converse` loops on `receive_frame`):
  one task per connection reads every frame and hands it to the
  connection's `Conversation` (conversation.py);
* the **writer** (`run_writer`) drains a bounded queue of encoded frames
  into the channel, whose send lock keeps the Noise nonces in wire order.

Replies and sync requests are queued with `send`, which waits when the
queue is full (back-pressure on a peer that reads slowly).  A frame the
peer does not take within `send_timeout` seconds closes the link, marked
`stalled`: a peer that stops reading frees its place.  Pushes use
`try_send`, which drops the message instead: push is best-effort and
anti-entropy repairs what it drops, so a slow peer can never make the node
buffer without bound or stall its other peers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields
from enum import Enum
from typing import TYPE_CHECKING, Protocol

import trio

from ..core.identity import peer_id_text
from ..core.sync.msgcodec import encode_message
from ..errors import ConnectionLostError, PttsyncError
from .wire import AnyMessage, NodeMessage
from .wirecodec import decode_any, encode_node_message

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

log = logging.getLogger(__name__)

DEFAULT_SEND_QUEUE = 256  # frames queued for one peer (each at most MAX_FRAME_SIZE)


class Channel(Protocol):
    """An authenticated frame channel to one peer (transport.SecureChannel, or the
    simulator's): `remote_id` is the peer ID the other side proved."""

    remote_id: bytes

    async def send_frame(self, payload: bytes) -> None: ...

    async def receive_frame(self) -> bytes | None: ...

    async def aclose(self) -> None: ...


class Direction(Enum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(slots=True)
class LinkStats:
    messages_sent: int = 0
    messages_received: int = 0
    bytes_sent: int = 0  # frame payloads, before encryption
    bytes_received: int = 0
    dropped: int = 0  # pushes dropped because the send queue was full
    refused: int = 0  # pushed oplogs we refused (invalid, or not authorised here)

    def add(self, other: LinkStats) -> None:
        """Add `other`'s counts to these (a node's total of its ended connections)."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def encode_any(msg: AnyMessage) -> bytes:
    if isinstance(msg, NodeMessage):
        return encode_node_message(msg)
    return encode_message(msg)


class PeerLink:
    """A live, authenticated connection to one peer."""

    def __init__(
        self,
        channel: Channel,
        *,
        direction: Direction,
        address: str,
        local_id: bytes,
        queue_size: int = DEFAULT_SEND_QUEUE,
        send_timeout: float = math.inf,
        started: float = 0.0,
    ) -> None:
        self.channel = channel
        self.peer_id: bytes = channel.remote_id
        self.direction = direction
        self.local_id = local_id
        self.address = address  # the address we dialed, or where the peer came from
        self.listen = ""  # the address the peer listens on (its Hello)
        self.topics: frozenset[bytes] = frozenset()  # the topics this link syncs
        self.agent = ""
        self.started = started
        self.stats = LinkStats()
        self.close_reason = ""
        # Closed with a penalty (backed off) but not for breaking the protocol:
        # turned away at the door (not a member, yet), silent past a deadline,
        # or closed by an internal error of ours.
        self.refused = False
        self.peer_bye: str | None = None  # the reason of the peer's Bye, if it sent one
        self.visit = False  # a visit: one sync round, outside the slots (connections.py)
        self.told: tuple[int, float] | None = None  # our last `Peers`: (the book's news, when)
        self.send_timeout = send_timeout
        self.stalled = False  # closed because the peer took no frame within send_timeout
        self._send, self._queue = trio.open_memory_channel[bytes](queue_size)
        self._closed = False
        # A channel that can take a frame without waiting (the simulator's) gets
        # it at once when nothing is queued or being written: no writer hop.
        self._nowait = getattr(channel, "send_frame_nowait", None)
        self._queued = 0  # frames queued or being written by the writer
        self._park = getattr(channel, "park", None)
        # How its frames are encoded and decoded: the channel's way if it has one (the
        # simulator's shares what its nodes encode and decode), else `encode_any` and
        # `decode_any`.
        self.encode: Callable[[AnyMessage], bytes] = getattr(channel, "encode", encode_any)
        self.decode: Callable[[bytes], AnyMessage] = getattr(channel, "decode", decode_any)

    def __repr__(self) -> str:
        return f"<PeerLink {peer_id_text(self.peer_id)[:12]} {self.direction.value} {self.address}>"

    @property
    def name(self) -> str:
        return peer_id_text(self.peer_id)[:12]

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def initiator(self) -> bytes:
        """Whose dial made this connection (a peer ID), for breaking duplicate ties."""
        return self.peer_id if self.direction is Direction.INBOUND else self.local_id

    async def send(self, msg: AnyMessage) -> None:
        """Queue one message, waiting while the queue is full.

        Raises:
            ConnectionLostError: the link is closed.
        """
        frame = self.encode(msg)
        if self._send_now(frame):
            await trio.lowlevel.checkpoint_if_cancelled()
            return
        try:
            await self._send.send(frame)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise ConnectionLostError(f"{self.name}: link closed") from None
        self._queued += 1
        self._count(frame)

    async def send_all(self, msgs: Sequence[AnyMessage]) -> None:
        for m in msgs:
            await self.send(m)

    def try_send(self, msg: AnyMessage) -> bool:
        """Queue one message if there is room now; False if it was dropped."""
        if self._closed:
            return False
        return self.try_send_frame(self.encode(msg))

    def try_send_frame(self, frame: bytes) -> bool:
        """`try_send` of an already encoded message (one encoding sent to several peers)."""
        if self._closed:
            return False
        if self._send_now(frame):
            return True
        try:
            self._send.send_nowait(frame)
        except trio.WouldBlock:
            self.stats.dropped += 1
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self._queued += 1
        self._count(frame)
        return True

    def send_now(self, msg: AnyMessage) -> bool:
        """Send `msg` at once if the channel takes it without waiting and nothing is
        queued before it; False if not sent (`send` it then, in order)."""
        return self._send_now(self.encode(msg))

    def _send_now(self, frame: bytes) -> bool:
        """Hand `frame` to a channel that takes it at once, if the queue is empty."""
        if self._nowait is None or self._queued or self._closed:
            return False
        try:
            sent: bool = self._nowait(frame)
        except PttsyncError as exc:
            log.debug("%r: send failed: %s", self, exc)
            self.close("send failed")
            return False
        if sent:
            self._count(frame)
        return sent

    def _count(self, frame: bytes) -> None:
        self.stats.messages_sent += 1
        self.stats.bytes_sent += len(frame)

    async def receive_frame(self) -> bytes | None:
        """The next frame, undecoded (the conversation decodes it), or None when the
        peer closed the connection cleanly.

        Raises:
            ConnectionLostError: the connection broke.
        """
        frame = await self.channel.receive_frame()
        if frame is not None:
            self.stats.messages_received += 1
            self.stats.bytes_received += len(frame)
        return frame

    @property
    def parks(self) -> bool:
        """True if the channel can hand frames to a parked reader (`park`)."""
        return self._park is not None

    async def park(self, handle: Callable[[bytes], bool]) -> bool:
        """Wait as `receive_frame` would, but with each frame that arrives meanwhile
        given to `handle(frame)` instead of waking this task, for a channel that
        can (the simulator's `SimChannel.park`, which counts each in `stats`).

        Returns True once `handle` returned False (it took a frame; this task has
        the rest of its work); False when there is something to `receive_frame`
        instead (a frame queued, the end, a reset), or at once if the channel
        cannot park.
        """
        if self._park is None:
            return False
        parked: bool = await self._park(handle, self.stats)  # it counts them here too
        return parked

    async def run_writer(self) -> None:
        """Send queued frames until the link closes (run this as a task)."""
        try:
            async for frame in self._queue:
                try:
                    with trio.move_on_after(self.send_timeout) as scope:
                        await self.channel.send_frame(frame)
                finally:
                    self._queued -= 1
                if scope.cancelled_caught:
                    self.stalled = True
                    self.close(f"the peer took no data for {self.send_timeout:g} s")
                    return
        except PttsyncError as exc:
            log.debug("%r: writer stopped: %s", self, exc)
        finally:
            self.close("send failed" if not self._closed else self.close_reason)

    def close(self, reason: str) -> None:
        """Stop sending (queued frames still go out if the writer is running)."""
        if not self._closed:
            self._closed = True
            self.close_reason = reason
            self._send.close()

    async def aclose(self) -> None:
        self.close(self.close_reason or "closed")
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await self.channel.aclose()
