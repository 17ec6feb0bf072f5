"""Helpers for tests of real processes and sockets (test_node_process, test_launch).

Every wait here is bounded (`trio.fail_after`, subprocess deadlines); polls
re-check a condition with short sleeps inside such a deadline.  Ports are
found free by binding 127.0.0.1:0, and data directories live under a short
temporary path so the Unix control socket path fits.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pttsync.cli.main import main
from pttsync.datadir import DataDir
from pttsync.errors import NodeNotRunningError
from pttsync.net.controlclient import control_call

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from pttsync.net.node import Node

PTTSYNC = [sys.executable, "-m", "pttsync"]
SOCKET_ROOM = 60  # bytes a test adds under its root: "/peer-0/control.sock" and some slack


@contextmanager
def short_root(tmp_path: Path) -> Iterator[Path]:
    """A directory short enough for `ROOT/<dir>/control.sock` to be a Unix socket path."""
    if len(os.fsencode(tmp_path)) + SOCKET_ROOM < 107:
        yield tmp_path
        return
    short = Path(tempfile.mkdtemp(prefix="pttsync-", dir="/tmp"))
    try:
        yield short
    finally:
        shutil.rmtree(short, ignore_errors=True)


def new_data_dir(path: Path) -> DataDir:
    """A fresh peer that founded its own topic (so it is its master and writes valid)."""
    d, _, _ = DataDir.init(path, topic_name="main", now=time.time_ns(), nonce=os.urandom(16))
    return d


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> int:
    """The first of `n` consecutive ports that are free on 127.0.0.1 right now."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            base: int = s.getsockname()[1]
        if base + n - 1 <= 65535 and all(_bindable(base + i) for i in range(1, n)):
            return base
    raise AssertionError(f"found no {n} consecutive free ports")


async def cli(*argv: str) -> int:
    """The CLI in process, in a worker thread (it runs its own trio loop)."""
    code: int = await trio.to_thread.run_sync(main, list(argv))
    return code


async def poll(condition: Callable[[], Any], seconds: float, what: str) -> None:
    """Re-check the async `condition` every 50 ms until it is truthy, for at most `seconds`."""
    try:
        with trio.fail_after(seconds):
            while not await condition():  # noqa: ASYNC110 - another process's state: no event
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"not within {seconds} s: {what}") from None


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """`poll` for plain (not async) code: re-check another process's (or thread's)
    state until `condition()` holds, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.01)


def log_of(d: Path) -> str:
    path = d / "node.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(no node.log)"


async def start_node_process(d: Path, *extra: str) -> trio.Process:
    """`pttsync run --data d --listen 127.0.0.1:0` as a process, logging to d/node.log."""
    cmd = [*PTTSYNC, "-v", "run", "--data", str(d), "--listen", "127.0.0.1:0", *extra]
    fd = append_fd(d / "node.log")
    try:
        return await trio.lowlevel.open_process(cmd, stdout=fd, stderr=subprocess.STDOUT)
    finally:
        os.close(fd)


def append_fd(path: Path) -> int:
    """A file descriptor appending to `path`, for a child's output."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


async def wait_for_control(d: Path, proc: trio.Process, seconds: float = 15) -> str:
    """Wait until the node `proc` answers on d/control.sock; its peer ID."""
    peer_id = ""

    async def answers() -> bool:
        nonlocal peer_id
        if proc.poll() is not None:
            raise AssertionError(f"the node exited with {proc.returncode}:\n{log_of(d)}")
        try:
            result = await control_call(d, {"op": "ping"}, timeout=5)
        except NodeNotRunningError:
            return False
        peer_id = result["peer_id"]
        return True

    await poll(answers, seconds, f"the node on {d} answers on its control socket")
    return peer_id


async def reap(proc: trio.Process, seconds: float = 10) -> None:
    """Make sure `proc` is gone: SIGKILL it if it still runs, and wait for it."""
    with trio.CancelScope(shield=True):
        if proc.poll() is None:
            proc.kill()
        with trio.move_on_after(seconds):
            await proc.wait()


@asynccontextmanager
async def node_process(d: Path, *extra: str) -> AsyncIterator[tuple[trio.Process, str]]:
    """A running `pttsync run` on `d` (and its peer ID); killed at the end if still running."""
    proc = await start_node_process(d, *extra)
    try:
        peer_id = await wait_for_control(d, proc)
        yield proc, peer_id
    finally:
        await reap(proc)


async def stop(proc: trio.Process, d: Path, seconds: float = 10) -> None:
    """SIGTERM, then expect a clean exit (0) within `seconds`."""
    proc.send_signal(signal.SIGTERM)
    with trio.fail_after(seconds):
        await proc.wait()
    assert proc.returncode == 0, log_of(d)


def value_of(node: Node, key: str) -> Any:
    state = node.get(key)
    return None if state is None or state.pending else state.value


async def read_until(stream: trio.abc.ReceiveStream, buffer: bytearray, marker: bytes) -> None:
    while marker not in buffer:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"output ended before {marker!r}:\n{buffer.decode()}")
        buffer += chunk


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
