"""The seen-cache: which peers are known to hold each oplog copy.

Push sends a copy of an oplog to a peer at most once (push.py), and a
copy a peer pushed here is not sent back to it: both ask this cache, the
topic runtime's, which every commit, push and routed batch updates.  It is
bounded (the oldest entries are forgotten first: anti-entropy repairs what
a forgotten entry lets through twice, or not at all), and a peer that
disconnects is forgotten in O(1), since what was queued for it may never
have arrived.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["Holders", "SeenCache"]


class Holders:
    """The peers known to hold one copy (a set: `in`, `add`), minus peers forgotten since."""

    __slots__ = ("_cache", "_peers")

    def __init__(self, cache: SeenCache) -> None:
        self._cache = cache
        self._peers: dict[bytes, int] = {}  # peer -> its epoch when it was added

    def __contains__(self, peer_id: object) -> bool:
        epoch = self._peers.get(peer_id)  # type: ignore[call-overload]
        return epoch is not None and epoch == self._cache._epochs.get(peer_id, 0)  # type: ignore[call-overload]

    def add(self, peer_id: bytes) -> None:
        self._peers[peer_id] = self._cache._epochs.get(peer_id, 0)

    def discard(self, peer_id: bytes) -> None:
        self._peers.pop(peer_id, None)


class SeenCache:
    """Which peers are known to hold each oplog copy: bounded, oldest forgotten first.

    Forgetting a peer is O(1): each peer has an epoch, bumped when it is
    forgotten, and a holder counts only if it was added in its current epoch.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._map: OrderedDict[tuple[bytes, bytes], Holders] = OrderedDict()
        self._epochs: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._map)

    def forget_peer(self, peer_id: bytes) -> None:
        """A peer disconnected: what we queued for it may never have arrived."""
        self._epochs[peer_id] = self._epochs.get(peer_id, 0) + 1

    def get(self, key: tuple[bytes, bytes]) -> Holders | None:
        """The known holders of a copy, if it is in the cache (no entry is made)."""
        return self._map.get(key)

    def holders(self, key: tuple[bytes, bytes]) -> Holders:
        peers = self._map.get(key)
        if peers is None:
            peers = self._map[key] = Holders(self)
            while len(self._map) > self.max_entries:
                self._map.popitem(last=False)
        else:
            self._map.move_to_end(key)
        return peers
