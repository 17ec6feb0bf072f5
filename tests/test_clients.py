"""pttsync from any Python program: `Client` (threads), `AsyncClient` (asyncio), `start_node`.

Against real nodes: a `pttsync run` process (one for the module: each test
writes under its own key prefix), or nodes started in this process with
`start_node`.  No trio here: the blocking client runs on plain threads and
the asyncio one under `asyncio.run`.  Every wait has a deadline: the clients'
timeouts, `ClientWatch.wait(timeout)`, `asyncio.timeout`, thread joins and
subprocess timeouts.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import pttsync
from pttsync import AsyncClient, Client, NodeHandle, start_node
from pttsync.errors import DataDirError, NodeNotRunningError, PttsyncError, UsageError
from pttsync.net import controlcodec
from pttsync.net.controlcodec import Answers, ClosedByNodeError, ListPager, request_line
from pttsync.net.controlwire import (
    API_VERSION,
    MAX_LINE,
    LineBuffer,
    LineTooLongError,
    parse_request,
)

from .prochelpers import PTTSYNC, append_fd, log_of, new_data_dir, short_root, wait_for

WAIT = 15.0  # seconds any one wait below may take before the test fails


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with short_root(tmp_path_factory.mktemp("clients")) as path:
        yield path


@pytest.fixture(scope="module")
def node_dir(root: Path) -> Iterator[Path]:
    """The data directory of a `pttsync run` process (its peer founded the topic)."""
    d = root / "run"
    new_data_dir(d)
    fd = append_fd(d / "node.log")
    try:
        proc = subprocess.Popen(
            [*PTTSYNC, "-v", "run", "--data", str(d)], stdout=fd, stderr=subprocess.STDOUT
        )
    finally:
        os.close(fd)
    try:
        _wait_until_up(d, proc)
        yield d
    finally:
        proc.kill()
        proc.wait(timeout=WAIT)


def _wait_until_up(d: Path, proc: subprocess.Popen[bytes]) -> None:
    client = Client(d, timeout=5)
    deadline = time.monotonic() + WAIT
    while True:  # another process's state: re-check it, within the deadline
        assert proc.poll() is None, f"the node exited with {proc.returncode}:\n{log_of(d)}"
        try:
            client.hello()
            return
        except NodeNotRunningError:
            assert time.monotonic() < deadline, f"the node did not answer:\n{log_of(d)}"
            time.sleep(0.05)


_dirs = itertools.count()


@pytest.fixture
def fresh_dir(root: Path) -> Path:
    """A new peer's data directory, no node running on it."""
    d = root / f"d{next(_dirs)}"
    new_data_dir(d)
    return d


@pytest.fixture
def silent_dir(root: Path) -> Iterator[Path]:
    """A directory whose control socket accepts connections and never answers."""
    d = root / "silent"
    d.mkdir(exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        (d / "control.sock").unlink(missing_ok=True)
        listener.bind(str(d / "control.sock"))
        listener.listen(8)
        yield d


# ---------------------------------------------------------------------------
# The shared codec, without I/O.


def test_line_buffer_splits_bounds_and_ends() -> None:
    lines = LineBuffer(max_line=10)
    lines.feed(b'{"a":1}\n{"b"')
    assert lines.next_line() == b'{"a":1}'
    assert lines.next_line() is None and not lines.ended
    lines.feed(b":2}\nrest")
    assert lines.next_line() == b'{"b":2}'
    lines.feed(b"")
    assert lines.next_line() == b"rest"  # data after the last newline is a final line
    assert lines.next_line() is None and lines.ended
    too_long = LineBuffer(max_line=4)
    too_long.feed(b"12345")
    with pytest.raises(LineTooLongError):
        too_long.next_line()


def test_answers_map_errors_to_whose_fault() -> None:
    answers = Answers(Path("/d"))
    answers.feed(b'{"ok":true,"result":{"x":1}}\n{"ok":false,"error":"bad key","kind":"usage"}\n')
    assert answers.next() == {"ok": True, "result": {"x": 1}}
    with pytest.raises(UsageError, match="bad key"):
        answers.next()
    answers.feed(b'{"ok":false,"error":"disk on fire","kind":"failure"}\n[1]\nnot json\n')
    with pytest.raises(PttsyncError, match="disk on fire") as failure:
        answers.next()
    assert not isinstance(failure.value, UsageError)
    with pytest.raises(PttsyncError, match="malformed answer"):
        answers.next()
    with pytest.raises(PttsyncError, match="malformed answer: not JSON"):
        answers.next()
    assert answers.next() is None  # it needs more bytes
    answers.feed(b"")
    with pytest.raises(ClosedByNodeError, match="closed the connection without answering"):
        answers.next()


def test_request_lines_carry_the_version_and_are_bounded() -> None:
    assert request_line({"op": "ping"}) == b'{"op":"ping","v":1}\n'
    assert request_line({"op": "ping", "v": 1}) == b'{"op":"ping","v":1}\n'
    with pytest.raises(UsageError, match="JSON values only"):
        request_line({"op": "put", "key": "k", "value": b"bytes"})
    with pytest.raises(UsageError, match=f"over {MAX_LINE} bytes"):
        request_line({"op": "put", "key": "k", "value": "x" * MAX_LINE})


def test_the_server_checks_the_version() -> None:
    assert parse_request(b'{"op": "ping", "v": 1}')["op"] == "ping"
    assert parse_request(b'{"op": "ping"}')["op"] == "ping"  # absent: version 1
    with pytest.raises(UsageError, match="upgrade the node"):
        parse_request(b'{"op": "ping", "v": %d}' % (API_VERSION + 1))
    for bad in (b"0", b'"1"', b"true", b"1.0", b"null"):
        with pytest.raises(UsageError, match="'v' is the control API version"):
            parse_request(b'{"op": "ping", "v": ' + bad + b"}")


def _page(keys: list[str], more: bool = False) -> dict[str, Any]:
    return {"items": [{"key": k} for k in keys], "more": more}


def test_list_pager_follows_more_and_full_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(controlcodec, "PAGE", 3)
    pager = ListPager("k/", topic="ab")
    assert pager.request == {"op": "list", "prefix": "k/", "topic": "ab", "limit": 3}
    assert pager.take(_page(["k/1", "k/2", "k/3"])) == [{"key": f"k/{i}"} for i in (1, 2, 3)]
    assert pager.request is not None and pager.request["after"] == "k/3"  # a full page
    pager.take(_page(["k/4"], more=True))  # cut short to fit a line
    assert pager.request is not None and pager.request["after"] == "k/4"
    pager.take(_page(["k/5"]))  # short, and no more
    assert pager.request is None
    limited = ListPager(limit=4)
    assert limited.request is not None and limited.request["limit"] == 3
    limited.take(_page(["a", "b", "c"]))
    assert limited.request is not None and limited.request["limit"] == 1
    assert limited.take(_page(["d"])) == [{"key": "d"}] and limited.request is None
    assert ListPager(limit=0).request is None
    with pytest.raises(PttsyncError, match="malformed list answer"):
        ListPager().take({"items": [1], "more": False})


# ---------------------------------------------------------------------------
# The blocking client, against a `pttsync run` process.


def test_hello_status_and_members(node_dir: Path) -> None:
    client = Client(node_dir, timeout=WAIT)
    hello = client.hello()
    assert hello["api"] == API_VERSION == 1
    assert {"hello", "members", "put", "watch"} <= set(hello["ops"])
    assert client.status()["peer_id"] == hello["peer_id"]
    assert client.peers() == []
    members = client.members()
    assert members["members"] == [{"peer_id": hello["peer_id"], "role": "master"}]
    assert members["masters"] == [hello["peer_id"]]
    assert members["topic"] == client.status()["topics"][0]["topic_id"]
    assert client.call("ping") == {"peer_id": hello["peer_id"]}
    assert client.put("nothing", None)["status"] == "confirmed"  # null is a value
    assert client.get("nothing", topic=members["topic"][:8])["exists"]  # type: ignore[index]
    assert repr(client) == f"Client({str(node_dir)!r})"


def test_threads_write_at_once_and_read_everything_back(node_dir: Path) -> None:
    client = Client(node_dir, timeout=WAIT)
    keys = [f"threads/{t}-{i:02}" for t in range(8) for i in range(20)]

    def write(t: int) -> list[dict[str, Any]]:
        return [client.put(k, {"n": k}) for k in keys if k.startswith(f"threads/{t}-")]

    with ThreadPoolExecutor(max_workers=8) as pool:
        writes = [w for ws in pool.map(write, range(8), timeout=WAIT * 4) for w in ws]
    assert sorted(w["key"] for w in writes) == keys
    assert {w["status"] for w in writes} == {"confirmed"}  # a master writes valid at once
    with ThreadPoolExecutor(max_workers=8) as pool:
        states = list(pool.map(client.get, keys, timeout=WAIT * 4))
    assert [s["value"] if s else None for s in states] == [{"n": k} for k in keys]
    assert [d["key"] for d in client.list("threads/")] == keys


def test_list_pages_through_count_and_line_limits(
    node_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = Client(node_dir, timeout=WAIT)
    for i in range(10):
        client.put(f"pages/{i:02}", i)
    client.delete("pages/05")
    pages: list[dict[str, Any]] = []
    real_call = Client.call

    def counting(self: Client, op: str, **fields: Any) -> Any:
        result = real_call(self, op, **fields)
        if op == "list":
            pages.append(result)
        return result

    monkeypatch.setattr(Client, "call", counting)
    monkeypatch.setattr(controlcodec, "PAGE", 3)
    keys = [f"pages/{i:02}" for i in range(10) if i != 5]
    assert [d["key"] for d in client.list("pages/")] == keys
    # 3 + 3 + 3: a full page may have more after it, so a fourth (empty) one is asked.
    assert [len(p["items"]) for p in pages] == [3, 3, 3, 0]
    assert [d["value"] for d in client.list("pages/", limit=4)] == [0, 1, 2, 3]
    assert [d["key"] for d in client.list("pages/", after="pages/06")] == keys[-3:]
    with_deleted = client.list("pages/", deleted=True)
    assert [d["exists"] for d in with_deleted].count(False) == 1 and len(with_deleted) == 10
    assert client.list("pages/", limit=0) == []
    it = client.items("pages/")
    assert next(it)["key"] == "pages/00"  # lazy: one page at a time
    # Documents too big for one line: the node sets `more`, and the client asks on.
    pages.clear()
    big = "x" * 60_000  # twice in a document's JSON: its value, and its version's
    n = 2 * MAX_LINE // 120_000 + 1  # over two lines' worth
    for i in range(n):
        client.put(f"big/{i:03}", big)
    monkeypatch.setattr(controlcodec, "PAGE", 500)
    assert [d["key"] for d in client.list("big/")] == [f"big/{i:03}" for i in range(n)]
    assert len(pages) >= 3 and all(p["more"] for p in pages[:-1]) and not pages[-1]["more"]


def test_errors_say_whose_fault(node_dir: Path, fresh_dir: Path, root: Path) -> None:
    client = Client(node_dir, timeout=WAIT)
    for call in (
        lambda: client.put("", 1),
        lambda: client.get("bad\nkey"),
        lambda: client.put("k", 1, topic="ffff"),
        lambda: client.call("launch"),
        lambda: client.call("get", key="k", colour="blue"),
        lambda: client.call("ping", v=API_VERSION + 1),
        lambda: client.set_role("not-a-peer", "member"),
        lambda: client.list(limit=-1),
        lambda: client.put("k", float("nan")),
    ):
        with pytest.raises(UsageError):
            call()
    with pytest.raises(NodeNotRunningError, match="no node is running on"):
        Client(fresh_dir).status()
    with pytest.raises(DataDirError, match="no pttsync data directory"):
        Client(root / "nowhere").status()
    with pytest.raises(UsageError, match="timeout"):
        Client(node_dir, timeout=0)


def test_a_node_that_does_not_answer_times_out(silent_dir: Path) -> None:
    started = time.monotonic()
    with pytest.raises(PttsyncError, match=r"did not answer within 0\.3 s"):
        Client(silent_dir, timeout=0.3).status()
    assert time.monotonic() - started < 5

    async def main() -> None:
        with pytest.raises(PttsyncError, match=r"did not answer within 0\.3 s"):
            await AsyncClient(silent_dir, timeout=0.3).status()

    asyncio.run(main())


def test_watch_sees_another_threads_put_and_closes_cleanly(node_dir: Path) -> None:
    client = Client(node_dir, timeout=WAIT)
    with client.watch() as changes:
        writer = threading.Thread(target=client.put, args=("watched/1", {"hi": 1}))
        writer.start()
        writer.join(WAIT)
        change = changes.wait(timeout=WAIT)
        assert change is not None
        assert (change["kind"], change["key"], change["local"]) == ("put", "watched/1", True)
        assert change["state"]["value"] == {"hi": 1}
        with pytest.raises(TimeoutError, match=r"no change within 0\.05 s"):
            changes.wait(timeout=0.05)  # nothing more: the watch goes on
        client.put("watched/2", 2)
        again = changes.wait(timeout=WAIT)
        assert again is not None and again["key"] == "watched/2"
    assert changes.closed and changes.wait() is None

    # A thread blocked in the loop ends when another thread closes the watch.
    watch = client.watch()
    seen: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: seen.extend(watch))
    reader.start()
    client.put("watched/3", 3)
    wait_for(lambda: bool(seen), WAIT, "the reading thread saw no change")
    watch.close()
    reader.join(WAIT)
    assert not reader.is_alive() and [c["key"] for c in seen] == ["watched/3"]
    watch.close()  # idempotent


def test_a_loop_over_an_unmanaged_watch_closes_it(node_dir: Path) -> None:
    client = Client(node_dir, timeout=WAIT)
    watch = client.watch()
    client.put("loop/1", 1)
    deadline = threading.Timer(WAIT, watch.close)  # a change that never comes fails, not hangs
    deadline.start()
    seen = []
    for change in watch:
        seen.append(change["key"])
        assert change["key"] == "loop/1"
        break
    deadline.cancel()
    assert seen == ["loop/1"]
    assert watch.closed  # the loop's end closed it: no socket left behind
    kept = client.watch()
    client.close()  # the client ends the watches it opened
    assert kept.closed


def test_one_reader_at_a_time(node_dir: Path) -> None:
    with Client(node_dir, timeout=WAIT).watch() as watch:
        reader = threading.Thread(target=lambda: list(watch))
        reader.start()
        wait_for(lambda: watch._waiting, WAIT, "the reader blocks in the watch")
        with pytest.raises(UsageError, match="one reader at a time"):
            watch.wait(timeout=0.01)
    reader.join(WAIT)
    assert not reader.is_alive()


# ---------------------------------------------------------------------------
# The asyncio client.


def test_async_client_writes_at_once_reads_and_lists(node_dir: Path) -> None:
    async def main() -> None:
        async with asyncio.timeout(WAIT * 2), AsyncClient(node_dir, timeout=WAIT) as client:
            keys = [f"async/{i:02}" for i in range(40)]
            writes = await asyncio.gather(*(client.put(k, {"k": k}) for k in keys))
            assert sorted(w["key"] for w in writes) == keys
            states = await asyncio.gather(*(client.get(k) for k in keys))
            assert [s["value"] if s else None for s in states] == [{"k": k} for k in keys]
            assert [d["key"] for d in await client.list("async/")] == keys
            assert [d["key"] async for d in client.items("async/", limit=3)] == keys[:3]
            hello = await client.hello()
            assert (await client.members())["masters"] == [hello["peer_id"]]
            assert (await client.status())["peer_id"] == hello["peer_id"]
            assert await client.peers() == []
            assert await client.get("async/none") is None
            assert (await client.delete("async/00"))["status"] == "confirmed"
            with pytest.raises(UsageError):
                await client.put("", 1)

    asyncio.run(main())


def test_async_watch(node_dir: Path) -> None:
    async def main() -> None:
        async with asyncio.timeout(WAIT * 2), AsyncClient(node_dir, timeout=WAIT) as client:
            async with client.watch() as changes:
                # Cancelling a wait leaves the watch as it was.
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await changes.wait()
                writer = asyncio.create_task(client.put("awatch/1", 1))
                async for change in changes:
                    assert (change["kind"], change["key"]) == ("put", "awatch/1")
                    break
                await writer
                await client.put("awatch/2", 2)
                second = await changes.wait()
                assert second is not None and second["key"] == "awatch/2"
            assert changes.closed and await changes.wait() is None
            kept = client.watch()
            await kept.start()
        assert kept.closed  # the client's `async with` ended it

    asyncio.run(main())


def test_async_client_errors(node_dir: Path, fresh_dir: Path) -> None:
    async def main() -> None:
        with pytest.raises(NodeNotRunningError):
            await AsyncClient(fresh_dir).status()
        with pytest.raises(UsageError, match="upgrade the node"):
            await AsyncClient(node_dir).call("ping", v=API_VERSION + 1)
        with pytest.raises(NodeNotRunningError):
            async with AsyncClient(fresh_dir).watch():
                pass

    asyncio.run(main())


# ---------------------------------------------------------------------------
# start_node: a node in this process.


def test_start_node_put_get_stop_and_start_again(fresh_dir: Path) -> None:
    node = start_node(fresh_dir, listen="127.0.0.1:0", timeout=WAIT)
    try:
        assert isinstance(node, NodeHandle) and isinstance(node, Client)
        assert node.listen_address is not None and node.listen_address.startswith("127.0.0.1:")
        assert node.hello()["peer_id"] == node.peer_id
        assert node.put("greeting", "hello")["status"] == "confirmed"
        assert node.get("greeting")["value"] == "hello"  # type: ignore[index]
        with pytest.raises(UsageError):
            start_node(fresh_dir, timeout=WAIT)  # one node per data directory
        watch = node.watch()
        other = Client(fresh_dir, timeout=WAIT).watch()
    finally:
        node.stop()
    assert not node.running and watch.closed  # the handle's own watches: closed by stop
    assert other.wait(timeout=WAIT) is None and other.closed  # others: ended by the node
    node.stop()  # idempotent
    with pytest.raises(NodeNotRunningError):
        node.status()
    # The store was closed cleanly and the directory's lock released: it starts again.
    with start_node(fresh_dir, timeout=WAIT) as again:
        assert again.peer_id == node.peer_id
        assert again.get("greeting")["value"] == "hello"  # type: ignore[index]
        assert again.listen_address is None
    assert not again.running


def test_two_nodes_in_one_process(root: Path) -> None:
    a, b = root / "two-a", root / "two-b"
    new_data_dir(a)
    new_data_dir(b)
    with start_node(a, timeout=WAIT) as node_a, start_node(b, timeout=WAIT) as node_b:
        assert node_a.peer_id != node_b.peer_id
        node_a.put("k", "a")
        node_b.put("k", "b")
        assert node_a.get("k")["value"] == "a"  # type: ignore[index]
        assert node_b.get("k")["value"] == "b"  # type: ignore[index]
    assert not node_a.running and not node_b.running


def test_start_node_raises_the_start_error(root: Path, fresh_dir: Path) -> None:
    with pytest.raises(DataDirError):
        start_node(root / "not-a-peer", timeout=WAIT)
    with pytest.raises(UsageError, match="control"):
        start_node(fresh_dir, config=pttsync.NodeConfig(control=False))
    with pytest.raises(UsageError):
        start_node(fresh_dir, listen="not an address")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UsageError):
            start_node(fresh_dir, listen=f"127.0.0.1:{port}", timeout=WAIT)
    with start_node(fresh_dir, timeout=WAIT) as node:  # none of that left it locked
        assert node.running


def test_a_program_that_forgets_to_stop_exits_cleanly(fresh_dir: Path) -> None:
    program = textwrap.dedent(
        f"""
        import sys
        import pttsync
        node = pttsync.start_node({str(fresh_dir)!r})
        node.put("left", "running")
        watch = node.watch()
        print("up", "trio" in sys.modules, flush=True)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=WAIT * 2,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "up True\n"
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert time.monotonic() - started < WAIT
    # Stopped at exit with its store closed: the directory starts again, the write kept.
    with start_node(fresh_dir, timeout=WAIT) as node:
        assert node.get("left")["value"] == "running"  # type: ignore[index]


def test_the_clients_do_not_import_trio() -> None:
    code = (
        "import sys, pttsync; pttsync.Client, pttsync.AsyncClient;"
        " print('trio' in sys.modules, 'pttsync.net.node' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]
