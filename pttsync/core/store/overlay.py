"""Containers that share a frozen base between copies: how a thousand stores share one.

A simulation starts every peer's `MemoryStore` from one template that holds
a ROLE oplog per member, so plain copies cost the square of the peers: at
10,000 peers, 12 GB before anything is written.  These containers let the
copies share the template's part and keep only their own changes:

* `Overlay`: a mapping of its own entries over a frozen base mapping, with
  the base keys it removed hidden.  A read looks in its own entries first,
  then in the base; a write touches only its own.
* `split(d)`: what the owner of a container goes on with, and an
  independent copy, both overlays over the container's present content
  frozen as their base.

The base is never written once shared: every write goes to an overlay's
own entries, so copies stay independent (tests/test_memstore.py compares
copies against SQLite through random histories).  A plain `dict` is what a
store holds until its first copy; it pays nothing for this.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, MutableMapping
from typing import TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

_MISSING = object()


class Overlay(MutableMapping[K, V]):
    """`own` entries over a frozen `base`; base keys in `hidden` were removed here."""

    __slots__ = ("_len", "base", "hidden", "own")

    def __init__(
        self,
        base: Mapping[K, V],
        own: dict[K, V] | None = None,
        hidden: set[K] | None = None,
    ) -> None:
        self.base = base
        self.own: dict[K, V] = {} if own is None else own
        self.hidden: set[K] = set() if hidden is None else hidden
        self._len = len(base) - len(self.hidden) + sum(1 for k in self.own if not self._in_base(k))

    def _in_base(self, key: K) -> bool:
        return key in self.base and key not in self.hidden

    def __getitem__(self, key: K) -> V:
        value = self.own.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        if key in self.hidden:
            raise KeyError(key)
        return self.base[key]

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        value = self.own.get(key, _MISSING)
        if value is not _MISSING:
            return value
        if key in self.hidden:
            return default
        return self.base.get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.own or (key in self.base and key not in self.hidden)

    def __setitem__(self, key: K, value: V) -> None:
        if key not in self.own and not self._in_base(key):
            self._len += 1
        self.own[key] = value

    def __delitem__(self, key: K) -> None:
        if key in self.own:
            del self.own[key]
            if self._in_base(key):
                self.hidden.add(key)  # the base's entry was shadowed: it goes too
            self._len -= 1
        elif self._in_base(key):
            self.hidden.add(key)
            self._len -= 1
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[K]:
        yield from self.own
        own, hidden = self.own, self.hidden
        for key in self.base:
            if key not in own and key not in hidden:
                yield key

    def __len__(self) -> int:
        return self._len

    def pairs(self) -> Iterator[tuple[K, V]]:
        """Every (key, value), own first: one pass, no lookup per key (a store's scans)."""
        yield from self.own.items()
        own, hidden = self.own, self.hidden
        for key, value in self.base.items():
            if key not in own and key not in hidden:
                yield key, value

    def fork(self) -> Overlay[K, V]:
        """An independent copy sharing the same base."""
        return Overlay(self.base, dict(self.own), set(self.hidden))


class Same:
    """A frozen base as part of a dict key: equal to another `Same` exactly when both
    hold the very same base (a key holding it keeps it alive, so no other object
    can come to have its id)."""

    __slots__ = ("base",)

    def __init__(self, base: object) -> None:
        self.base = base

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.base is self.base

    def __hash__(self) -> int:
        return id(self.base)


def split(container: MutableMapping[K, V]) -> tuple[Overlay[K, V], Overlay[K, V]]:
    """(What the owner of `container` goes on with, an independent copy of it.)

    A plain dict becomes the frozen base of both (nobody writes it again).
    An overlay keeps its base (already frozen) and the copy shares it, unless
    its own changes have grown to half its base: then its whole content
    becomes a new base, so that chains of copies do not pile up changes.
    """
    if isinstance(container, Overlay):
        if len(container.own) + len(container.hidden) <= len(container.base) // 2:
            return container, container.fork()
        container = dict(container)
    mine = Overlay(container)
    return mine, mine.fork()


def pairs(container: MutableMapping[K, V]) -> Iterator[tuple[K, V]] | ItemsView[K, V]:
    """`container.items()`, in one pass over an overlay (see `Overlay.pairs`)."""
    return container.pairs() if isinstance(container, Overlay) else container.items()
