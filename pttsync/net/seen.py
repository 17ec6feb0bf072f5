"""The seen-cache: which peers are known to hold each oplog copy.

Push sends a copy of an oplog to a peer at most once (push.py), and a
copy a peer pushed here is not sent back to it: both ask this cache, the
topic runtime's, which every commit, push and routed batch updates.  It is
bounded (the oldest entries are forgotten first: anti-entropy repairs what
a forgotten entry lets through twice, or not at all), and a peer that
disconnects is forgotten in O(1), since what was queued for it may never
have arrived.

It holds one entry per oplog a node has seen lately, in every node, so it
is kept small (a simulated node of a thousand spent 435 bytes an oplog on
it, more than its store): an entry is the copy's hash and a bitmask of
peers, each connected peer having a slot number.  A peer forgotten gets a
new slot when it comes back, so its old bits no longer count; when the
slot numbers run far past the peers connected, they are renumbered.
The entries are one per oplog ID, each a short chain of its copies (a
pending copy and the valid one after co-signing are both in flight for a
while), newest first, at most `MAX_COPIES`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["MAX_COPIES", "Holders", "SeenCache"]

MAX_COPIES = 4
"""Copies of one oplog remembered (by hash); an older one beyond is forgotten."""

_VALID_HERE = b""
"""A holder that is no peer (peer IDs are 32 bytes): this node holds the copy as valid."""


class Holders:
    """The peers known to hold one copy (a set: `in`, `add`, `discard`)."""

    __slots__ = ("_cache", "hash", "mask", "older")

    def __init__(self, cache: SeenCache, copy_hash: bytes, older: Holders | None) -> None:
        self._cache = cache
        self.hash = copy_hash
        self.mask = 0  # bit i: the peer in slot i holds it
        self.older = older  # the holders of another copy of the oplog, seen before

    def __contains__(self, peer_id: object) -> bool:
        slot = self._cache._slots.get(peer_id)  # type: ignore[call-overload]
        return slot is not None and bool(self.mask >> slot & 1)

    def add(self, peer_id: bytes) -> None:
        slot = self._cache.slot(peer_id)  # first: it may renumber every mask, this one too
        self.mask |= 1 << slot

    def mark_valid(self) -> None:
        """This node holds this copy as valid now (stored by any means)."""
        self.add(_VALID_HERE)

    def discard(self, peer_id: bytes) -> None:
        slot = self._cache._slots.get(peer_id)
        if slot is not None:
            self.mask &= ~(1 << slot)


class SeenCache:
    """Which peers are known to hold each oplog copy: bounded, oldest forgotten first.

    Keys are (oplog ID, hash) pairs, as callers know a copy; entries are kept
    per oplog ID (its copies chained), and `len` counts oplogs.
    """

    def __init__(self, max_entries: int, *, spare_slots: int = 64) -> None:
        self.max_entries = max_entries
        self.spare_slots = spare_slots  # slots given out beyond twice the peers, then renumber
        self._map: dict[bytes, Holders] = {}  # oplog ID -> its copies' holders, oldest ID first
        self._slots: dict[bytes, int] = {}  # peer -> its slot (peers not forgotten)
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._map)

    def slot(self, peer_id: bytes) -> int:
        """The slot of `peer_id`, given one if it has none."""
        slot = self._slots.get(peer_id)
        if slot is None:
            if self._next_slot > 2 * len(self._slots) + self.spare_slots:
                self._renumber()
            slot = self._slots[peer_id] = self._next_slot
            self._next_slot += 1
        return slot

    def valid_here(self, oplog_id: bytes) -> bool:
        """Whether this node stored a copy of the oplog as valid lately (while it is in
        the cache; False says nothing)."""
        entry = self._map.get(oplog_id)
        while entry is not None:
            if _VALID_HERE in entry:
                return True
            entry = entry.older
        return False

    def held_by(self, oplog_id: bytes, peer_id: bytes) -> bool:
        """`peer_id` holds the oplog as valid (it announced it): note it on the copy
        this node holds as valid, if that is in the cache.  True if it was (so this
        node stored the oplog as valid lately: `valid_here`)."""
        entry = self._map.get(oplog_id)
        while entry is not None:
            if _VALID_HERE in entry:
                entry.add(peer_id)
                return True
            entry = entry.older
        return False

    def lacking(self, peer_id: bytes, oplog_ids: Iterable[bytes]) -> list[bytes]:
        """`held_by` of each ID, in order: the IDs not stored here as valid lately (while
        in the cache), and `peer_id` noted as a holder of the others.  The two bits
        are looked up once (an announcement asks it of every ID it carries)."""
        peer_bit = 1 << self.slot(peer_id)  # first: a new slot may renumber every mask
        valid_slot = self._slots.get(_VALID_HERE)
        if valid_slot is None:  # nothing stored as valid yet
            return list(oplog_ids)
        valid_bit, found, out = 1 << valid_slot, self._map.get, []
        for oid in oplog_ids:
            entry = found(oid)
            while entry is not None:
                if entry.mask & valid_bit:
                    entry.mask |= peer_bit
                    break
                entry = entry.older
            else:
                out.append(oid)
        return out

    def not_held_by(self, peer_id: bytes, keys: list[tuple[bytes, bytes]]) -> list[bytes]:
        """The oplog IDs of the copies `keys` that `peer_id` is not known to hold, in
        order: `[oid for oid, h in keys if peer_id not in (get((oid, h)) or ())]`,
        with the peer's slot looked up once (announcements ask it of every ID)."""
        slot = self._slots.get(peer_id)
        if slot is None:
            return [oid for oid, _ in keys]
        bit, found, out = 1 << slot, self._map.get, []
        for oid, copy_hash in keys:
            entry = found(oid)
            while entry is not None and entry.hash != copy_hash:
                entry = entry.older
            if entry is None or not entry.mask & bit:
                out.append(oid)
        return out

    def forget_peer(self, peer_id: bytes) -> None:
        """A peer disconnected: what we queued for it may never have arrived."""
        self._slots.pop(peer_id, None)

    def get(self, key: tuple[bytes, bytes]) -> Holders | None:
        """The known holders of a copy, if it is in the cache (no entry is made)."""
        entry = self._map.get(key[0])
        while entry is not None and entry.hash != key[1]:
            entry = entry.older
        return entry

    def holders(self, key: tuple[bytes, bytes]) -> Holders:
        """The known holders of a copy, made (with none) if it is not in the cache."""
        found = self.get(key)
        if found is not None:
            return found
        oplog_id, copy_hash = key
        newest = entry = self._map.get(oplog_id)
        for _ in range(MAX_COPIES - 2):  # keep the newest MAX_COPIES - 1 with the new one
            if entry is None:
                break
            entry = entry.older
        if entry is not None:
            entry.older = None
        made = self._map[oplog_id] = Holders(self, copy_hash, newest)
        if newest is None and len(self._map) > self.max_entries:
            del self._map[next(iter(self._map))]
        return made

    def _renumber(self) -> None:
        """Give the peers not forgotten the slots 0, 1, ...: the bits of forgotten
        slots go, and every mask stays as short as the peers connected."""
        moves = [(old, new) for new, old in enumerate(sorted(self._slots.values()))]
        for newest in self._map.values():
            entry: Holders | None = newest
            while entry is not None:
                mask, kept = entry.mask, 0
                if mask:
                    for old, new in moves:
                        if mask >> old & 1:
                            kept |= 1 << new
                entry.mask, entry = kept, entry.older
        renamed = dict(moves)
        self._slots = {peer: renamed[old] for peer, old in self._slots.items()}
        self._next_slot = len(moves)
