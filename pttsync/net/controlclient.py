"""The control socket's client: what the CLI sends to a running node."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..errors import DataDirError, NodeNotRunningError, PttsyncError, UsageError
from .controlwire import (
    MAX_LINE,
    LineReader,
    LineTooLongError,
    decode_json,
    encode_line,
    socket_path,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator


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
