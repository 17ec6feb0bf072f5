"""One connection's conversation, sans I/O: frames in, messages out, and how it ends.

After the secure handshake the node's reader task (node.py) hands every
frame its peer sends to the connection's `Conversation`, which decodes it
and decides:

* **before the door**: the first message must be a `Hello` (anything else
  is a violation); the door (door.py) then lets the peer in, or the
  conversation ends with the door's reason and a `Bye`;
* **after it**: a `Bye` or a clean close ends the conversation; every other
  message goes to the `Dispatcher` (dispatch.py), whose replies are what to
  send back.

This is the connection's error boundary for remote input: a frame that
does not decode, a message out of place, or anything the dispatcher's
`RemoteProtocolError` reports ends the conversation with a verdict (a
penalty and a reason) and a `Bye` telling the peer why.  Any other
exception is a bug of ours and leaves `receive` as it is: the node
contains it to this connection (connections.py, `contain`), and the tests fail.

No trio, no socket, no clock: the node passes `now` in, and the adversarial
tests (tests/adversary/) drive a real door and dispatcher through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import RemoteProtocolError
from .wire import MAX_REASON, Bye, Hello

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .dispatch import Dispatcher
    from .door import Door
    from .peer import PeerLink
    from .wire import AnyMessage

NOT_HELLO_PENALTY = 10
"""A peer whose first message is not a Hello is not a pttsync peer, or a hostile one."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a conversation ended: `penalty` failures for the peer's address (0: none)."""

    penalty: int
    reason: str


class Conversation:
    """The reader's decisions for one connection (see the module text).

    `door` admits the peer on its Hello, `dispatcher` takes every later
    message.  After each `receive`, `admitted` says whether the door has let
    the peer in and `ended` whether the conversation is over, and why.
    """

    def __init__(self, link: PeerLink, *, door: Door, dispatcher: Dispatcher) -> None:
        self.link = link
        self.door = door
        self.dispatcher = dispatcher
        self.admitted = False
        self.ended: Verdict | None = None

    def receive(self, frame: bytes | None, now: float) -> Sequence[AnyMessage]:
        """Take one frame (None: the peer closed the connection); what to send back."""
        if self.ended is not None:
            raise RuntimeError(f"a frame after the conversation ended: {self.ended.reason}")
        try:
            msg = None if frame is None else self.link.decode(frame)
            if not self.admitted:
                return self._before_door(msg)
            if msg is None:
                return self._end(0, "the peer closed the connection")
            if isinstance(msg, Bye):
                self.link.peer_bye = msg.reason
                return self._end(0, f"the peer said: {msg.reason}")
            return self.dispatcher.handle(self.link, msg, now)
        except RemoteProtocolError as exc:
            return self.violated(exc)

    def violated(self, exc: RemoteProtocolError) -> Sequence[AnyMessage]:
        """The peer broke the protocol (here, or in the channel's framing): end with a Bye."""
        self._end(max(1, exc.penalty), f"protocol violation: {exc}")
        return [Bye(str(exc)[:MAX_REASON])]

    def _before_door(self, msg: AnyMessage | None) -> Sequence[AnyMessage]:
        if msg is None:
            return self._end(0, "closed before its Hello")
        if not isinstance(msg, Hello):
            return self._end(NOT_HELLO_PENALTY, f"sent {type(msg).__name__} before its Hello")
        verdict = self.door.admit(self.link, msg)
        if verdict is not None:
            self._end(*verdict)
            return [Bye(verdict[1][:MAX_REASON])]
        self.admitted = True
        return []

    def _end(self, penalty: int, reason: str) -> Sequence[AnyMessage]:
        self.ended = Verdict(penalty, reason)
        return ()
