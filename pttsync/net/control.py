"""The control socket: how the CLI talks to a running node.

A node serves `DIR/control.sock`, a Unix domain socket only its owner may
use (mode 0600, in a data directory of mode 0700).  The protocol is
newline-delimited JSON, one request and one response per line, each line
at most MAX_LINE bytes:

```
request:   {"op": "put", "key": "k", "value": 1, "topic": "ab12"}
response:  {"ok": true, "result": ...}
           {"ok": false, "error": "what went wrong", "kind": "usage" | "failure"}
```

"usage" means the caller's mistake (a bad request, an unknown topic, a
write the topic's governance does not allow); "failure" means the node's.

| op | fields | result |
|---|---|---|
| ping | | `{"peer_id"}` |
| status | | `node.status()` |
| peers | | `node.peers()` |
| put | key, value, topic? | `write_json` |
| get | key, topic? | `doc_json`, or null |
| delete | key, topic? | `write_json` |
| list | prefix?, after?, limit?, deleted?, topic? | `{"items": [doc_json], "more": bool}` |
| member | peer_id, role ("member", "master", "none"), topic? | `{"peer_id", "role", "status"}` |
| watch | topic? | `{"watching": true}`, then one `{"ok": true, "event": change_json}` per change |

`topic` is a topic ID or a unique prefix of one (default: the node's first
topic).  `list` answers with as many documents as fit in one line; `more`
is true when it stopped short for that reason (ask again with `after` =
the last key).  A connection may carry any number of requests, one at a
time; a `watch` keeps it until the client hangs up.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import sys
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import trio

from ..core.docstore import MAX_LIST
from ..core.governance import Role
from ..core.identity import parse_peer_id, peer_id_text
from ..core.timeutil import to_iso
from ..errors import (
    DataDirError,
    InvalidOplogError,
    LocalError,
    NodeNotRunningError,
    PttsyncError,
    UsageError,
)
from ..jsonutil import jsonable
from ..watch import WatchOverflowError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator
    from contextlib import AbstractContextManager

    from ..core.docstore import Change, Write
    from ..core.documents import DocState, Version
    from ..core.store import TopicInfo

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CONTROL_SOCKET = "control.sock"
MAX_LINE = 1024 * 1024
"""The longest request or response line, in bytes (the newline included)."""
MAX_CLIENTS = 64
"""Control connections served at once; more are told to try again."""
REQUEST_TIMEOUT = 25.0
"""Seconds a request may take, from its first byte to the last byte of its answer."""
IDLE_TIMEOUT = 300.0
"""Seconds a connection may sit idle between requests."""
SEND_TIMEOUT = 10.0
"""Seconds a watcher may take to take one event off the socket."""
MAX_TEXT = 1024
"""The longest key, prefix or `after` accepted, in characters (the node checks the rest)."""
MAX_SUN_PATH = 103 if sys.platform == "darwin" else 107
"""The longest AF_UNIX socket path, in bytes (sun_path less its terminating NUL)."""

_ROLES = {"member": Role.MEMBER, "master": Role.MASTER, "none": Role.NONE}
_FIELDS: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "status": frozenset(),
    "peers": frozenset(),
    "put": frozenset({"key", "value", "topic"}),
    "get": frozenset({"key", "topic"}),
    "delete": frozenset({"key", "topic"}),
    "list": frozenset({"prefix", "after", "limit", "deleted", "topic"}),
    "member": frozenset({"peer_id", "role", "topic"}),
    "watch": frozenset({"topic"}),
}
_ACCEPT_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class ControlledNode(Protocol):
    """What the control socket needs of a node (pttsync.net.node.Node has it)."""

    @property
    def peer_id(self) -> bytes: ...

    def select_topic(self, text: str | None) -> TopicInfo: ...

    async def put(self, key: str, value: Any, *, topic: bytes | None = None) -> Write: ...

    async def delete(self, key: str, *, topic: bytes | None = None) -> Write: ...

    def get(self, key: str, *, topic: bytes | None = None) -> DocState | None: ...

    def items(
        self,
        prefix: str = "",
        *,
        topic: bytes | None = None,
        after: str | None = None,
        limit: int = 100,
        deleted: bool = False,
    ) -> list[DocState]: ...

    async def set_role(self, peer_id: bytes, role: Role, *, topic: bytes | None = None) -> Any: ...

    def status(self) -> dict[str, Any]: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def watch(
        self, *, topic: bytes | None = None, buffer: int = ...
    ) -> AbstractContextManager[AsyncIterator[Change]]: ...


# ---------------------------------------------------------------------------
# JSON forms.


def version_json(v: Version) -> dict[str, Any]:
    return {
        "oplog_id": v.oplog_id.hex(),
        "creator": peer_id_text(v.creator),
        "create_time": to_iso(v.create_time),
        "create_time_ns": v.create_time,
        "prev_id": v.prev_id.hex() if v.prev_id is not None else None,
        "deleted": v.deleted,
        "value": jsonable(v.value),
        "pending": v.pending,
        "resolves": [r.hex() for r in v.resolves],
    }


def doc_json(state: DocState) -> dict[str, Any]:
    """A document as JSON: its shown value and version, its heads, conflicts and pending writes."""
    return {
        "key": state.key,
        "exists": state.exists,
        "value": jsonable(state.value),
        "pending": state.pending,
        "merged": state.merged,
        "in_conflict": state.in_conflict,
        "version": version_json(state.version),
        "heads": [v.oplog_id.hex() for v in state.heads],
        "conflicts": [version_json(v) for v in state.conflicts],
        "pending_versions": [version_json(v) for v in state.pending_versions],
    }


def change_json(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind.value,
        "key": change.key,
        "oplog_id": change.oplog_id.hex(),
        "local": change.local,
        "reason": change.reason,
        "state": doc_json(change.state) if change.state is not None else None,
    }


def write_json(write: Write) -> dict[str, Any]:
    return {"key": write.key, "oplog_id": write.oplog_id.hex(), "status": write.status.value}


def encode_line(message: object) -> bytes:
    """One protocol line.  Raises ValueError or TypeError if `message` is not plain JSON."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode_json(data: bytes | str) -> Any:
    """Strict JSON: no NaN or Infinity, no duplicate keys, no absurd nesting.

    Raises:
        UsageError: the text is not such JSON (the message says why).
    """

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("an object has a duplicate key")
        return out

    try:
        return json.loads(data, parse_constant=constant, object_pairs_hook=no_duplicates)
    except RecursionError:
        raise UsageError("not JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"not JSON: {exc}") from None


# ---------------------------------------------------------------------------
# Lines over a stream.


class LineTooLongError(Exception):
    """The peer sent more than MAX_LINE bytes without a newline."""


class LineReader:
    """Newline-terminated lines from a trio stream, each at most `max_line` bytes."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int = MAX_LINE) -> None:
        self.stream = stream
        self.max_line = max_line
        self._buffer = bytearray()
        self._searched = 0
        self._eof = False

    async def line(self) -> bytes | None:
        """The next line without its newline; None at the end of the stream.

        Data after the last newline counts as a final line.

        Raises:
            LineTooLongError: over `max_line` bytes came without a newline.
        """
        while True:
            end = self._buffer.find(b"\n", self._searched)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._searched = 0
                return line
            self._searched = len(self._buffer)
            if self._searched >= self.max_line:
                raise LineTooLongError
            if self._eof:
                if not self._buffer:
                    return None
                line = bytes(self._buffer)
                self._buffer.clear()
                self._searched = 0
                return line
            data = await self.stream.receive_some(65536)
            if not data:
                self._eof = True
            self._buffer += data


# ---------------------------------------------------------------------------
# The server.


def socket_path(data_dir: Path | str) -> Path:
    """`DIR/control.sock`, checked to fit in an AF_UNIX address.

    Raises:
        UsageError: the path is too long for a Unix socket.
    """
    return _check_length(Path(data_dir) / CONTROL_SOCKET)


def _check_length(path: Path) -> Path:
    size = len(os.fsencode(path))
    if size > MAX_SUN_PATH:
        raise UsageError(
            f"the control socket path {path} is {size} bytes, over the {MAX_SUN_PATH}"
            " a Unix socket allows: use a data directory with a shorter path"
        )
    return path


async def serve_control(
    node: ControlledNode,
    path: Path,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control protocol on the Unix socket `path` until cancelled.

    The socket file is made with mode 0600 and removed on exit.  A socket
    file nobody answers on (left by a node that crashed) is replaced.

    Raises:
        UsageError: `path` is too long for a Unix socket, a node already
            answers on it, or something that is not a socket is in the way.
        PttsyncError: the socket cannot be made with mode 0600.
    """
    path = _check_length(Path(path))
    await _clear_stale(path)
    sock = _bind(path)
    inode = os.stat(path).st_ino
    try:
        listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
        server = _Server(node)
        async with listener, trio.open_nursery() as nursery:
            log.info("control socket listening on %s", path)
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                        raise
                    log.error("control socket: cannot accept a connection: %s", exc.strerror)
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(server.serve_client, stream)
    finally:
        sock.close()
        try:
            if os.stat(path).st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass
        log.info("control socket %s closed", path)


async def _clear_stale(path: Path) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise UsageError(f"{path} exists and is not a socket: move it out of the way")
    # Something listening (even too busy to accept at once) is a live node.
    with trio.move_on_after(5):
        try:
            stream = await trio.open_unix_socket(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.info("removing the stale control socket %s", path)
            with suppress(FileNotFoundError):
                os.unlink(path)
            return
        await stream.aclose()
    raise UsageError(f"a node is already running on {path.parent}")


def _bind(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # the socket file is 0600 from the moment it exists
    try:
        sock.bind(str(path))
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode != 0o600:
            raise PttsyncError(
                f"the control socket {path} has mode {mode:o}, not 600: its directory"
                " or file system does not honour the umask"
            )
        sock.listen(MAX_CLIENTS)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        path.unlink(missing_ok=True)
        raise
    return sock


class _Server:
    def __init__(self, node: ControlledNode) -> None:
        self.node = node
        self.clients = 0

    async def serve_client(self, stream: trio.SocketStream) -> None:
        if self.clients >= MAX_CLIENTS:
            log.warning("control socket: refusing a client: %d already connected", self.clients)
            with trio.move_on_after(1):
                await _send_quietly(
                    stream,
                    _error(
                        f"the node serves {MAX_CLIENTS} control clients at most: try again",
                        kind="failure",
                    ),
                )
            await trio.aclose_forcefully(stream)
            return
        self.clients += 1
        try:
            async with stream:
                reader = LineReader(stream)
                while await self._one_request(stream, reader):
                    pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            log.debug("control client went away")
        except Exception:
            log.exception("control socket: a client's connection failed")
        finally:
            self.clients -= 1

    async def _one_request(self, stream: trio.SocketStream, reader: LineReader) -> bool:
        """Read and answer one request; False when the connection is done."""
        line: bytes | None = None
        too_long = False
        with trio.move_on_after(IDLE_TIMEOUT):
            try:
                line = await reader.line()
            except LineTooLongError:
                too_long = True
        if too_long:
            with trio.move_on_after(SEND_TIMEOUT):
                await _send_quietly(stream, _error(f"a request line is at most {MAX_LINE} bytes"))
            return False
        if line is None:  # the client hung up, or sat idle too long
            return False
        keep = True
        with trio.move_on_after(REQUEST_TIMEOUT) as scope:
            try:
                request = _parse_request(line)
                log.debug("control request %s", request["op"])
                if request["op"] == "watch":
                    keep = False
                    await self._watch(stream, reader, request, scope)
                    return False
                response = self._encode_result(request["op"], await self._dispatch(request))
            except Exception as exc:
                response = _error_for(exc)
            await stream.send_all(response)
            return keep
        log.warning("control socket: a request took over %g s", REQUEST_TIMEOUT)
        with trio.move_on_after(SEND_TIMEOUT):
            await _send_quietly(
                stream,
                _error(f"the node did not answer within {REQUEST_TIMEOUT:g} s", kind="failure"),
            )
        return False

    def _topic(self, request: dict[str, Any]) -> bytes | None:
        text = _optional(request, "topic", str)
        if text is None:
            return None
        if not text or len(text) > 64:
            raise UsageError("'topic' is a topic ID or a prefix of one, 1..64 hex digits")
        return self.node.select_topic(text).topic_id

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        node, op = self.node, request["op"]
        if op == "ping":
            return {"peer_id": peer_id_text(node.peer_id)}
        if op == "status":
            return node.status()
        if op == "peers":
            return node.peers()
        if op == "put":
            if "value" not in request:
                raise UsageError("put needs a 'value'")
            write = await node.put(_key(request), request["value"], topic=self._topic(request))
            return write_json(write)
        if op == "get":
            state = node.get(_key(request), topic=self._topic(request))
            return doc_json(state) if state is not None else None
        if op == "delete":
            return write_json(await node.delete(_key(request), topic=self._topic(request)))
        if op == "list":
            limit = _optional(request, "limit", int)
            if limit is not None and not 1 <= limit <= MAX_LIST:
                raise UsageError(f"'limit' is 1..{MAX_LIST}")
            states = node.items(
                _text(request, "prefix", required=False) or "",
                topic=self._topic(request),
                after=_text(request, "after", required=False) or None,
                limit=100 if limit is None else limit,
                deleted=bool(_optional(request, "deleted", bool)),
            )
            return [doc_json(s) for s in states]
        if op == "member":
            peer = _text(request, "peer_id", required=True)
            if len(peer) > 64:
                raise UsageError("'peer_id' is a 52-character peer ID")
            role_name = _text(request, "role", required=True)
            if role_name not in _ROLES:
                raise UsageError("'role' is 'member', 'master' or 'none'")
            peer_id = parse_peer_id(peer)
            status = await node.set_role(peer_id, _ROLES[role_name], topic=self._topic(request))
            name = getattr(status, "name", None)  # an OplogStatus
            return {
                "peer_id": peer_id_text(peer_id),
                "role": role_name,
                "status": name.lower() if isinstance(name, str) else str(status),
            }
        raise AssertionError(op)  # _parse_request lets known ops only through

    def _encode_result(self, op: str, result: Any) -> bytes:
        if op == "list":
            return _list_line(result)
        line = encode_line({"ok": True, "result": result})
        if len(line) > MAX_LINE:
            return _error(f"the answer is over {MAX_LINE} bytes", kind="failure")
        return line

    async def _watch(
        self,
        stream: trio.SocketStream,
        reader: LineReader,
        request: dict[str, Any],
        scope: trio.CancelScope,
    ) -> None:
        """Stream the topic's changes until the client hangs up or falls behind."""
        with self.node.watch(topic=self._topic(request)) as changes:
            await stream.send_all(encode_line({"ok": True, "result": {"watching": True}}))
            scope.deadline = float("inf")
            log.debug("control client watching")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_until_hangup, reader, nursery.cancel_scope)
                await self._pump(stream, changes)
                nursery.cancel_scope.cancel()

    async def _pump(self, stream: trio.SocketStream, changes: AsyncIterator[Change]) -> None:
        try:
            async for change in changes:
                line = encode_line({"ok": True, "event": change_json(change)})
                if len(line) > MAX_LINE:
                    line = encode_line(
                        {
                            "ok": True,
                            "event": {**change_json(change), "state": None, "truncated": True},
                        }
                    )
                with trio.fail_after(SEND_TIMEOUT):
                    await stream.send_all(line)
        except WatchOverflowError as exc:
            with trio.move_on_after(SEND_TIMEOUT):
                await _send_quietly(stream, _error(str(exc)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            log.debug("a watching control client went away or fell behind")
        except Exception as exc:
            with trio.move_on_after(SEND_TIMEOUT):
                await _send_quietly(stream, _error_for(exc))


async def _until_hangup(reader: LineReader, scope: trio.CancelScope) -> None:
    """Wait for the client to close its side (anything it sends is ignored)."""
    try:
        while await reader.line() is not None:
            pass
    except (LineTooLongError, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    scope.cancel()


async def _send_quietly(stream: trio.abc.SendStream, data: bytes) -> None:
    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await stream.send_all(data)


def _list_line(docs: list[dict[str, Any]]) -> bytes:
    """As many documents as fit in one line, with `more` if some did not."""
    room = MAX_LINE - 64
    items: list[bytes] = []
    for doc in docs:
        item = encode_line(doc)[:-1]
        room -= len(item) + 1
        if room < 0:
            break
        items.append(item)
    more = len(items) < len(docs)
    if not items and more:
        return _error(
            f"document {docs[0]['key']!r} is over {MAX_LINE} bytes as JSON: read it with get",
            kind="failure",
        )
    head = b'{"ok":true,"result":{"more":' + (b"true" if more else b"false") + b',"items":['
    return head + b",".join(items) + b"]}}\n"


def _error(message: str, *, kind: str = "usage") -> bytes:
    return encode_line({"ok": False, "error": message, "kind": kind})


def _error_for(exc: Exception) -> bytes:
    # The caller's mistakes: a bad request, a bad argument, an oplog the
    # topic's governance refuses (NotAuthorizedError) or that is too big.
    if isinstance(exc, LocalError | InvalidOplogError):
        return _error(str(exc))
    if isinstance(exc, PttsyncError):
        log.warning("control request failed: %s", exc)
        return _error(str(exc), kind="failure")
    log.exception("control request failed")
    return _error(f"the node failed: {type(exc).__name__}: {exc}", kind="failure")


def _parse_request(line: bytes) -> dict[str, Any]:
    request = decode_json(line)
    if not isinstance(request, dict):
        raise UsageError('a request is a JSON object: {"op": ..., ...}')
    op = request.get("op")
    if not isinstance(op, str):
        raise UsageError("a request has an 'op' (text)")
    if op not in _FIELDS:
        raise UsageError(f"unknown op {op[:40]!r}: one of {', '.join(_FIELDS)}")
    unknown = set(request) - _FIELDS[op] - {"op"}
    if unknown:
        names = ", ".join(repr(n[:40]) for n in sorted(unknown))
        raise UsageError(f"op {op!r} takes no field {names}")
    return request


def _optional(request: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = request.get(name)
    if value is None:
        return None
    # bool is an int to Python, not to this protocol.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{name!r} is {_TYPE_NAMES.get(kind, kind.__name__)}")
    return value


_TYPE_NAMES = {str: "text", int: "a whole number", bool: "true or false"}


def _text(request: dict[str, Any], name: str, *, required: bool) -> str:
    value = _optional(request, name, str)
    if value is None:
        if required:
            raise UsageError(f"the request needs {name!r} (text)")
        return ""
    if len(value) > MAX_TEXT:
        raise UsageError(f"{name!r} is at most {MAX_TEXT} characters")
    return value


def _key(request: dict[str, Any]) -> str:
    return _text(request, "key", required=True)


# ---------------------------------------------------------------------------
# The client.


def _not_running(data_dir: Path) -> NodeNotRunningError:
    return NodeNotRunningError(
        f"no node is running on {data_dir}"
        f" (start one with: pttsync run --data {data_dir} --listen HOST:PORT)"
    )


def _check_dir(data_dir: Path) -> Path:
    if not os.path.isdir(data_dir):
        raise DataDirError(
            f"no pttsync data directory at {data_dir} (run: pttsync init --data {data_dir})"
        )
    return socket_path(data_dir)


async def _connect(data_dir: Path) -> trio.SocketStream:
    path = _check_dir(data_dir)
    try:
        return await trio.open_unix_socket(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        raise _not_running(data_dir) from None
    except PermissionError:
        raise UsageError(
            f"cannot connect to {path}: permission denied (does another user run that node?)"
        ) from None
    except OSError as exc:
        raise PttsyncError(f"cannot connect to {path}: {exc.strerror or exc}") from None


def _answer(line: bytes | None, data_dir: Path) -> dict[str, Any]:
    """A response line, checked; raises the error it carries."""
    if line is None:
        raise PttsyncError(f"the node on {data_dir} closed the connection without answering")
    try:
        response = decode_json(line)
    except UsageError as exc:
        raise PttsyncError(f"the node on {data_dir} sent a malformed answer: {exc}") from None
    if not isinstance(response, dict) or not isinstance(response.get("ok"), bool):
        raise PttsyncError(f"the node on {data_dir} sent a malformed answer")
    if not response["ok"]:
        error = str(response.get("error") or "unknown error")
        if response.get("kind") == "usage":
            raise UsageError(error)
        raise PttsyncError(error)
    return response


async def _request(
    data_dir: Path, request: dict[str, Any], seconds: float
) -> tuple[trio.SocketStream, LineReader, dict[str, Any]]:
    """Connect, send `request` and read its first answer, within `seconds`."""
    data = encode_line(request)
    if len(data) > MAX_LINE:
        raise UsageError(f"the request is over {MAX_LINE} bytes as JSON")
    with trio.move_on_after(seconds) as scope:
        stream = await _connect(data_dir)
        try:
            reader = LineReader(stream)
            await stream.send_all(data)
            try:
                line = await reader.line()
            except LineTooLongError:
                raise PttsyncError(
                    f"the node on {data_dir} answered with a line over {MAX_LINE} bytes"
                ) from None
            return stream, reader, _answer(line, data_dir)
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(stream)
            raise PttsyncError(f"the node on {data_dir} closed the connection") from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    assert scope.cancelled_caught
    raise PttsyncError(f"the node on {data_dir} did not answer within {seconds:g} s")


async def control_call(
    data_dir: Path | str,
    request: dict[str, Any],
    *,
    timeout: float = 30,  # noqa: ASYNC109 - one deadline for connect, send and answer
) -> Any:
    """Send one request to the node on `data_dir` and return its result.

    Raises:
        NodeNotRunningError: no node answers on the data directory's socket.
        DataDirError: `data_dir` is not a directory.
        UsageError: the request was refused as the caller's mistake.
        PttsyncError: the node failed, broke the protocol or did not answer in time.
    """
    stream, _, response = await _request(Path(data_dir), request, timeout)
    await stream.aclose()
    return response.get("result")


async def control_stream(
    data_dir: Path | str,
    request: dict[str, Any],
    *,
    timeout: float = 30,  # noqa: ASYNC109 - the deadline for the node's first answer
) -> AsyncGenerator[Any, None]:
    """Send a streaming request (watch) and yield its events until the node stops.

    Use it with `contextlib.aclosing`, so the connection closes when you stop.
    Raises what `control_call` does, at the start or (for errors the node
    sends later, such as a watcher falling behind) in the middle.
    """
    path = Path(data_dir)
    stream, reader, _ = await _request(path, request, timeout)
    async with stream:
        while True:
            try:
                line = await reader.line()
            except LineTooLongError:
                raise PttsyncError(
                    f"the node on {path} sent an event over {MAX_LINE} bytes"
                ) from None
            if line is None:
                return
            yield _answer(line, path).get("event")
