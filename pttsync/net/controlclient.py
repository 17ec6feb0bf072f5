"""The control socket's trio client: what the CLI sends to a running node.

The protocol's client side (requests, answers, errors) is controlcodec.py,
shared with the blocking and asyncio clients of pttsync.clients.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .controlcodec import (
    Answers,
    ClosedByNodeError,
    broken,
    check_data_dir,
    connect_error,
    event_of,
    no_answer,
    request_line,
)
from .controlwire import RECEIVE_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator


async def _connect(data_dir: Path) -> trio.SocketStream:
    path = check_data_dir(data_dir)
    try:
        return await trio.open_unix_socket(str(path))
    except OSError as exc:
        raise connect_error(exc, data_dir) from None


async def _next_answer(stream: trio.SocketStream, answers: Answers) -> dict[str, Any]:
    while (answer := answers.next()) is None:
        answers.feed(await stream.receive_some(RECEIVE_SIZE))
    return answer


async def _request(
    data_dir: Path, request: dict[str, Any], seconds: float
) -> tuple[trio.SocketStream, Answers, dict[str, Any]]:
    """Connect, send `request` and read its first answer, within `seconds`."""
    data = request_line(request)
    answers = Answers(data_dir)
    with trio.move_on_after(seconds) as scope:
        stream = await _connect(data_dir)
        try:
            await stream.send_all(data)
            return stream, answers, await _next_answer(stream, answers)
        except trio.BrokenResourceError:
            await trio.aclose_forcefully(stream)
            raise broken(data_dir) from None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
    assert scope.cancelled_caught
    raise no_answer(data_dir, seconds)


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
    stream, answers, _ = await _request(path, request, timeout)
    async with stream:
        while True:
            try:
                answer = await _next_answer(stream, answers)
            except ClosedByNodeError:
                return
            yield event_of(answer, path)
