"""Object IDs by op page, in order: how the documents are listed without the members.

`Store.object_ids(ops=(lo, hi))` lists the objects some oplog of which has
an op in [lo, hi).  The documents' ops (put, delete) are 1 and 2, the
governance's 0x100 and up (a ROLE object a member), so a plain scan of every
object for a page of documents reads every member too: in a simulation of N
members with few documents, the document checks read N objects on each of N
peers (15 s of a 3,000-peer run's 139 s, the square of the peers).

`OpPages` keeps, per page of 256 ops (`op >> 8`), the sorted IDs of the
objects with an op in it, updated as objects come and go.  A query whose
range lies in one page reads that page's list only.  Copies share the
lists, each side copying a list the first time it changes it (the members'
page of a simulation's ten thousand peers is one list until governance
changes).
"""

from __future__ import annotations

import bisect

PAGE_BITS = 8


def page_of(op: int) -> int:
    return op >> PAGE_BITS


class OpPages:
    """Sorted object IDs per op page (see the module text)."""

    __slots__ = ("_lists", "_own")

    def __init__(self, lists: dict[int, list[bytes]] | None = None) -> None:
        self._lists: dict[int, list[bytes]] = lists if lists is not None else {}
        self._own: set[int] = set()  # the lists this side made, and may change in place

    def copy(self) -> OpPages:
        """An independent copy; the two share every list until one changes it."""
        self._own = set()
        return OpPages(dict(self._lists))

    def _mine(self, page: int) -> list[bytes]:
        """The list of `page`, this side's own (copied first if shared or made if none)."""
        if page not in self._own:
            self._lists[page] = list(self._lists.get(page, ()))
            self._own.add(page)
        return self._lists[page]

    def add(self, object_id: bytes, page: int) -> None:
        """`object_id` has an op in `page` (it may have had one already)."""
        ids = self._lists.get(page, ())
        i = bisect.bisect_left(ids, object_id)
        if i < len(ids) and ids[i] == object_id:
            return
        self._mine(page).insert(i, object_id)

    def discard(self, object_id: bytes, page: int) -> None:
        """`object_id` has no op in `page` any more."""
        ids = self._lists.get(page, ())
        i = bisect.bisect_left(ids, object_id)
        if i < len(ids) and ids[i] == object_id:
            del self._mine(page)[i]

    def within(self, lo: int, hi: int) -> list[bytes] | None:
        """The sorted IDs of the objects with an op in the one page [lo, hi) lies in
        (a superset: the caller checks the ops), or None if it spans pages."""
        if hi <= lo or page_of(lo) != page_of(hi - 1):
            return None
        return self._lists.get(page_of(lo), [])
