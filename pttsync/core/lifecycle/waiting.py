"""Oplogs that arrived before their previous log: held, bounded, until it is stored.

A document's oplogs chain by `prev_id`, and a peer may hear of a new
version before the one it follows: pushes race each other along different
paths, and a write to a hot document follows the last one within
milliseconds.  Refusing such an oplog would lose it for as long as nobody
sends it again: a pushed oplog is sent to each peer once (the seen-cache,
net/seen.py), and a pending one, pushed downhill towards a master, may
have no other way there (simulation.md, "What the simulator found").  So
it waits here and is handled again as soon as its previous log is stored.
Yjs does the same with its pending structs.

The handler (handle.py) keeps two: one for valid oplogs, one for pending
ones, each handled by its own path when released.  Both are bounded: the
oldest waiter goes first, and anti-entropy (or the next relay of a pending
oplog) brings it again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from .rules import select_existing

if TYPE_CHECKING:
    from ..oplog import Oplog

__all__ = ["LIMIT", "Waiting"]

log = logging.getLogger(__name__)

LIMIT = 4096
"""Oplogs held in one buffer while their previous log is missing; the oldest go first."""


class Waiting:
    """Oplogs waiting for their previous log, oldest first, indexed by that log."""

    __slots__ = ("_by_prev", "_oplogs", "limit")

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._oplogs: OrderedDict[bytes, Oplog] = OrderedDict()
        self._by_prev: dict[bytes, set[bytes]] = {}

    def __len__(self) -> int:
        return len(self._oplogs)

    def __contains__(self, oplog_id: object) -> bool:
        return oplog_id in self._oplogs

    def add(self, oplog: Oplog) -> None:
        """Hold `oplog` (it has a previous log) until that log is stored.

        Of two copies of one oplog the one select-existing prefers is kept, so
        the copy finally stored does not depend on the order they arrived in.
        """
        assert oplog.prev_id is not None
        oid = oplog.oplog_id
        held = self._oplogs.get(oid)
        if held is not None:
            self._oplogs.move_to_end(oid)
            if not select_existing(oplog, held):
                return
        self._oplogs[oid] = oplog
        self._by_prev.setdefault(oplog.prev_id, set()).add(oid)
        while len(self._oplogs) > self.limit:
            old = self._oplogs.popitem(last=False)[1]
            self._forget(old)
            log.debug("dropped oplog %s waiting for its previous log", old.oplog_id.hex()[:16])

    def release(self, prev_id: bytes) -> list[Oplog]:
        """The oplogs waiting for `prev_id`, taken out (in ID order: deterministic)."""
        waiters = self._by_prev.pop(prev_id, None)
        if not waiters:  # nearly always: asked of every oplog stored
            return []
        found = (self._oplogs.pop(oid, None) for oid in sorted(waiters))
        return [o for o in found if o is not None]

    def take(self, oplog: Oplog) -> Oplog:
        """Take any waiting copy of `oplog` out; return the copy select-existing prefers."""
        held = self._oplogs.pop(oplog.oplog_id, None)
        if held is None:
            return oplog
        self._forget(held)
        return held if select_existing(held, oplog) else oplog

    def _forget(self, oplog: Oplog) -> None:
        assert oplog.prev_id is not None
        ids = self._by_prev.get(oplog.prev_id)
        if ids is not None:
            ids.discard(oplog.oplog_id)
            if not ids:
                del self._by_prev[oplog.prev_id]
