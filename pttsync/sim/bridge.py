"""The lockstep's wire between two processes: a socket that never blocks a send.

Each process of a split run (lockstep.py) sends its reports as it goes and
reads the other's only when it needs them, so neither may ever block in a
send: two processes each blocked sending to the other, with both buffers
full, would wait for ever.  A send therefore writes what the socket takes
and keeps the rest; the rest goes at the next send, or while the process
waits to read (it waits for its socket to be readable *or* writable).

Messages are pickled, each behind its length (4 bytes, big-endian).  The
two ends are a `socket.socketpair()` made before the fork.

A wait gives up once `interrupted()` says so (`Interrupted`): the run was
stopped (SIGTERM, ^C).  The signal's handler runs while the process waits
here, in the main thread, but cannot end the wait itself (the interpreter
takes up an interrupted `poll` again once the handler returns), so the
wait looks at `interrupted()` every `WAIT_SLICE_MS`.  A wait for a
process that is hung would otherwise hold this one, and its stop, for ever.
"""

from __future__ import annotations

import itertools
import pickle
import select
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

__all__ = ["NOTHING", "WAIT_SLICE_MS", "Interrupted", "SocketBridge"]

NOTHING: Any = object()
"""What `recv(block=False)` gives when no message has come."""

_HEADER = 4
_CHUNK = 1 << 20  # bytes read at a time

WAIT_SLICE_MS = 200
"""How long a wait runs before it looks whether the run was stopped: a stop waits no
longer than this for a hung process; a run's waits, a few milliseconds each, never
reach it."""


class Interrupted(Exception):
    """A wait for the other process was given up: the run was stopped (`interrupted`)."""


def _never() -> bool:
    return False


class SocketBridge:
    """One end of the pipe: `send` never blocks, `recv` blocks only if asked to, and
    a wait gives up (`Interrupted`) once `interrupted()` is true."""

    def __init__(self, sock: socket.socket, interrupted: Callable[[], bool] = _never) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._interrupted = interrupted
        self._out = bytearray()  # written by no socket yet
        self._in = bytearray()  # read, not yet a whole message
        self._got: deque[Any] = deque()
        self._poll = select.poll()

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        self._out += len(data).to_bytes(_HEADER, "big")
        self._out += data
        self._write()

    def recv(self, block: bool) -> Any:
        """The next message; NOTHING if none has come and not `block`.  EOFError
        once the other end is closed; Interrupted if a wait is given up."""
        while not self._got:
            self._read()
            if self._got or not block:
                break
            self._wait()
        return self._got.popleft() if self._got else NOTHING

    def flush(self, gone: Callable[[Any], bool]) -> None:
        """Write everything kept, waiting as long as it takes, unless a message
        comes meanwhile for which `gone(message)` is true (the other end says
        it reads no more): then what is kept is dropped.  The messages read
        meanwhile are kept for `recv`.  Interrupted if the wait is given up."""
        seen = len(self._got)
        while self._out:
            self._wait()
            if any(gone(m) for m in itertools.islice(self._got, seen, None)):
                self._out.clear()
                return
            seen = len(self._got)

    def drop_output(self) -> None:
        """Forget what is kept unwritten (the other end no longer reads)."""
        self._out.clear()

    def _write(self) -> None:
        while self._out:
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return
            del self._out[:sent]

    def _read(self) -> None:
        ended = False
        while True:
            try:
                chunk = self.sock.recv(_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                ended = True  # the end, after the whole messages read before it
                break
            self._in += chunk
            if len(chunk) < _CHUNK:
                break
        buf, at = self._in, 0
        while len(buf) - at >= _HEADER:
            size = int.from_bytes(buf[at : at + _HEADER], "big")
            if len(buf) - at - _HEADER < size:
                break
            at += _HEADER
            self._got.append(pickle.loads(buf[at : at + size]))
            at += size
        if at:
            del buf[:at]
        elif ended:  # (the next read says it, if this one gave messages)
            raise EOFError("the other end of the lockstep closed")

    def _wait(self) -> None:
        """Until the socket is readable, or writable while something is kept;
        Interrupted once `interrupted()` is true, looked at every WAIT_SLICE_MS."""
        fd = self.sock.fileno()
        mask = select.POLLIN | (select.POLLOUT if self._out else 0)
        self._poll.register(fd, mask)
        try:
            while not self._interrupted():
                events = self._poll.poll(WAIT_SLICE_MS)
                if events:
                    break
            else:
                raise Interrupted("the run was stopped while it waited for the other process")
        finally:
            self._poll.unregister(fd)
        for _, event in events:
            if event & select.POLLOUT:
                self._write()
            if event & (select.POLLIN | select.POLLHUP | select.POLLERR):
                self._read()
