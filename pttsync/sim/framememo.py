"""Node messages and their frames, encoded and decoded once for a fabric's nodes.

Simulated nodes send one another the same bytes again and again: a record
is the same bytes at every peer, so a `Push` of it is too, whoever sends
it; and an `IHave` carries only the topic and the oplog IDs, which every
announcer of those oplogs lists alike.  In the default 1,000-peer run 94%
of the frames a node decodes are equal, byte for byte, to one decoded
lately somewhere in the process (97% at 300 peers; a table of 1,024 frames
already finds 93%, one of 65,536 no more than 94%).  Decoding one costs a
CBOR parse and every check of the wire's strictness; finding it costs
the hash of its bytes (computed once per bytes object) and a dict lookup.
The same holds of what nodes send: 96% of the `Push` messages and 98% of
the `IHave`s a 300-peer run encodes equal one encoded lately, and an equal
message found is given the very bytes object encoded before, so its
receivers find it by a hash already computed.

Encoding and decoding are pure functions, and node messages are frozen
dataclasses of tuples (net/wire.py), so one decoded message can serve
every node that receives those bytes: it is what each would have decoded
for itself (and likewise one encoding, every sender of an equal message).
Only node messages are kept: a sync message's fields may be lists, and
those frames are seldom equal (each carries its round's numbers).  A frame
that does not decode is never kept: each receiver finds the same error, and
its conversation ends as it would have.

Each table keeps at most `FRAMES_KEPT` frames and `FRAME_BYTES_KEPT` bytes of
them, the oldest forgotten first.

This is the simulator's, not the node's: a real node's frames come from
one peer each, over Noise, and are seldom equal.  A `SimChannel` offers
the tables' `encode` and `decode` to its `PeerLink` (`PeerLink.encode`,
`PeerLink.decode`), as it offers `send_frame_nowait` and `park`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..net.peer import encode_any
from ..net.wire import NodeMessage
from ..net.wirecodec import decode_any

if TYPE_CHECKING:
    from ..net.wire import AnyMessage

__all__ = ["FRAMES_KEPT", "FRAME_BYTES_KEPT", "FrameMemo"]

FRAMES_KEPT = 4096
"""Frames a fabric keeps each way (oldest forgotten first)."""

FRAME_BYTES_KEPT = 16 * 2**20
"""The bytes of the frames a fabric keeps each way, at most (oldest forgotten first):
a frame may be up to 256 KiB, and a run's are a few KiB."""


class FrameMemo:
    """Node messages encoded and decoded lately (see the module text)."""

    __slots__ = (
        "_decoded", "_decoded_bytes", "_encoded", "_encoded_bytes",
        "budget", "decoded", "encoded", "found", "limit",
    )  # fmt: skip

    def __init__(self, limit: int = FRAMES_KEPT, budget: int = FRAME_BYTES_KEPT) -> None:
        self.limit = limit
        self.budget = budget
        self._decoded: dict[bytes, AnyMessage] = {}  # frame -> its message
        self._encoded: dict[AnyMessage, bytes] = {}  # message -> its frame
        self._decoded_bytes = self._encoded_bytes = 0  # the frames' bytes in each
        self.found = 0  # frames and messages found in the tables (statistics)
        self.decoded = 0  # frames decoded
        self.encoded = 0  # messages encoded

    def __len__(self) -> int:
        return len(self._decoded) + len(self._encoded)

    @property
    def kept_bytes(self) -> int:
        """The bytes of the frames kept, both ways."""
        return self._decoded_bytes + self._encoded_bytes

    def encode(self, msg: AnyMessage) -> bytes:
        """`encode_any(msg)`, the very bytes of an equal node message encoded lately."""
        if not isinstance(msg, NodeMessage):
            self.encoded += 1
            return encode_any(msg)
        frame = self._encoded.get(msg)
        if frame is not None:
            self.found += 1
            return frame
        self.encoded += 1
        frame = encode_any(msg)
        table = self._encoded
        table[msg] = frame
        self._encoded_bytes += len(frame)
        while len(table) > self.limit or self._encoded_bytes > self.budget:
            self._encoded_bytes -= len(table.pop(next(iter(table))))
        return frame

    def decode(self, frame: bytes) -> AnyMessage:
        """`decode_any(frame)`, found in the table if these bytes were decoded lately.

        Raises:
            RemoteProtocolError: as `decode_any` (nothing is kept).
        """
        msg = self._decoded.get(frame)
        if msg is not None:
            self.found += 1
            return msg
        msg = decode_any(frame)
        self.decoded += 1
        if isinstance(msg, NodeMessage):
            table = self._decoded
            table[frame] = msg
            self._decoded_bytes += len(frame)
            while len(table) > self.limit or self._decoded_bytes > self.budget:
                oldest = next(iter(table))
                del table[oldest]
                self._decoded_bytes -= len(oldest)
        return msg
