"""A sorted list in chunks that copies share until they change (MemoryTree's leaves).

`MemoryTree` keeps its leaves, and the starts of its nodes, sorted.  As one
Python list, every copy of a store copies them all: a simulation's thousand
peers, each starting from a template with a leaf per member, would hold a
thousand copies.  `SortedChunks` keeps the items in chunks of a few hundred,
with the last key of each chunk to find the right one.  A copy takes the
list of chunks (a pointer each) and shares the chunks themselves; a chunk is
copied the first time either side changes it, so a peer owns only the
chunks its own writes touched (most writes are new, and land in the last).

Every operation is O(log n) to find its place plus O(chunk) to change it.
"""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

T = TypeVar("T")

CHUNK = 256
"""Items a chunk holds at most twice of (it splits in two past 2 * CHUNK)."""


class SortedChunks(Generic[T]):
    """Items kept sorted by `key` (unique keys), in chunks shared with copies."""

    __slots__ = ("_chunks", "_key", "_len", "_maxes", "_owned")

    def __init__(self, key: Callable[[T], Any] | None = None) -> None:
        self._key = key
        self._chunks: list[list[T]] = []
        self._maxes: list[Any] = []  # the key of each chunk's last item
        self._owned: list[bool] = []  # whether this copy alone holds each chunk
        self._len = 0

    def _k(self, item: T) -> Any:
        return item if self._key is None else self._key(item)

    def copy(self) -> SortedChunks[T]:
        other: SortedChunks[T] = SortedChunks(self._key)
        other._chunks = list(self._chunks)
        other._maxes = list(self._maxes)
        other._owned = [False] * len(self._chunks)
        other._len = self._len
        self._owned = [False] * len(self._chunks)  # shared now: neither side changes them
        return other

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[T]:
        for chunk in self._chunks:
            yield from chunk

    # -- finding -----------------------------------------------------------------

    def _chunk_of(self, key: Any) -> int:
        """The chunk where `key` is or would go (the last one for a key past them all)."""
        return min(bisect.bisect_left(self._maxes, key), len(self._chunks) - 1)

    def _place(self, key: Any) -> tuple[int, int, bool]:
        """(chunk, index in it, found) of `key`; (-1, 0, False) if there is no chunk."""
        if not self._chunks:
            return -1, 0, False
        c = self._chunk_of(key)
        chunk = self._chunks[c]
        i = bisect.bisect_left(chunk, key, key=self._key)
        return c, i, i < len(chunk) and self._k(chunk[i]) == key

    def find(self, key: Any) -> T | None:
        """The item with `key`, or None."""
        c, i, found = self._place(key)
        return self._chunks[c][i] if found else None

    def from_key(self, lo: Any, limit: int) -> list[T]:
        """Up to `limit` items from the first with a key >= `lo`, in order."""
        return self._collect(lo, None, limit)

    def between(self, lo: Any, hi: Any) -> list[T]:
        """The items with keys in [lo, hi), in order."""
        return self._collect(lo, hi, self._len)

    def _collect(self, lo: Any, hi: Any, limit: int) -> list[T]:
        out: list[T] = []
        if not self._chunks or limit <= 0:
            return out
        key = self._key
        c = bisect.bisect_left(self._maxes, lo)
        i = bisect.bisect_left(self._chunks[c], lo, key=key) if c < len(self._chunks) else 0
        for chunk in self._chunks[c:]:
            j = len(chunk) if hi is None else bisect.bisect_left(chunk, hi, i, key=key)
            out += chunk[i : i + min(j - i, limit - len(out))]
            if len(out) >= limit or j < len(chunk):
                break
            i = 0
        return out

    # -- changing ----------------------------------------------------------------

    def _own(self, c: int) -> list[T]:
        if not self._owned[c]:
            self._chunks[c] = list(self._chunks[c])
            self._owned[c] = True
        return self._chunks[c]

    def add(self, item: T) -> bool:
        """Put `item` in its place; False (nothing changed) if its key is there."""
        key = self._k(item)
        maxes = self._maxes
        if not maxes:
            self._chunks, self._maxes, self._owned = [[item]], [key], [True]
            self._len = 1
            return True
        c = bisect.bisect_left(maxes, key)
        if c == len(maxes):  # past every key (most writes are the newest): append
            c -= 1
            chunk = self._own(c)
            chunk.append(item)
            maxes[c] = key
        else:  # before the chunk's last key, which stays its last
            i = bisect.bisect_left(self._chunks[c], key, key=self._key)
            if self._k(self._chunks[c][i]) == key:
                return False
            chunk = self._own(c)
            chunk.insert(i, item)
        if len(chunk) > 2 * CHUNK:
            half = chunk[CHUNK:]
            del chunk[CHUNK:]
            self._chunks.insert(c + 1, half)
            maxes.insert(c + 1, maxes[c])
            maxes[c] = self._k(chunk[-1])
            self._owned.insert(c + 1, True)
        self._len += 1
        return True

    def remove(self, key: Any) -> bool:
        """Take out the item with `key`; False if there is none."""
        return self.pop(key) is not None

    def pop(self, key: Any) -> T | None:
        """Take out the item with `key` and return it; None if there is none."""
        c, i, found = self._place(key)
        if not found:
            return None
        chunk = self._own(c)
        item = chunk.pop(i)
        if chunk:
            self._maxes[c] = self._k(chunk[-1])
        else:
            del self._chunks[c], self._maxes[c], self._owned[c]
        self._len -= 1
        return item
