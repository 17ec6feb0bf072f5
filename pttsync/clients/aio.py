"""`pttsync.AsyncClient`: a running node's control socket, from asyncio.

    async with pttsync.AsyncClient("/srv/peer") as client:
        await client.put("todo/1", {"title": "buy milk"})
        async with client.watch() as changes:
            async for change in changes:
                ...

The calls of the blocking `pttsync.Client` (blocking.py says more), as
coroutines: each opens its own connection (asyncio.open_unix_connection)
and is bounded by `timeout` seconds.  Cancelling a call closes its
connection; cancelling a wait for a change leaves the watch as it was.
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..net.controlcodec import (
    Answers,
    ClosedByNodeError,
    ListPager,
    broken,
    check_data_dir,
    connect_error,
    event_of,
    make_request,
    no_answer,
    request_line,
)
from ..net.controlwire import RECEIVE_SIZE
from .blocking import DEFAULT_TIMEOUT, check_timeout

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import AsyncIterator
    from types import TracebackType


class _Connection:
    """One request's connection, and the answers read from it."""

    def __init__(
        self, data_dir: Path, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.data_dir = data_dir
        self.reader = reader
        self.writer = writer
        self.answers = Answers(data_dir)

    async def answer(self) -> dict[str, Any]:
        while (answer := self.answers.next()) is None:
            try:
                data = await self.reader.read(RECEIVE_SIZE)
            except (BrokenPipeError, ConnectionResetError):
                raise broken(self.data_dir) from None
            self.answers.feed(data)
        return answer

    async def aclose(self) -> None:
        self.writer.close()
        with suppress(OSError):
            await self.writer.wait_closed()


async def _exchange(
    data_dir: Path,
    request: dict[str, Any],
    timeout: float,  # noqa: ASYNC109 - one deadline for connect, send and answer
) -> tuple[_Connection, dict[str, Any]]:
    """A connection that sent `request`, and the node's first answer, within `timeout`."""
    data = request_line(request)
    path = check_data_dir(data_dir)
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(str(path))
            except OSError as exc:
                raise connect_error(exc, data_dir) from None
            conn = _Connection(data_dir, reader, writer)
            try:
                writer.write(data)
                await writer.drain()
                return conn, await conn.answer()
            except (BrokenPipeError, ConnectionResetError):
                writer.close()
                raise broken(data_dir) from None
            except BaseException:
                writer.close()
                raise
    except TimeoutError:
        raise no_answer(data_dir, timeout) from None


class AsyncClient:
    """An asyncio client of the node running on `data_dir`: `pttsync.Client`'s calls, awaited.

    `async with` it to end, at the block's end, the watches it opened.
    Errors are those of `pttsync.Client`.
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = check_timeout(timeout)
        self._watches: weakref.WeakSet[AsyncClientWatch] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the watches this client opened that are still open (it holds nothing else)."""
        for w in list(self._watches):
            await w.aclose()

    async def call(self, op: str, **fields: Any) -> Any:
        """Any request of the control protocol (docs/pip-11/control.md): its result."""
        conn, answer = await _exchange(self.data_dir, make_request(op, **fields), self.timeout)
        await conn.aclose()
        return answer.get("result")

    # -- the node (as Client's) ------------------------------------------------------------

    async def hello(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("hello")
        return result

    async def status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("status")
        return result

    async def peers(self) -> builtins.list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.call("peers")
        return result

    async def members(self, *, topic: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("members", topic=topic)
        return result

    async def set_role(
        self, peer_id: str, role: str, *, topic: str | None = None
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("member", peer_id=peer_id, role=role, topic=topic)
        return result

    # -- documents (as Client's) -------------------------------------------------------------

    async def put(self, key: str, value: Any, *, topic: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("put", key=key, value=value, topic=topic)
        return result

    async def get(self, key: str, *, topic: str | None = None) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.call("get", key=key, topic=topic)
        return result

    async def delete(self, key: str, *, topic: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.call("delete", key=key, topic=topic)
        return result

    async def items(
        self,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        deleted: bool = False,
        topic: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The documents whose keys start with `prefix`, in key order, fetched page by page."""
        pager = ListPager(prefix, after=after, limit=limit, deleted=deleted, topic=topic)
        while pager.request is not None:
            for doc in pager.take(await self.call(**pager.request)):
                yield doc

    async def list(
        self,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        deleted: bool = False,
        topic: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """`items(...)` as a list: at most `limit` documents (None: all of them)."""
        docs = self.items(prefix, after=after, limit=limit, deleted=deleted, topic=topic)
        return [doc async for doc in docs]

    def watch(self, *, topic: str | None = None) -> AsyncClientWatch:
        """The topic's changes from when the watch starts (its `async with`, or first wait)."""
        watch = AsyncClientWatch(self.data_dir, make_request("watch", topic=topic), self.timeout)
        self._watches.add(watch)
        return watch


class AsyncClientWatch:
    """A topic's changes, one dict per change, in commit order (as `ClientWatch`'s).

        async with client.watch() as changes:
            async for change in changes:       # until the node stops or aclose()
                ...
            async with asyncio.timeout(5):     # a deadline, as for any await
                change = await changes.wait()

    `async for change in client.watch()` works too: the watch then ends
    with the loop.
    """

    def __init__(self, data_dir: Path, request: dict[str, Any], timeout: float) -> None:
        self._data_dir = data_dir
        self._request = request
        self._timeout = timeout
        self._conn: _Connection | None = None
        self._closed = False
        self._managed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncClientWatch:
        self._managed = True
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Have the node take the watch, within the client's timeout (once)."""
        if self._conn is None and not self._closed:
            self._conn, _ = await _exchange(self._data_dir, self._request, self._timeout)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[dict[str, Any]]:
        try:
            while (change := await self.wait()) is not None:
                yield change
        finally:
            if not self._managed:
                await self.aclose()

    async def wait(self) -> dict[str, Any] | None:
        """The next change; None once the watch is over (closed, or the node stopped).

        Raises what `ClientWatch.wait` does (the watch is then over), or
        CancelledError (the watch goes on).
        """
        await self.start()
        if self._conn is None:
            return None
        try:
            return event_of(await self._conn.answer(), self._data_dir)
        except ClosedByNodeError:
            await self.aclose()
            return None
        except asyncio.CancelledError:
            raise
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self) -> None:
        """End the watch (idempotent)."""
        if self._closed:
            return
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()
