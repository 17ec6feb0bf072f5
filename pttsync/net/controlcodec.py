"""The client side of the control protocol, without I/O: requests out, answers in.

Three clients talk to a node's control socket: the trio one the CLI uses
(controlclient.py), the blocking `pttsync.Client` and the asyncio
`pttsync.AsyncClient` (pttsync.clients).  They share everything here and
do only their own I/O:

    path = check_data_dir(data_dir)            # DataDirError, UsageError
    connect to path                            # OSError -> connect_error(exc, data_dir)
    send request_line(make_request("get", key="k"))
    answers = Answers(data_dir)
    while (answer := answers.next()) is None:  # raises what the node's error says
        answers.feed(read from the socket)     # b"" at the end of the stream
    answer["result"]

The protocol itself (the ops, their fields and answers, the limits, the
version promise) is docs/pip-11/control.md.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..errors import DataDirError, NodeNotRunningError, PttsyncError, UsageError
from .controlwire import (
    API_VERSION,
    CONTROL_SOCKET,
    MAX_LINE,
    LineBuffer,
    LineTooLongError,
    decode_json,
    encode_line,
    socket_path,
)

if TYPE_CHECKING:
    from pathlib import Path

PAGE = 500
"""Documents a `list` request asks for at a time when paging through a listing."""


class ClosedByNodeError(PttsyncError):
    """The node closed the connection: before answering, or (for a watch) at its end."""


# ---------------------------------------------------------------------------
# Connecting.


def check_data_dir(data_dir: Path) -> Path:
    """The control socket's path in `data_dir`.

    Raises:
        DataDirError: `data_dir` is not a directory.
        UsageError: the socket's path is too long for a Unix socket.
    """
    if not os.path.isdir(data_dir):
        raise DataDirError(
            f"no pttsync data directory at {data_dir} (run: pttsync init --data {data_dir})"
        )
    return socket_path(data_dir)


def not_running(data_dir: Path) -> NodeNotRunningError:
    return NodeNotRunningError(
        f"no node is running on {data_dir}"
        f" (start one with: pttsync run --data {data_dir} --listen HOST:PORT)"
    )


def connect_error(exc: OSError, data_dir: Path) -> PttsyncError:
    """What connecting to the control socket of `data_dir` raised, as the error to raise."""
    if isinstance(exc, FileNotFoundError | ConnectionRefusedError):
        return not_running(data_dir)
    path = data_dir / CONTROL_SOCKET
    if isinstance(exc, PermissionError):
        return UsageError(
            f"cannot connect to {path}: permission denied (does another user run that node?)"
        )
    return PttsyncError(f"cannot connect to {path}: {exc.strerror or exc}")


def no_answer(data_dir: Path, seconds: float) -> PttsyncError:
    return PttsyncError(f"the node on {data_dir} did not answer within {seconds:g} s")


def broken(data_dir: Path) -> PttsyncError:
    return PttsyncError(f"the node on {data_dir} closed the connection")


# ---------------------------------------------------------------------------
# Requests.


def make_request(op: str, **fields: Any) -> dict[str, Any]:
    """A request: `op` and its fields, those that are None left out (but a `value`:
    null is a document's value like any other)."""
    kept = {name: v for name, v in fields.items() if v is not None or name == "value"}
    return {"op": op, **kept}


def request_line(request: dict[str, Any]) -> bytes:
    """`request` as one protocol line, for API_VERSION unless it says its own "v".

    Raises:
        UsageError: a value in it is not plain JSON, or the line is over MAX_LINE bytes.
    """
    if "v" not in request:
        request = {**request, "v": API_VERSION}
    try:
        data = encode_line(request)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"a request carries JSON values only: {exc}") from None
    if len(data) > MAX_LINE:
        raise UsageError(f"the request is over {MAX_LINE} bytes as JSON")
    return data


# ---------------------------------------------------------------------------
# Answers.


class Answers:
    """The node's answers on one connection, out of the bytes read from it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.lines = LineBuffer(MAX_LINE)

    def feed(self, data: bytes | bytearray) -> None:
        """Bytes read from the connection; b"" when the node closed it."""
        self.lines.feed(data)

    def next(self) -> dict[str, Any] | None:
        """The next answer, checked; None if it needs more bytes.

        Raises:
            ClosedByNodeError: the node closed the connection, and no answer is left.
            UsageError: the answer is an error of kind "usage": the caller's mistake.
            PttsyncError: an error of kind "failure" (the node's), or a line
                that breaks the protocol.
        """
        try:
            line = self.lines.next_line()
        except LineTooLongError:
            raise PttsyncError(
                f"the node on {self.data_dir} sent a line over {MAX_LINE} bytes"
            ) from None
        if line is None:
            if self.lines.ended:
                raise ClosedByNodeError(
                    f"the node on {self.data_dir} closed the connection without answering"
                )
            return None
        return check_answer(line, self.data_dir)


def check_answer(line: bytes, data_dir: Path) -> dict[str, Any]:
    """An answer line, decoded and checked; raises the error it carries."""
    try:
        answer = decode_json(line)
    except UsageError as exc:
        raise PttsyncError(f"the node on {data_dir} sent a malformed answer: {exc}") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise PttsyncError(f"the node on {data_dir} sent a malformed answer")
    if not answer["ok"]:
        error = str(answer.get("error") or "unknown error")
        if answer.get("kind") == "usage":
            raise UsageError(error)
        raise PttsyncError(error)
    return answer


def event_of(answer: dict[str, Any], data_dir: Path) -> dict[str, Any]:
    """The change a watch's answer line carries."""
    event = answer.get("event")
    if not isinstance(event, dict):
        raise PttsyncError(f"the node on {data_dir} sent a watch event that is not an object")
    return event


# ---------------------------------------------------------------------------
# Listings, page by page.


class ListPager:
    """The `list` requests that read a listing page by page, and each page's documents.

    A `list` answer holds at most the documents asked for, and fewer when
    they do not fit in one line (`more` is then true): the next page starts
    after the last key received.  `limit` caps the documents in all (None:
    every one).

        pager = ListPager("todo/", limit=1000)
        while (request := pager.request) is not None:
            documents += pager.take(<the result of request>)
    """

    def __init__(
        self,
        prefix: str = "",
        *,
        after: str | None = None,
        limit: int | None = None,
        deleted: bool = False,
        topic: str | None = None,
    ) -> None:
        if limit is not None and (type(limit) is not int or limit < 0):
            raise UsageError("'limit' is a whole number, 0 or more (or None: every document)")
        self.remaining = limit
        first = make_request(
            "list", prefix=prefix or None, after=after, deleted=deleted or None, topic=topic
        )
        self.request: dict[str, Any] | None = None if limit == 0 else self._page(first)

    def _page(self, request: dict[str, Any]) -> dict[str, Any]:
        size = PAGE if self.remaining is None else min(PAGE, self.remaining)
        return {**request, "limit": size}

    def take(self, result: Any) -> list[dict[str, Any]]:
        """The documents of the answer to `request`; `request` becomes the next page's."""
        request = self.request
        if request is None:
            raise UsageError("the listing is complete: no page is asked for")
        if not (
            isinstance(result, dict)
            and isinstance(result.get("more"), bool)
            and isinstance(result.get("items"), list)
            and all(isinstance(d, dict) and isinstance(d.get("key"), str) for d in result["items"])
        ):
            raise PttsyncError("the node sent a malformed list answer")
        items: list[dict[str, Any]] = result["items"]
        complete = not items or (not result["more"] and len(items) < request["limit"])
        if self.remaining is not None:
            items = items[: self.remaining]
            self.remaining -= len(items)
            complete = complete or self.remaining == 0
        self.request = None if complete else self._page({**request, "after": items[-1]["key"]})
        return items
