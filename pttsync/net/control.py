"""The control socket: how the CLI (and pttsync.Client) talks to a running node.

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
| hello | | `{"api", "peer_id", "ops"}`: the API version and the ops this node serves |
| status | | `node.status()` |
| peers | | `node.peers()`: the connected peers |
| peer_view | | `node.peer_view()`: `{"connected", "known", "refused"}` (peerview.py) |
| put | key, value, topic? | `write_json` |
| get | key, topic? | `doc_json`, or null |
| delete | key, topic? | `write_json` |
| list | prefix?, after?, limit?, deleted?, topic? | `{"items": [doc_json], "more": bool}` |
| history | key, limit?, topic? | `history_json`: `{"key", "versions", "omitted", ...}`, or null |
| member | peer_id, role ("member", "master", "none"), topic? | `{"peer_id", "role", "status"}` |
| members | topic? | `node.members()`: `{"topic", "members": [{"peer_id", "role"}], "masters"}` |
| watch | topic? | `{"watching": true}`, then one `{"ok": true, "event": change_json}` per change |

`topic` is a topic ID or a unique prefix of one (default: the node's first
topic).  `list` answers with as many documents as fit in one line; `more`
is true when it stopped short for that reason (ask again with `after` =
the last key).  `history` lists the newest `limit` versions (default 1,000),
oldest first; if they do not fit in one line, older ones are left out too
(`omitted` counts them all, `omitted_to_fit` those).  A connection may carry
any number of requests, one at a time; a `watch` keeps it until the client
hangs up.

Every request may say `"v"`, the API version it is written for (absent:
1; one above API_VERSION is refused).  docs/pip-11/control.md is the
protocol's reference: each op's JSON schema, the limits, the promise.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import trio

from ..core.documents.docstore import MAX_LIST
from ..core.documents.history import DEFAULT_LIMIT as HISTORY_LIMIT
from ..core.identity import parse_peer_id, peer_id_text
from ..errors import (
    PttsyncError,
    UsageError,
)
from ..watching import WatchOverflowError
from .controlwire import (
    API_VERSION,
    FIELDS,
    MAX_LINE,
    ROLES,
    LineReader,
    LineTooLongError,
    change_json,
    check_socket_path,
    doc_json,
    encode_line,
    error_for,
    error_line,
    history_json,
    key_field,
    optional_field,
    parse_request,
    text_field,
    write_json,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable
    from contextlib import AbstractContextManager

    from ..core.documents.derive import DocState
    from ..core.documents.docstore import Change, Write
    from ..core.documents.history import History
    from ..core.lifecycle.governance import Role
    from ..core.topic import TopicInfo

log = logging.getLogger(__name__)

MAX_CLIENTS = 64
"""Control connections served at once; more are told to try again."""
REQUEST_TIMEOUT = 25.0
"""Seconds a request may take, from its first byte to the last byte of its answer."""
IDLE_TIMEOUT = 300.0
"""Seconds a connection may sit idle between requests."""
SEND_TIMEOUT = 10.0
"""Seconds a watcher may take to take one event off the socket."""

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

    def history(
        self, key: str, *, topic: bytes | None = None, limit: int = ...
    ) -> History | None: ...

    async def set_role(self, peer_id: bytes, role: Role, *, topic: bytes | None = None) -> Any: ...

    def members(self, *, topic: bytes | None = None) -> dict[str, Any]: ...

    def status(self) -> dict[str, Any]: ...

    def peers(self) -> list[dict[str, Any]]: ...

    def peer_view(self) -> dict[str, Any]: ...

    def watch(
        self, *, topic: bytes | None = None, buffer: int = ...
    ) -> AbstractContextManager[AsyncIterator[Change]]: ...


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
    path = check_socket_path(Path(path))
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
                    error_line(
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
                await _send_quietly(
                    stream, error_line(f"a request line is at most {MAX_LINE} bytes")
                )
            return False
        if line is None:  # the client hung up, or sat idle too long
            return False
        keep = True
        with trio.move_on_after(REQUEST_TIMEOUT) as scope:
            try:
                request = parse_request(line)
                log.debug("control request %s", request["op"])
                if request["op"] == "watch":
                    keep = False
                    await self._watch(stream, reader, request, scope)
                    return False
                response = self._encode_result(request["op"], await self._dispatch(request))
            except Exception as exc:
                response = error_for(exc)
            await stream.send_all(response)
            return keep
        log.warning("control socket: a request took over %g s", REQUEST_TIMEOUT)
        with trio.move_on_after(SEND_TIMEOUT):
            await _send_quietly(
                stream,
                error_line(f"the node did not answer within {REQUEST_TIMEOUT:g} s", kind="failure"),
            )
        return False

    def _topic(self, request: dict[str, Any]) -> bytes | None:
        text = optional_field(request, "topic", str)
        if text is None:
            return None
        if not text or len(text) > 64:
            raise UsageError("'topic' is a topic ID or a prefix of one, 1..64 hex digits")
        return self.node.select_topic(text).topic_id

    async def _dispatch(self, request: dict[str, Any]) -> Any:
        node, op = self.node, request["op"]
        if op == "ping":
            return {"peer_id": peer_id_text(node.peer_id)}
        if op == "hello":
            return {"api": API_VERSION, "peer_id": peer_id_text(node.peer_id), "ops": list(FIELDS)}
        if op == "status":
            return node.status()
        if op == "peers":
            return node.peers()
        if op == "peer_view":
            return node.peer_view()
        if op == "put":
            if "value" not in request:
                raise UsageError("put needs a 'value'")
            write = await node.put(key_field(request), request["value"], topic=self._topic(request))
            return write_json(write)
        if op == "get":
            state = node.get(key_field(request), topic=self._topic(request))
            return doc_json(state) if state is not None else None
        if op == "delete":
            return write_json(await node.delete(key_field(request), topic=self._topic(request)))
        if op == "list":
            limit = optional_field(request, "limit", int)
            if limit is not None and not 1 <= limit <= MAX_LIST:
                raise UsageError(f"'limit' is 1..{MAX_LIST}")
            states = node.items(
                text_field(request, "prefix", required=False) or "",
                topic=self._topic(request),
                after=text_field(request, "after", required=False) or None,
                limit=100 if limit is None else limit,
                deleted=bool(optional_field(request, "deleted", bool)),
            )
            return [doc_json(s) for s in states]
        if op == "history":
            limit = optional_field(request, "limit", int)  # the store checks its range
            found = node.history(
                key_field(request),
                topic=self._topic(request),
                limit=HISTORY_LIMIT if limit is None else limit,
            )
            return history_json(found) if found is not None else None
        if op == "members":
            return node.members(topic=self._topic(request))
        if op == "member":
            peer = text_field(request, "peer_id", required=True)
            if len(peer) > 64:
                raise UsageError("'peer_id' is a 52-character peer ID")
            role_name = text_field(request, "role", required=True)
            if role_name not in ROLES:
                raise UsageError("'role' is 'member', 'master' or 'none'")
            peer_id = parse_peer_id(peer)
            status = await node.set_role(peer_id, ROLES[role_name], topic=self._topic(request))
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
        if op == "history":
            return _history_line(result)
        line = encode_line({"ok": True, "result": result})
        if len(line) > MAX_LINE:
            return error_line(f"the answer is over {MAX_LINE} bytes", kind="failure")
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
                await _send_quietly(stream, error_line(str(exc)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            log.debug("a watching control client went away or fell behind")
        except Exception as exc:
            with trio.move_on_after(SEND_TIMEOUT):
                await _send_quietly(stream, error_for(exc))


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


def _fit(values: Iterable[Any], room: int) -> list[bytes]:
    """The JSON forms of the first `values` that fit in `room` bytes, commas counted."""
    items: list[bytes] = []
    for value in values:
        item = encode_line(value)[:-1]
        room -= len(item) + 1
        if room < 0:
            break
        items.append(item)
    return items


def _list_line(docs: list[dict[str, Any]]) -> bytes:
    """As many documents as fit in one line, with `more` if some did not."""
    items = _fit(docs, MAX_LINE - 64)
    more = len(items) < len(docs)
    if not items and more:
        return error_line(
            f"document {docs[0]['key']!r} is over {MAX_LINE} bytes as JSON: read it with get",
            kind="failure",
        )
    head = b'{"ok":true,"result":{"more":' + (b"true" if more else b"false") + b',"items":['
    return head + b",".join(items) + b"]}}\n"


def _history_line(history: dict[str, Any] | None) -> bytes:
    """The history in one line: if it is too long, its oldest versions are left out."""
    line = encode_line({"ok": True, "result": history})
    if history is None or len(line) <= MAX_LINE:
        return line
    versions = history["versions"]
    rest = {k: v for k, v in history.items() if k != "versions"}
    kept = _fit(reversed(versions), MAX_LINE - len(encode_line(rest)) - 128)
    if not kept:
        return error_line(f"a version is over {MAX_LINE} bytes as JSON", kind="failure")
    cut = len(versions) - len(kept)
    rest.update(omitted=rest["omitted"] + cut, omitted_to_fit=cut, versions=[])
    head = encode_line({"ok": True, "result": rest})
    assert head.endswith(b"[]}}\n")
    return head[: -len(b"[]}}\n")] + b"[" + b",".join(reversed(kept)) + b"]}}\n"
