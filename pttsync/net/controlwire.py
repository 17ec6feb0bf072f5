"""The control protocol's pieces shared by the server and the client.

Newline-delimited JSON (control.py has the table of requests): the JSON
forms of documents, versions, changes and writes; a bounded line reader;
strict request parsing; the socket's path.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.docop import (
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    check_key_size,
    value_too_deep,
)
from ..core.identity import peer_id_text
from ..core.lifecycle.governance import Role
from ..core.timeutil import to_iso
from ..errors import InvalidOplogError, LocalError, PttsyncError, UsageError
from ..jsonutil import jsonable

if TYPE_CHECKING:
    import trio

    from ..core.documents.derive import DocState, Version
    from ..core.documents.docstore import Change, Write
    from ..core.documents.history import History, HistoryEntry

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CONTROL_SOCKET = "control.sock"
MAX_VALUE_JSON = 14 * MAX_VALUE_BYTES
"""The longest JSON form (`value_json`, compact) of a value within MAX_VALUE_BYTES: 840 KiB.

A byte of CBOR becomes at most 14 of JSON: an empty byte string in a list is 1 byte
and 14 characters (`{"$bytes":""},`).  Other values stay within 8: a float of 3 bytes
(-1.7881393432617188e-07) is 23 characters and a comma, `false` in a list 1 byte and
6 characters, a control character in text 1 byte and 6 (`\\u0001`), text of other
characters at most 3 times its UTF-8 (every non-ASCII character is escaped).
"""
MAX_LINE = 2 * 1024 * 1024
"""The longest request or response line, in bytes (the newline included): 2 MiB.

A put carries its value once (MAX_VALUE_JSON at most); a get's answer carries it
twice (the value and its version's) and once more per conflicting or pending
version: 2 MiB holds the longest value twice, and any value without byte strings
(at most 8 times its CBOR as JSON, 480 KiB) four times.
"""
MAX_TEXT = 1024
"""The longest text field that is not a key (`peer_id`, `role`), in characters.

A key, `prefix` and `after` are held to the key's limit, MAX_KEY_BYTES of UTF-8
(core/docop.py), with its one message.
"""
KEY_FIELDS = frozenset({"key", "prefix", "after"})
BYTES_KEY = "$bytes"
"""A byte string's JSON form is `{"$bytes": "<base64>"}` (standard alphabet, padded)."""
MAX_SUN_PATH = 103 if sys.platform == "darwin" else 107
"""The longest AF_UNIX socket path, in bytes (sun_path less its terminating NUL)."""
API_VERSION = 1
"""The control API's version (docs/pip-11/control.md): a request's optional "v"; absent is 1."""

ROLES = {"member": Role.MEMBER, "master": Role.MASTER, "none": Role.NONE}
FIELDS: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "hello": frozenset(),
    "status": frozenset(),
    "peers": frozenset(),
    "peer_view": frozenset(),
    "put": frozenset({"key", "value", "topic"}),
    "get": frozenset({"key", "topic"}),
    "delete": frozenset({"key", "topic"}),
    "list": frozenset({"prefix", "after", "limit", "deleted", "topic"}),
    "history": frozenset({"key", "limit", "topic"}),
    "member": frozenset({"peer_id", "role", "topic"}),
    "members": frozenset({"topic"}),
    "watch": frozenset({"topic"}),
}


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
        "value": value_json(v.value),
        "pending": v.pending,
        "resolves": [r.hex() for r in v.resolves],
    }


def doc_json(state: DocState) -> dict[str, Any]:
    """A document as JSON: its shown value and version, its heads, conflicts and pending writes."""
    return {
        "key": state.key,
        "exists": state.exists,
        "value": value_json(state.value),
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


def history_json(history: History) -> dict[str, Any]:
    """A document's history: its versions oldest first, and how many older ones were left out."""
    return {
        "key": history.key,
        "exists": history.state.exists,
        "in_conflict": history.state.in_conflict,
        "shown": history.state.version.oplog_id.hex(),
        "total": history.total,
        "omitted": history.omitted,
        "versions": [history_entry_json(e) for e in history.versions],
    }


def history_entry_json(e: HistoryEntry) -> dict[str, Any]:
    done = e.resolution
    return {
        "oplog_id": e.oplog_id.hex(),
        "op": e.op,
        "status": e.status.name.lower(),
        "shown": e.shown,
        "head": e.head,
        "author": peer_id_text(e.author),
        "device": peer_id_text(e.device) if e.device is not None else None,
        "create_time": to_iso(e.create_time),
        "create_time_ns": e.create_time,
        "update_time": to_iso(e.update_time),
        "update_time_ns": e.update_time,
        "deleted": e.deleted,
        "value": value_json(e.value),
        "size": e.size,
        "value_omitted": e.value_omitted,
        "prev_id": e.prev_id.hex() if e.prev_id is not None else None,
        "resolves": [r.hex() for r in e.resolves],
        "superseded_by": [i.hex() for i in e.superseded_by],
        "conflicts_with": [i.hex() for i in e.conflicts_with],
        "closes": [i.hex() for i in e.closes],
        "resolved_by": None
        if done is None
        else {
            "oplog_id": done.oplog_id.hex(),
            "author": peer_id_text(done.author),
            "create_time": to_iso(done.create_time),
            "create_time_ns": done.create_time,
        },
    }


def encode_line(message: object) -> bytes:
    """One protocol line.  Raises ValueError or TypeError if `message` is not plain JSON."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


class NonFiniteNumberError(UsageError):
    """JSON text with a number that is not finite: NaN, Infinity, or beyond a float's range."""


class _NotFiniteError(ValueError):
    """Raised inside json.loads, which lets ValueErrors of its hooks through."""


def decode_json(data: bytes | str) -> Any:
    """Strict JSON: finite numbers only, no duplicate keys, no absurd nesting.

    Raises:
        NonFiniteNumberError: a number in it is not finite (1e999, NaN, Infinity).
        UsageError: the text is not such JSON otherwise (the message says why).
    """

    def constant(name: str) -> Any:
        raise _NotFiniteError(f"JSON numbers must be finite: {name} is not JSON")

    def number(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise _NotFiniteError(
                f"JSON numbers must be finite: {text[:40]} is out of a 64-bit float's range"
            )
        return value

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            raise ValueError("an object has a duplicate key")
        return out

    try:
        return json.loads(
            data, parse_constant=constant, parse_float=number, object_pairs_hook=no_duplicates
        )
    except _NotFiniteError as exc:
        raise NonFiniteNumberError(str(exc)) from None
    except RecursionError:
        raise UsageError("not JSON: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"not JSON: {exc}") from None


def value_json(value: Any) -> Any:
    """A document value's JSON form: a byte string as `{"$bytes": "<base64>"}`, map
    keys as text, a float that is not finite as text ("nan"); the rest as it is."""
    return jsonable(value, bytes_form=_bytes_json)


def _bytes_json(value: bytes) -> dict[str, str]:
    return {BYTES_KEY: base64.b64encode(value).decode("ascii")}


def json_value(value: Any, depth: int = 0) -> Any:
    """A document value from its JSON form (see `value_json`).

    Raises:
        UsageError: a `{"$bytes": ...}` whose text is not padded base64, or lists
            and maps nested over MAX_VALUE_DEPTH deep (the node's own limit).
    """
    if isinstance(value, dict) and len(value) == 1 and BYTES_KEY in value:
        text = value[BYTES_KEY]
        try:
            data = base64.b64decode(text, validate=True) if isinstance(text, str) else None
        except (binascii.Error, ValueError):
            data = None
        if data is None or base64.b64encode(data).decode("ascii") != text:
            raise UsageError(
                '{"$bytes": ...} is a byte string, and holds it as base64 text (standard'
                f" alphabet, padded); {str(text)[:40]!r} is not"
            )
        return data
    if isinstance(value, list | dict) and depth >= MAX_VALUE_DEPTH:
        raise value_too_deep()
    if isinstance(value, list):
        return [json_value(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v, depth + 1) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------
# Lines over a stream.


class LineTooLongError(Exception):
    """The peer sent more than MAX_LINE bytes without a newline."""


RECEIVE_SIZE = 65536
"""Bytes asked of a socket at a time."""


class LineBuffer:
    """Newline-terminated lines out of the bytes fed in, each at most `max_line` bytes.

    Sans-I/O: the trio LineReader, and the blocking and asyncio clients
    (pttsync.clients), feed it what their sockets read.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._searched = 0
        self.eof = False

    @property
    def ended(self) -> bool:
        """The stream ended and every line of it was taken."""
        return self.eof and not self._buffer

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes read from the stream; b"" marks its end."""
        if not data:
            self.eof = True
        self._buffer += data

    def next_line(self) -> bytes | None:
        """The next line without its newline; None if it needs more bytes (or `ended`).

        Data after the last newline counts as a final line.

        Raises:
            LineTooLongError: over `max_line` bytes came without a newline.
        """
        end = self._buffer.find(b"\n", self._searched)
        if end >= 0:
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._searched = 0
            return line
        self._searched = len(self._buffer)
        if self._searched >= self.max_line:
            raise LineTooLongError
        if self.eof and self._buffer:
            line = bytes(self._buffer)
            self._buffer.clear()
            self._searched = 0
            return line
        return None


class LineReader:
    """Newline-terminated lines from a trio stream, each at most `max_line` bytes."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int = MAX_LINE) -> None:
        self.stream = stream
        self.lines = LineBuffer(max_line)

    async def line(self) -> bytes | None:
        """The next line without its newline; None at the end of the stream.

        Data after the last newline counts as a final line.

        Raises:
            LineTooLongError: over `max_line` bytes came without a newline.
        """
        while (line := self.lines.next_line()) is None:
            if self.lines.ended:
                return None
            self.lines.feed(await self.stream.receive_some(RECEIVE_SIZE))
        return line


# ---------------------------------------------------------------------------
# The socket's path.


def socket_path(data_dir: Path | str) -> Path:
    """`DIR/control.sock`, checked to fit in an AF_UNIX address.

    Raises:
        UsageError: the path is too long for a Unix socket.
    """
    return check_socket_path(Path(data_dir) / CONTROL_SOCKET)


def check_socket_path(path: Path) -> Path:
    size = len(os.fsencode(path))
    if size > MAX_SUN_PATH:
        raise UsageError(
            f"the control socket path {path} is {size} bytes, over the {MAX_SUN_PATH}"
            " a Unix socket allows: use a data directory with a shorter path"
        )
    return path


# ---------------------------------------------------------------------------
# Requests.


def error_line(message: str, *, kind: str = "usage") -> bytes:
    return encode_line({"ok": False, "error": message, "kind": kind})


def error_for(exc: Exception) -> bytes:
    # The caller's mistakes: a bad request, a bad argument, an oplog the
    # topic's governance refuses (NotAuthorizedError) or that is too big.
    if isinstance(exc, LocalError | InvalidOplogError):
        return error_line(str(exc))
    if isinstance(exc, PttsyncError):
        log.warning("control request failed: %s", exc)
        return error_line(str(exc), kind="failure")
    log.exception("control request failed")
    return error_line(f"the node failed: {type(exc).__name__}: {exc}", kind="failure")


def parse_request(line: bytes) -> dict[str, Any]:
    request = decode_json(line)
    if not isinstance(request, dict):
        raise UsageError('a request is a JSON object: {"op": ..., ...}')
    op = request.get("op")
    if not isinstance(op, str):
        raise UsageError("a request has an 'op' (text)")
    if op not in FIELDS:
        raise UsageError(f"unknown op {op[:40]!r}: one of {', '.join(FIELDS)}")
    check_version(request.get("v", API_VERSION))
    unknown = set(request) - FIELDS[op] - {"op", "v"}
    if unknown:
        names = ", ".join(repr(n[:40]) for n in sorted(unknown))
        raise UsageError(f"op {op!r} takes no field {names}")
    if op == "put" and "value" in request:
        request["value"] = json_value(request["value"])
    return request


def check_version(version: object) -> None:
    """A request's "v": the control API version it is written for (1..API_VERSION)."""
    if type(version) is not int or version < 1:
        raise UsageError(f"'v' is the control API version the request is for, 1..{API_VERSION}")
    if version > API_VERSION:
        raise UsageError(
            f"the request is for control API version {version}, and this node speaks"
            f" {API_VERSION}: upgrade the node, or send requests for version {API_VERSION}"
        )


def optional_field(request: dict[str, Any], name: str, kind: type[_T]) -> _T | None:
    value = request.get(name)
    if value is None:
        return None
    # bool is an int to Python, not to this protocol.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise UsageError(f"{name!r} is {TYPE_NAMES.get(kind, kind.__name__)}")
    return value


TYPE_NAMES = {str: "text", int: "a whole number", bool: "true or false"}


def text_field(request: dict[str, Any], name: str, *, required: bool) -> str:
    value = optional_field(request, name, str)
    if value is None:
        if required:
            raise UsageError(f"the request needs {name!r} (text)")
        return ""
    if name in KEY_FIELDS:
        size = len(value.encode("utf-8", "surrogatepass"))
        check_key_size(size, *(() if name == "key" else (repr(name),)))
    elif len(value) > MAX_TEXT:
        raise UsageError(f"{name!r} is at most {MAX_TEXT} characters")
    return value


def key_field(request: dict[str, Any]) -> str:
    return text_field(request, "key", required=True)
