"""Change notification: a node's "something changed" event, and waiting on nodes.

A change is a commit on one of the node's topics, or a connection coming or
going.  `Changes` is the node's event; `CommitWatcher` is the replica
observer that fires it (and has the door re-check its links after a
governance change); `wait_until` waits on several nodes at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..core.lifecycle.replica import Commit

__all__ = ["Changes", "CommitWatcher", "wait_until"]


class Changes:
    """One event per change: `notify()` fires it, `next()` waits for the next one.

    The event is made only when somebody waits: a node notifies on every commit
    and every connection, and mostly nobody is waiting."""

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    def notify(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def next(self) -> None:
        if self._event is None:
            self._event = trio.Event()
        await self._event.wait()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self.next()


class CommitWatcher:
    """A replica observer: after each commit, `notify()`; after governance, `recheck()`."""

    def __init__(self, notify: Callable[[], None], recheck: Callable[[], None]) -> None:
        self._notify = notify
        self._recheck = recheck

    def before_commit(self, commit: Commit) -> None:
        pass

    def after_commit(self, commit: Commit) -> None:
        if commit.governance:
            self._recheck()
        self._notify()


class _HasChanges(Protocol):
    async def next_change(self) -> None: ...


async def wait_until(nodes: Sequence[_HasChanges], predicate: Callable[[], bool]) -> None:
    """Return once `predicate()` holds, re-checking after every change on any of `nodes`.

    A change is a commit or a connection coming or going.  Put a deadline
    around it (`trio.fail_after`): the predicate may never hold.
    """
    while not predicate():
        async with trio.open_nursery() as nursery:

            async def one(node: _HasChanges) -> None:
                await node.next_change()
                nursery.cancel_scope.cancel()

            for node in nodes:
                nursery.start_soon(one, node)
