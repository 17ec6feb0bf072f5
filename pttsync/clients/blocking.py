"""`pttsync.Client`: a running node's control socket, blocking, from any thread.

    client = pttsync.Client("/srv/peer")       # the node's data directory
    client.put("todo/1", {"title": "buy milk"})
    client.get("todo/1")["value"]              # {'title': 'buy milk'}
    with client.watch() as changes:
        for change in changes: ...

Each call opens its own connection to `DIR/control.sock`, sends one request
and reads its answer within `timeout` seconds, then closes the connection.
Calls share nothing, so any number of threads may call at once (the node
serves 64 connections at a time and tells the next to try again), and a
node restarted between two calls does not matter.  The answers are the
JSON forms of docs/pip-11/control.md, as dicts.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import UsageError
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

if TYPE_CHECKING:
    import builtins
    import os
    from collections.abc import Callable, Iterator
    from types import TracebackType

_T = TypeVar("_T")

DEFAULT_TIMEOUT = 30.0
"""Seconds a call may take, from connecting to the last byte of its answer."""


def check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise UsageError(f"timeout is a number of seconds above 0, not {timeout!r}")
    return float(timeout)


class _Connection:
    """One request's connection: its socket, the answers read from it, a deadline."""

    def __init__(self, data_dir: Path, timeout: float) -> None:
        self.data_dir = data_dir
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.answers = Answers(data_dir)
        path = check_data_dir(data_dir)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._io(self.sock.connect, str(path))
        except OSError as exc:
            self.sock.close()
            raise connect_error(exc, data_dir) from None
        except BaseException:
            self.sock.close()
            raise

    def _io(self, operation: Callable[..., _T], *args: Any) -> _T:
        """`operation(*args)` on the socket, within the deadline."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise no_answer(self.data_dir, self.timeout)
        self.sock.settimeout(left)
        try:
            return operation(*args)
        except TimeoutError:
            raise no_answer(self.data_dir, self.timeout) from None
        except (BrokenPipeError, ConnectionResetError):
            raise broken(self.data_dir) from None

    def answer(self) -> dict[str, Any]:
        while (answer := self.answers.next()) is None:
            self.answers.feed(self._io(self.sock.recv, RECEIVE_SIZE))
        return answer


def _exchange(
    data_dir: Path, request: dict[str, Any], timeout: float
) -> tuple[_Connection, dict[str, Any]]:
    """A connection that sent `request`, and the node's first answer."""
    data = request_line(request)
    conn = _Connection(data_dir, timeout)
    try:
        conn._io(conn.sock.sendall, data)
        return conn, conn.answer()
    except BaseException:
        conn.sock.close()
        raise


class Client:
    """A blocking client of the node running on `data_dir` (see the module text).

    Errors: `NodeNotRunningError` when no node answers, `DataDirError` when
    `data_dir` is not a directory, `UsageError` for a request refused as the
    caller's mistake (a bad key, an unknown topic, a write the topic's
    governance forbids), `PttsyncError` for the node's failures and for a
    node that does not answer within `timeout` seconds.  `topic` is a topic
    ID or a unique prefix of one (default: the node's first topic).
    """

    def __init__(
        self, data_dir: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.data_dir = Path(data_dir)
        self.timeout = check_timeout(timeout)
        self._watches: weakref.WeakSet[ClientWatch] = weakref.WeakSet()
        self._watches_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.data_dir)!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End the watches this client opened that are still open (it holds nothing else)."""
        with self._watches_lock:
            watches = list(self._watches)
        for w in watches:
            w.close()

    def call(self, op: str, **fields: Any) -> Any:
        """Any request of the control protocol (docs/pip-11/control.md): its result.

        Fields that are None are left out.  `client.call("status")` is `client.status()`.
        """
        conn, answer = _exchange(self.data_dir, make_request(op, **fields), self.timeout)
        conn.sock.close()
        return answer.get("result")

    # -- the node ------------------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        """`{"api", "peer_id", "ops"}`: the control API version the node speaks, and its ops."""
        result: dict[str, Any] = self.call("hello")
        return result

    def status(self) -> dict[str, Any]:
        """The node's state (`pttsync status --json`)."""
        result: dict[str, Any] = self.call("status")
        return result

    def peers(self) -> list[dict[str, Any]]:
        """The connected peers."""
        result: list[dict[str, Any]] = self.call("peers")
        return result

    def members(self, *, topic: str | None = None) -> dict[str, Any]:
        """`{"topic", "members": [{"peer_id", "role"}], "masters"}`: who may write now."""
        result: dict[str, Any] = self.call("members", topic=topic)
        return result

    def set_role(self, peer_id: str, role: str, *, topic: str | None = None) -> dict[str, Any]:
        """Make `peer_id` a "member", a "master" or "none" (the node's peer must be a master)."""
        result: dict[str, Any] = self.call("member", peer_id=peer_id, role=role, topic=topic)
        return result

    # -- documents -----------------------------------------------------------------------

    def put(self, key: str, value: Any, *, topic: str | None = None) -> dict[str, Any]:
        """Write a document: `{"key", "oplog_id", "status"}`, durable on return."""
        result: dict[str, Any] = self.call("put", key=key, value=value, topic=topic)
        return result

    def get(self, key: str, *, topic: str | None = None) -> dict[str, Any] | None:
        """The document's state (its "value", "exists", "pending", conflicts...); None if never
        written."""
        result: dict[str, Any] | None = self.call("get", key=key, topic=topic)
        return result

    def delete(self, key: str, *, topic: str | None = None) -> dict[str, Any]:
        """Delete a document: `{"key", "oplog_id", "status"}`."""
        result: dict[str, Any] = self.call("delete", key=key, topic=topic)
        return result

    def items(
        self,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        deleted: bool = False,
        topic: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The documents whose keys start with `prefix`, in key order, fetched page by page.

        `limit` caps how many (None: all); `after` starts after that key;
        `deleted` includes deleted documents.
        """
        pager = ListPager(prefix, after=after, limit=limit, deleted=deleted, topic=topic)
        while pager.request is not None:
            yield from pager.take(self.call(**pager.request))

    def list(
        self,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        deleted: bool = False,
        topic: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """`items(...)` as a list: at most `limit` documents (None: all of them)."""
        return [*self.items(prefix, after=after, limit=limit, deleted=deleted, topic=topic)]

    def watch(self, *, topic: str | None = None) -> ClientWatch:
        """The topic's changes from now on, as they happen (see `ClientWatch`).

        Raises what a call does if the node does not take the watch.
        """
        conn, _ = _exchange(self.data_dir, make_request("watch", topic=topic), self.timeout)
        watch = ClientWatch(conn)
        with self._watches_lock:
            self._watches.add(watch)
        return watch


class ClientWatch:
    """A topic's changes, one dict per change (`kind`, `key`, `state`...), in commit order.

        with client.watch() as changes:
            for change in changes:             # blocks until the next change
                ...
            change = changes.wait(timeout=5)   # or one at a time, with a deadline

    One thread reads it; any thread may `close()` it, which ends the
    reading thread's loop.  It ends too when the node stops.  A loop over a
    watch that is not in a `with` block closes it when the loop ends.  A
    watcher that falls over 1,000 changes behind gets a `UsageError` (read
    what you need again, and watch again).
    """

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()
        self._closed = False
        self._waiting = False
        self._managed = False
        self._close_socket = weakref.finalize(self, conn.sock.close)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> ClientWatch:
        self._managed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        try:
            while (change := self.wait()) is not None:
                yield change
        finally:
            if not self._managed:
                self.close()

    def wait(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next change; None once the watch is over (closed, or the node stopped).

        Raises:
            TimeoutError: no change came within `timeout` seconds (the watch goes on).
            UsageError: the watcher fell too far behind (the watch is over).
            PttsyncError: the node failed or broke the protocol (the watch is over).
        """
        deadline = None if timeout is None else time.monotonic() + check_timeout(timeout)
        with self._lock:
            if self._closed:
                return None
            if self._waiting:
                raise UsageError("another thread is reading this watch: one reader at a time")
            self._waiting = True
        conn = self._conn
        try:
            while (answer := conn.answers.next()) is None:
                left = None if deadline is None else max(deadline - time.monotonic(), 1e-6)
                conn.sock.settimeout(left)
                conn.answers.feed(conn.sock.recv(RECEIVE_SIZE))
            return event_of(answer, conn.data_dir)
        except TimeoutError:
            raise TimeoutError(f"no change within {timeout:g} s") from None
        except ClosedByNodeError:
            self.close()
            return None
        except OSError:
            if self._closed:
                return None
            self.close()
            raise broken(conn.data_dir) from None
        except BaseException:
            self.close()
            raise
        finally:
            with self._lock:
                self._waiting = False
                if self._closed:
                    self._close_socket()

    def close(self) -> None:
        """End the watch (idempotent, from any thread): a thread blocked in it returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiting = self._waiting
        # Wake a reader blocked in recv; the socket is closed by whoever is last.
        with suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        if not waiting:
            self._close_socket()
