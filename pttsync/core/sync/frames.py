"""Length-prefixed framing: a 4-byte big-endian length, then that many bytes.

Every sync message travels as one frame.  A frame may hold at most
MAX_FRAME_SIZE bytes of payload; the reader refuses a longer length *before*
buffering a byte of it, so a peer cannot make us allocate more than one
frame's worth per connection.

`FrameReader` is sans-I/O, in the style of h11: feed it bytes as they
arrive, take out whole frames.  Both transports (TCP and the simulator's
memory streams) use it, as does the in-process sync driver, which frames
every message it passes so the byte counts it reports are the real ones.
"""

from __future__ import annotations

from ...errors import RemoteProtocolError, UsageError

MAX_FRAME_SIZE = 256 * 1024
"""The largest payload of one frame, in bytes (a sync message, encoded)."""

HEADER_SIZE = 4


def encode_frame(payload: bytes) -> bytes:
    """`payload` with its length prefix.

    Raises:
        UsageError: the payload is over MAX_FRAME_SIZE (a local bug: every
            message is chunked under the limit before it is encoded).
    """
    if len(payload) > MAX_FRAME_SIZE:
        raise UsageError(f"a {len(payload)}-byte frame is over the limit of {MAX_FRAME_SIZE}")
    return len(payload).to_bytes(HEADER_SIZE, "big") + payload


class FrameReader:
    """Reassembles frames from a byte stream.

    Raises RemoteProtocolError (from `feed` or `next_frame`) as soon as a
    header announces a frame over `max_size`.
    """

    def __init__(self, max_size: int = MAX_FRAME_SIZE) -> None:
        self.max_size = max_size
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) >= HEADER_SIZE:
            self._check_header()

    def _check_header(self) -> int:
        size = int.from_bytes(self._buf[:HEADER_SIZE], "big")
        if size > self.max_size:
            raise RemoteProtocolError(
                f"peer announced a {size}-byte frame, over the limit of {self.max_size}"
            )
        return size

    def next_frame(self) -> bytes | None:
        """The next whole frame's payload, or None if more bytes are needed."""
        if len(self._buf) < HEADER_SIZE:
            return None
        size = self._check_header()
        end = HEADER_SIZE + size
        if len(self._buf) < end:
            return None
        payload = bytes(self._buf[HEADER_SIZE:end])
        del self._buf[:end]
        return payload

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def at_boundary(self) -> bool:
        """True if no partial frame is buffered (a clean place for the stream to end)."""
        return not self._buf
