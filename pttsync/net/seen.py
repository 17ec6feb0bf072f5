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
The entries are one per oplog ID, the copy last asked about: a better
copy (more co-signatures) starts with no holders, as a new copy should.
"""

from __future__ import annotations

__all__ = ["Holders", "SeenCache"]

_VALID_HERE = b""
"""A holder that is no peer (peer IDs are 32 bytes): this node holds the copy as valid."""


class Holders:
    """The peers known to hold one copy (a set: `in`, `add`, `discard`)."""

    __slots__ = ("_cache", "hash", "mask")

    def __init__(self, cache: SeenCache, copy_hash: bytes) -> None:
        self._cache = cache
        self.hash = copy_hash
        self.mask = 0  # bit i: the peer in slot i holds it

    def __contains__(self, peer_id: object) -> bool:
        slot = self._cache._slots.get(peer_id)  # type: ignore[call-overload]
        return slot is not None and bool(self.mask >> slot & 1)

    def add(self, peer_id: bytes) -> None:
        self.mask |= 1 << self._cache.slot(peer_id)

    def discard(self, peer_id: bytes) -> None:
        slot = self._cache._slots.get(peer_id)
        if slot is not None:
            self.mask &= ~(1 << slot)


class SeenCache:
    """Which peers are known to hold each oplog copy: bounded, oldest forgotten first.

    Keys are (oplog ID, hash) pairs, as callers know a copy; one entry is kept
    per oplog ID.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._map: dict[bytes, Holders] = {}  # oplog ID -> its copy's holders, oldest first
        self._slots: dict[bytes, int] = {}  # peer -> its slot (peers not forgotten)
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._map)

    def slot(self, peer_id: bytes) -> int:
        """The slot of `peer_id`, given one if it has none."""
        slot = self._slots.get(peer_id)
        if slot is None:
            if self._next_slot > 2 * len(self._slots) + 64:
                self._renumber()
            slot = self._slots[peer_id] = self._next_slot
            self._next_slot += 1
        return slot

    def mark_valid(self, key: tuple[bytes, bytes]) -> None:
        """This node holds the copy `key` as valid now (stored by any means)."""
        self.holders(key).add(_VALID_HERE)

    def valid_here(self, oplog_id: bytes) -> bool:
        """Whether this node stored a copy of the oplog as valid lately (while it is in
        the cache; False says nothing)."""
        entry = self._map.get(oplog_id)
        return entry is not None and _VALID_HERE in entry

    def forget_peer(self, peer_id: bytes) -> None:
        """A peer disconnected: what we queued for it may never have arrived."""
        self._slots.pop(peer_id, None)

    def get(self, key: tuple[bytes, bytes]) -> Holders | None:
        """The known holders of a copy, if it is in the cache (no entry is made)."""
        entry = self._map.get(key[0])
        return entry if entry is not None and entry.hash == key[1] else None

    def holders(self, key: tuple[bytes, bytes]) -> Holders:
        """The known holders of a copy, made (with none) if it is not in the cache."""
        oplog_id, copy_hash = key
        entry = self._map.get(oplog_id)
        if entry is not None and entry.hash == copy_hash:
            return entry
        if entry is not None:
            del self._map[oplog_id]  # another copy: the new one goes in as the newest
        entry = self._map[oplog_id] = Holders(self, copy_hash)
        if len(self._map) > self.max_entries:
            del self._map[next(iter(self._map))]
        return entry

    def _renumber(self) -> None:
        """Give the peers not forgotten the slots 0, 1, ...: the bits of forgotten
        slots go, and every mask stays as short as the peers connected."""
        moves = sorted((old, new) for new, old in enumerate(sorted(self._slots.values())))
        for entry in self._map.values():
            mask, kept = entry.mask, 0
            if mask:
                for old, new in moves:
                    if mask >> old & 1:
                        kept |= 1 << new
            entry.mask = kept
        renamed = dict(moves)
        self._slots = {peer: renamed[old] for peer, old in self._slots.items()}
        self._next_slot = len(moves)
