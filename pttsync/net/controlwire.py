"""The control protocol's pieces shared by the server and the client.

Newline-delimited JSON (control.py has the table of requests): the JSON
forms of documents, versions, changes and writes; a bounded line reader;
strict request parsing; the socket's path.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..core.identity import peer_id_text
from ..core.lifecycle.governance import Role
from ..core.timeutil import to_iso
from ..errors import InvalidOplogError, LocalError, PttsyncError, UsageError
from ..jsonutil import jsonable

if TYPE_CHECKING:
    import trio

    from ..core.documents.derive import DocState, Version
    from ..core.documents.docstore import Change, Write

log = logging.getLogger(__name__)

_T = TypeVar("_T")

CONTROL_SOCKET = "control.sock"
MAX_LINE = 1024 * 1024
"""The longest request or response line, in bytes (the newline included)."""
MAX_TEXT = 1024
"""The longest key, prefix or `after` accepted, in characters (the node checks the rest)."""
MAX_SUN_PATH = 103 if sys.platform == "darwin" else 107
"""The longest AF_UNIX socket path, in bytes (sun_path less its terminating NUL)."""

ROLES = {"member": Role.MEMBER, "master": Role.MASTER, "none": Role.NONE}
FIELDS: dict[str, frozenset[str]] = {
    "ping": frozenset(),
    "status": frozenset(),
    "peers": frozenset(),
    "peer_view": frozenset(),
    "put": frozenset({"key", "value", "topic"}),
    "get": frozenset({"key", "topic"}),
    "delete": frozenset({"key", "topic"}),
    "list": frozenset({"prefix", "after", "limit", "deleted", "topic"}),
    "member": frozenset({"peer_id", "role", "topic"}),
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
    unknown = set(request) - FIELDS[op] - {"op"}
    if unknown:
        names = ", ".join(repr(n[:40]) for n in sorted(unknown))
        raise UsageError(f"op {op!r} takes no field {names}")
    return request


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
    if len(value) > MAX_TEXT:
        raise UsageError(f"{name!r} is at most {MAX_TEXT} characters")
    return value


def key_field(request: dict[str, Any]) -> str:
    return text_field(request, "key", required=True)
