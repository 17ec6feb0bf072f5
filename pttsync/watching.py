"""Watching a topic's documents from trio: an async iterator of changes.

    with pttsync.watch(docs) as changes:
        async for change in changes:
            print(change.kind.value, change.key)

Like tega's NOTIFY: every put, delete, conflict, confirmed, failed and
rolled_back change is delivered, in commit order, to each watcher.  The
buffer is bounded (`buffer`, 1,000 changes by default).  The node never
waits for a slow watcher: if one falls that far behind, its iterator
raises `WatchOverflowError` after the changes it did buffer, and the
application re-reads what it needs (`docs.items()`) and watches again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

import trio

from .errors import LocalError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .core.documents.docstore import Change, DocumentStore

DEFAULT_BUFFER = 1000
MAX_BUFFER = 1_000_000


class WatchOverflowError(LocalError):
    """The watcher fell more than its buffer behind; some changes were not delivered."""


class Watch:
    """An async iterator of `Change`s; made by `watch`."""

    def __init__(self, buffer: int) -> None:
        self._send, self._receive = trio.open_memory_channel["Change"](buffer)
        self.overflowed = False
        self.delivered = 0

    def _offer(self, change: Change) -> None:
        if self.overflowed:
            return
        try:
            self._send.send_nowait(change)
        except trio.WouldBlock:
            self.overflowed = True
            self._send.close()
        except trio.ClosedResourceError:
            pass

    def close(self) -> None:
        self._send.close()

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Change:
        try:
            change = await self._receive.receive()
        except trio.EndOfChannel:
            if self.overflowed:
                raise WatchOverflowError(
                    "this watcher fell too far behind and missed changes: re-read and watch again"
                ) from None
            raise StopAsyncIteration from None
        self.delivered += 1
        return change


@contextmanager
def watch(docs: DocumentStore, *, buffer: int = DEFAULT_BUFFER) -> Iterator[Watch]:
    """Subscribe to `docs`' changes for the duration of the block.

    Iteration ends (StopAsyncIteration) once the block is left and the
    buffered changes are consumed.

    Raises:
        UsageError: `buffer` is not in [1, MAX_BUFFER].
    """
    if type(buffer) is not int or not 1 <= buffer <= MAX_BUFFER:
        raise UsageError(f"a watch buffer holds 1..{MAX_BUFFER} changes")
    w = Watch(buffer)
    unsubscribe = docs.subscribe(w._offer)
    try:
        yield w
    finally:
        unsubscribe()
        w.close()
