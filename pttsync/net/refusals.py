"""Who a node refused at its door lately, and why: for the operator.

A master cannot admit a peer it does not know of.  The door (door.py)
records each peer it refuses here, by peer ID, so that `pttsync peers`
can list who tried to come in during the last hour and why they were
turned back ("not a member of any topic this node serves", "too many
peers"), with the peer ID a master passes to `pttsync member add`.

Bounded twice: entries older than `window` are forgotten, and at most
`max_entries` peers are kept (a new one replaces the least recently seen).
The totals by reason are kept for ever, for the metrics (metrics.py).
Times are the node's wall clock in nanoseconds, passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..core.timeutil import NS_PER_SECOND

DEFAULT_WINDOW = 3600 * NS_PER_SECOND
DEFAULT_MAX_ENTRIES = 256

NOT_MEMBER = "not_member"
NO_ROOM = "no_room"
KINDS = (NOT_MEMBER, NO_ROOM)
"""The kinds of refusal, as the metrics label them."""


@dataclass(slots=True)
class Refusal:
    """One peer refused at the door: the latest time, and how often in the window."""

    peer_id: bytes
    address: str  # where the connection came from (or went to, for one this node dialed)
    kind: str  # one of KINDS
    reason: str  # what the peer was told
    first: int  # wall-clock ns
    last: int
    count: int = 1


class Refusals:
    """The peers refused lately (see the module text)."""

    def __init__(
        self, *, window: int = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        if window <= 0 or max_entries <= 0:
            raise ValueError("window and max_entries must be positive")
        self.window = window
        self.max_entries = max_entries
        self._entries: OrderedDict[bytes, Refusal] = OrderedDict()
        self.totals: dict[str, int] = dict.fromkeys(KINDS, 0)

    def add(self, peer_id: bytes, address: str, kind: str, reason: str, now: int) -> None:
        """The door refused `peer_id` at `now` (wall-clock ns)."""
        if kind not in self.totals:
            raise ValueError(f"unknown kind of refusal {kind!r}")
        self.totals[kind] += 1
        entry = self._entries.pop(peer_id, None)
        if entry is None or now - entry.last > self.window:
            entry = Refusal(peer_id, address, kind, reason, now, now, 0)
        entry.address, entry.kind, entry.reason, entry.last = address, kind, reason, now
        entry.count += 1
        self._entries[peer_id] = entry  # the most recent last
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, peer_id: bytes) -> None:
        """`peer_id` came in after all (a master admitted it): it is no longer refused."""
        self._entries.pop(peer_id, None)

    def recent(self, now: int) -> list[Refusal]:
        """The refusals of the last `window`, the most recent first."""
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.last <= self.window:
                break
            self._entries.popitem(last=False)
        return list(reversed(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)
