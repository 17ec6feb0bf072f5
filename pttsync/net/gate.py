"""The gate: inbound connections not yet admitted, capped in all and per host.

A connection holds a place from its first byte until the door admits it
(after the Noise handshake and its Hello) or it ends.  At most `max_total`
may be held at once, and `max_per_host` from one host; one more is turned
away unread (config.py, `max_handshakes`, says why).  So a flood of idle
connections, or a slowloris from one host or many, costs at most that many
tasks and sockets, each for at most two handshake timeouts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["InboundGate"]


class InboundGate:
    """Places for inbound connections not yet admitted (see the module text)."""

    def __init__(self, max_total: int, max_per_host: int) -> None:
        self.max_total = max_total
        self.max_per_host = max_per_host
        self.held: dict[str, int] = {}  # places held, by host
        self.turned_away = 0  # connections closed unread: no place left

    def enter(self, host: str) -> Callable[[], None] | None:
        """A place for a connection from `host`, and its release (idempotent); None if full."""
        held = self.held
        if sum(held.values()) >= self.max_total or held.get(host, 0) >= self.max_per_host:
            self.turned_away += 1
            return None
        held[host] = held.get(host, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                held[host] -= 1
                if not held[host]:
                    del held[host]

        return release
