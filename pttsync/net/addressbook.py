"""The addresses a node knows, and when it may dial each one again.

Addresses come from `--join`, from peers' Hellos (where they listen) and
from peer exchange (`Peers` messages).  After a failed dial, a dropped
connection or a protocol violation, an address waits before the next dial:

    delay = min(cap, base * 2 ** failures) * uniform(0.5, 1.0)

so retries spread out (full jitter in the upper half, as in the AWS
architecture note on backoff) and a whole network restarting at once does
not dial in lock-step.  A violation counts as `penalty` failures at once.
A connection resets the count only once it has lasted `STABLE` seconds: a
peer that admits us and then says Bye at once (its door refused us: not a
member there, or no room) is backed off like one that does not answer.

Each entry keeps its last error and when it is due again, for
`pttsync peers`.  An address given with `--join` that fails is logged as a
warning with the reason, at most once per backoff period; other addresses
fail at debug level.

The book is bounded (`max_entries`).  When full, a new address replaces
the entry that has failed most; addresses given with `--join` are never
evicted.  No clock: times are trio's (`trio.current_time()`), passed in.
"""

from __future__ import annotations

import logging
import math
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

log = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 1024
MAX_FAILURES = 30  # caps the exponent
STABLE = 10.0  # seconds a connection lasts before its address's failures are forgiven


@dataclass(slots=True)
class Entry:
    address: str
    peer_id: bytes | None = None  # learnt from a handshake, or from peer exchange
    failures: int = 0
    next_try: float = 0.0
    pinned: bool = False  # given with --join: never evicted
    connected_once: bool = False
    last_error: str = ""  # why the last dial or connection failed
    last_error_at: float | None = None
    quiet_until: float | None = None  # a --join address: no new warning before this


_NEXT_TRY = operator.attrgetter("next_try")


class AddressBook:
    def __init__(
        self,
        rng: random.Random,
        *,
        base: float = 1.0,
        cap: float = 300.0,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        self.rng = rng
        self.base = base
        self.cap = cap
        self.max_entries = max_entries
        self._entries: dict[str, Entry] = {}
        # Bumped when an address is first reached (or reached as another peer): what
        # a `Peers` message passes on has grown since a peer was last told.
        self.news = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: str) -> bool:
        return address in self._entries

    def get(self, address: str) -> Entry | None:
        return self._entries.get(address)

    def add(
        self, address: str, peer_id: bytes | None = None, *, pinned: bool = False, now: float = 0.0
    ) -> bool:
        """Remember `address`; True if it is new."""
        entry = self._entries.get(address)
        if entry is not None:
            if peer_id is not None and entry.peer_id is None:
                entry.peer_id = peer_id
            entry.pinned = entry.pinned or pinned
            return False
        if len(self._entries) >= self.max_entries and not self._evict():
            return False
        self._entries[address] = Entry(address, peer_id, next_try=now, pinned=pinned)
        return True

    def _evict(self) -> bool:
        candidates = [e for e in self._entries.values() if not e.pinned]
        if not candidates:
            return False
        worst = max(candidates, key=lambda e: (e.failures, not e.connected_once, e.address))
        del self._entries[worst.address]
        return True

    def delay(self, failures: int) -> float:
        raw = min(self.cap, self.base * 2 ** min(failures, MAX_FAILURES))
        return float(raw * self.rng.uniform(0.5, 1.0))

    def failed(self, address: str, now: float, *, penalty: int = 1, reason: str = "") -> float:
        """Count a failure (or a violation worth `penalty`); the delay before the next dial."""
        entry = self._entries.get(address)
        if entry is None:
            return 0.0
        entry.failures = min(entry.failures + max(1, penalty), MAX_FAILURES)
        wait = self.delay(entry.failures - 1)
        entry.next_try = now + wait
        if reason:
            entry.last_error, entry.last_error_at = reason, now
        if entry.pinned and (entry.quiet_until is None or now >= entry.quiet_until):
            entry.quiet_until = now + wait
            log.warning(
                "cannot join %s: %s; trying again in %.1f s (failures: %d)",
                address, reason or "failed", wait, entry.failures,
            )  # fmt: skip
        else:
            log.debug("%s failed (%s); next try in %.1f s", address, reason, wait)
        return wait

    def own(self, address: str, peer_id: bytes) -> None:
        """`address` turned out to be this node's own (`peer_id`): never dialed again."""
        entry = self._entries.get(address)
        if entry is not None:
            entry.peer_id = peer_id
            entry.next_try = math.inf
            entry.last_error = "this node's own address"

    def connected(self, address: str, peer_id: bytes) -> None:
        entry = self._entries.get(address)
        if entry is not None:
            if not entry.connected_once or entry.peer_id != peer_id:
                self.news += 1
            entry.peer_id = peer_id
            entry.connected_once = True

    def disconnected(self, address: str, now: float, *, lasted: float = 0.0) -> None:
        """A working connection ended after `lasted` seconds: dial again after the
        base delay, jittered (its failures are forgiven if it lasted STABLE)."""
        entry = self._entries.get(address)
        if entry is not None:
            if lasted >= STABLE:
                entry.failures = 0
            entry.next_try = now + self.delay(entry.failures)

    def ended(
        self,
        address: str,
        now: float,
        *,
        lasted: float,
        penalty: int = 0,
        reason: str = "",
        sent_away: bool = False,
    ) -> None:
        """A connection to `address` ended after `lasted` seconds: a failure worth
        `penalty` (a violation, a refusal by our door), or none.  A peer that sent
        us away (its Bye) before STABLE counts as one failure: its door refused us."""
        if not penalty and sent_away and lasted < STABLE:
            penalty = 1
        if penalty:
            self.failed(address, now, penalty=penalty, reason=reason)
        else:
            self.disconnected(address, now, lasted=lasted)

    def entries(self) -> list[Entry]:
        """Every known address (for `pttsync peers` and the metrics)."""
        return list(self._entries.values())

    def due(self, now: float) -> list[Entry]:
        """Entries that may be dialed now, longest-waiting first."""
        ready = [e for e in self._entries.values() if e.next_try <= now]
        self.rng.shuffle(ready)  # among equals, no address is always first
        ready.sort(key=lambda e: (e.failures, e.next_try))
        return ready

    def next_due(self) -> float | None:
        return min(map(_NEXT_TRY, self._entries.values()), default=None)

    def known(self, limit: int) -> list[tuple[bytes, str]]:
        """(peer ID, address) of peers this node reached, for peer exchange."""
        good = [e for e in self._entries.values() if e.connected_once and e.peer_id is not None]
        # A random sample, the healthiest first: were it always the same addresses
        # (say the first in sort order), every newcomer would dial the same few
        # peers and a large network would knot around them.
        self.rng.shuffle(good)
        good.sort(key=lambda e: e.failures)
        return [(e.peer_id, e.address) for e in good[:limit] if e.peer_id is not None]
