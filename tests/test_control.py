"""The control socket (server and client) and the CLI commands that use it, over a fake node."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from pttsync.cli import build_parser, main
from pttsync.core.docop import key_to_object
from pttsync.core.documents.derive import DocState, Version
from pttsync.core.documents.docstore import Change, ChangeKind, Write, WriteStatus
from pttsync.core.documents.history import History
from pttsync.core.identity import peer_id_text
from pttsync.core.lifecycle.governance import Role
from pttsync.core.oplog import OplogStatus
from pttsync.core.topic import TopicInfo
from pttsync.errors import (
    DataDirError,
    NodeNotRunningError,
    NotAuthorizedError,
    PttsyncError,
    UsageError,
)
from pttsync.net import control
from pttsync.net.control import serve_control
from pttsync.net.controlclient import control_call, control_stream
from pttsync.net.controlwire import CONTROL_SOCKET, MAX_LINE, LineReader
from pttsync.watching import Watch

from .helpers import make_identity

ALICE = make_identity("alice").peer_id
BOB = make_identity("bob").peer_id
NOBODY = make_identity("nobody").peer_id  # set_role refuses it: not authorised
T0 = 1_750_000_000 * 10**9


class FakeNode:
    """The members of pttsync.net.node.Node that the control socket uses, in memory."""

    def __init__(self) -> None:
        self.peer_id = ALICE
        self.topics = [
            TopicInfo(bytes([0xAA]) * 32, "main", ALICE, T0, b"n" * 16),
            TopicInfo(bytes([0xBB]) * 32, "other", ALICE, T0, b"m" * 16),
        ]
        self.docs: dict[tuple[bytes, str], DocState] = {}
        self.roles: list[tuple[bytes, Role, bytes]] = []
        self.watchers: list[tuple[bytes, Watch]] = []
        self.watch_buffer: int | None = None
        self.clock = 0
        self._changed = trio.Event()

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until `condition()` holds (checked whenever a watcher comes or goes)."""
        while not condition():
            await self._changed.wait()

    def _notify_watchers_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- the Node contract ---------------------------------------------------------

    def select_topic(self, text: str | None) -> TopicInfo:
        if text is None:
            return self.topics[0]
        found = [t for t in self.topics if t.topic_id.hex().startswith(text.lower())]
        if len(found) != 1:
            raise UsageError(f"no topic {text!r} on this node")
        return found[0]

    def _topic(self, topic: bytes | None) -> bytes:
        return topic if topic is not None else self.topics[0].topic_id

    def _version(self, value: Any, *, deleted: bool = False, pending: bool = False) -> Version:
        self.clock += 1
        oid = hashlib.sha256(str(self.clock).encode()).digest()
        return Version(oid, ALICE, T0 + self.clock, None, deleted, value, pending, ())

    def _store(self, topic: bytes | None, key: str, v: Version, kind: ChangeKind) -> Write:
        state = DocState(
            key=key,
            exists=not v.deleted,
            value=None if v.deleted else v.value,
            version=v,
            pending=v.pending,
            merged=False,
            heads=() if v.pending else (v,),
            conflicts=(),
            pending_versions=(v,) if v.pending else (),
        )
        t = self._topic(topic)
        self.docs[t, key] = state
        for watched, w in self.watchers:
            if watched == t:
                w._offer(Change(kind, key, v.oplog_id, state, True))
        status = WriteStatus.PENDING if v.pending else WriteStatus.CONFIRMED
        return Write(key, v.oplog_id, status)

    async def put(self, key: str, value: Any, *, topic: bytes | None = None) -> Write:
        key_to_object(key)
        if key == "boom":
            raise RuntimeError("the disk is on fire")
        if key == "slow":
            await trio.sleep_forever()
        v = self._version(value, pending=key.startswith("pending/"))
        return self._store(topic, key, v, ChangeKind.PUT)

    async def delete(self, key: str, *, topic: bytes | None = None) -> Write:
        key_to_object(key)
        return self._store(topic, key, self._version(None, deleted=True), ChangeKind.DELETE)

    def get(self, key: str, *, topic: bytes | None = None) -> DocState | None:
        key_to_object(key)
        return self.docs.get((self._topic(topic), key))

    def items(
        self,
        prefix: str = "",
        *,
        topic: bytes | None = None,
        after: str | None = None,
        limit: int = 100,
        deleted: bool = False,
    ) -> list[DocState]:
        t = self._topic(topic)
        keys = sorted(k for (tt, k) in self.docs if tt == t and k.startswith(prefix))
        states = [self.docs[t, k] for k in keys if after is None or k > after]
        return [s for s in states if deleted or s.exists][:limit]

    def history(self, key: str, *, topic: bytes | None = None, limit: int = 1000) -> History | None:
        key_to_object(key)
        return None  # test_history.py serves real histories

    async def set_role(
        self, peer_id: bytes, role: Role, *, topic: bytes | None = None
    ) -> OplogStatus:
        if peer_id == NOBODY:
            raise NotAuthorizedError("this peer is not a master of the topic")
        self.roles.append((peer_id, role, self._topic(topic)))
        return OplogStatus.VALID

    def members(self, *, topic: bytes | None = None) -> dict[str, Any]:
        me = peer_id_text(ALICE)
        return {
            "topic": self._topic(topic).hex(),
            "members": [{"peer_id": me, "role": "master"}],
            "masters": [me],
        }

    def status(self) -> dict[str, Any]:
        return {
            "peer_id": peer_id_text(ALICE),
            "listen": "127.0.0.1:7400",
            "peers": [{"peer_id": peer_id_text(BOB)}],
            "visits": {"made": 2, "taken": 5, "displaced": 1},
            "topics": [
                {
                    "topic_id": t.topic_id.hex(),
                    "name": t.name,
                    "valid": 3,
                    "pending": 1,
                    "digest": "cd" * 32,
                }
                for t in self.topics
            ],
        }

    def peers(self) -> list[dict[str, Any]]:
        return [
            {"peer_id": peer_id_text(BOB), "address": "127.0.0.1:7401", "topics": ["aaaa"]},
            {"peer_id": peer_id_text(ALICE), "address": "[::1]:7402", "topics": []},
        ]

    def peer_view(self) -> dict[str, Any]:
        known = {
            "address": "nowhere:7400", "peer_id": None, "join": True, "failures": 3,
            "last_error": "Name or service not known", "last_error_ago_s": 2.0,
            "next_try_in_s": 5.2,
        }  # fmt: skip
        refused = {
            "peer_id": peer_id_text(BOB), "address": "10.0.0.9:7400", "times": 4,
            "last_ago_s": 61.0, "reason": "not a member of any topic this node serves",
        }  # fmt: skip
        return {"connected": self.peers(), "known": [known], "refused": [refused]}

    @contextmanager
    def watch(self, *, topic: bytes | None = None, buffer: int = 1000) -> Iterator[Watch]:
        entry = (self._topic(topic), Watch(self.watch_buffer or buffer))
        self.watchers.append(entry)
        self._notify_watchers_changed()
        try:
            yield entry[1]
        finally:
            self.watchers.remove(entry)
            entry[1].close()
            self._notify_watchers_changed()

    def end_watches(self) -> None:
        for _, w in self.watchers:
            w.close()

    def add_conflict(self, key: str) -> None:
        a, b = self._version("mine"), self._version("theirs")
        p = self._version("next", pending=True)
        self.docs[self.topics[0].topic_id, key] = DocState(
            key, True, "next", p, True, False, (b, a), (a,), (p,)
        )


@pytest.fixture
async def served(tmp_path: Path, nursery: trio.Nursery) -> tuple[FakeNode, Path]:
    """A fake node serving its control socket in tmp_path."""
    node = FakeNode()
    await nursery.start(serve_control, node, tmp_path / CONTROL_SOCKET)
    return node, tmp_path


async def _raw(data_dir: Path) -> tuple[trio.SocketStream, LineReader]:
    stream = await trio.open_unix_socket(str(data_dir / CONTROL_SOCKET))
    return stream, LineReader(stream)


async def _ask(stream: trio.SocketStream, reader: LineReader, line: bytes) -> Any:
    await stream.send_all(line + b"\n")
    answer = await reader.line()
    assert answer is not None
    return json.loads(answer)


async def _cli(*argv: str) -> int:
    """Run the CLI in a worker thread, so the fake node keeps serving in this one."""
    code: int = await trio.to_thread.run_sync(main, list(argv))
    return code


# ---------------------------------------------------------------------------
# The protocol.


async def test_every_op_round_trips(served: tuple[FakeNode, Path]) -> None:
    node, d = served
    with trio.fail_after(10):
        assert await control_call(d, {"op": "ping"}) == {"peer_id": peer_id_text(ALICE)}
        assert (await control_call(d, {"op": "status"}))["listen"] == "127.0.0.1:7400"
        assert len(await control_call(d, {"op": "peers"})) == 2

        value = {"n": 1, "list": [1.5, None, True, "ü"], "nested": {"x": []}}
        write = await control_call(d, {"op": "put", "key": "a", "value": value})
        assert write["key"] == "a" and write["status"] == "confirmed"
        assert len(write["oplog_id"]) == 64
        doc = await control_call(d, {"op": "get", "key": "a"})
        assert doc["value"] == value and doc["exists"] and not doc["pending"]
        assert doc["version"]["oplog_id"] == write["oplog_id"]
        assert doc["version"]["creator"] == peer_id_text(ALICE)
        assert doc["version"]["create_time"].endswith("Z")
        assert await control_call(d, {"op": "get", "key": "nope"}) is None

        pending = await control_call(d, {"op": "put", "key": "pending/x", "value": 2})
        assert pending["status"] == "pending"
        await control_call(d, {"op": "put", "key": "b", "value": "in other", "topic": "bb"})
        assert await control_call(d, {"op": "get", "key": "b"}) is None
        other = await control_call(d, {"op": "get", "key": "b", "topic": "BBBB"})
        assert other["value"] == "in other"

        for k in ("b", "c", "d"):
            await control_call(d, {"op": "put", "key": k, "value": k})
        deleted = await control_call(d, {"op": "delete", "key": "c"})
        assert deleted["status"] == "confirmed"
        assert not (await control_call(d, {"op": "get", "key": "c"}))["exists"]

        def keys(result: dict[str, Any]) -> list[str]:
            assert result["more"] is False
            return [doc["key"] for doc in result["items"]]

        assert keys(await control_call(d, {"op": "list"})) == ["a", "b", "d", "pending/x"]
        assert keys(await control_call(d, {"op": "list", "deleted": True}))[2] == "c"
        assert keys(await control_call(d, {"op": "list", "after": "a", "limit": 2})) == ["b", "d"]
        assert keys(await control_call(d, {"op": "list", "prefix": "pending/"})) == ["pending/x"]
        assert keys(await control_call(d, {"op": "list", "topic": "bb"})) == ["b"]

        for role, expected in (
            ("member", Role.MEMBER),
            ("master", Role.MASTER),
            ("none", Role.NONE),
        ):
            answer = await control_call(
                d, {"op": "member", "peer_id": peer_id_text(BOB), "role": role, "topic": "bb"}
            )
            assert answer == {"peer_id": peer_id_text(BOB), "role": role, "status": "valid"}
            assert node.roles[-1] == (BOB, expected, node.topics[1].topic_id)


async def test_the_socket_is_for_its_owner_only(served: tuple[FakeNode, Path]) -> None:
    _, d = served
    mode = os.stat(d / CONTROL_SOCKET).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


async def test_the_socket_is_removed_when_the_server_stops(tmp_path: Path) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_control, FakeNode(), tmp_path / CONTROL_SOCKET)
            assert (tmp_path / CONTROL_SOCKET).exists()
            nursery.cancel_scope.cancel()
    assert not (tmp_path / CONTROL_SOCKET).exists()


async def test_a_stale_socket_file_is_replaced(tmp_path: Path, nursery: trio.Nursery) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(tmp_path / CONTROL_SOCKET))  # bound, never listening: connecting is refused
    dead.close()
    assert (tmp_path / CONTROL_SOCKET).exists()
    with trio.fail_after(10):
        with pytest.raises(NodeNotRunningError):
            await control_call(tmp_path, {"op": "ping"})
        await nursery.start(serve_control, FakeNode(), tmp_path / CONTROL_SOCKET)
        assert await control_call(tmp_path, {"op": "ping"}) == {"peer_id": peer_id_text(ALICE)}


async def test_a_second_server_on_the_same_directory_is_refused(
    served: tuple[FakeNode, Path],
) -> None:
    _, d = served
    with trio.fail_after(10):
        with pytest.raises(UsageError, match="a node is already running on"):
            await serve_control(FakeNode(), d / CONTROL_SOCKET)
        assert await control_call(d, {"op": "ping"})  # the first one still serves


async def test_something_else_in_the_way_is_not_removed(tmp_path: Path) -> None:
    (tmp_path / CONTROL_SOCKET).write_text("mine")
    with trio.fail_after(10), pytest.raises(UsageError, match="not a socket"):
        await serve_control(FakeNode(), tmp_path / CONTROL_SOCKET)
    assert (tmp_path / CONTROL_SOCKET).read_text() == "mine"


async def test_a_path_too_long_for_a_unix_socket_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    with trio.fail_after(10):
        with pytest.raises(UsageError, match="shorter path"):
            await serve_control(FakeNode(), deep / CONTROL_SOCKET)
        with pytest.raises(UsageError, match="shorter path"):
            await control_call(deep, {"op": "ping"})


async def test_malformed_requests_get_usage_errors_and_the_server_keeps_serving(
    served: tuple[FakeNode, Path],
) -> None:
    _, d = served
    bad = {
        b"not json": "not JSON",
        b"[1, 2]": "a request is a JSON object",
        b'{"op": 5}': "'op'",
        b'{"key": "a"}': "'op'",
        b'{"op": "launch"}': "unknown op 'launch'",
        b'{"op": "get"}': "needs 'key'",
        b'{"op": "get", "key": 5}': "'key' is text",
        b'{"op": "get", "key": "a", "extra": 1}': "takes no field 'extra'",
        b'{"op": "get", "key": ""}': "non-empty",  # the node's own check
        b'{"op": "get", "key": "' + b"k" * 2000 + b'"}': "128 bytes of UTF-8; this one is 2,000",
        b'{"op": "put", "key": "a"}': "needs a 'value'",
        b'{"op": "put", "key": "a", "value": NaN}': "NaN is not JSON",
        b'{"op": "put", "key": "a", "value": 1, "value": 2}': "duplicate key",
        b'{"op": "list", "limit": true}': "'limit' is a whole number",
        b'{"op": "list", "limit": 0}': "'limit' is 1..",
        b'{"op": "list", "deleted": "yes"}': "'deleted' is true or false",
        b'{"op": "get", "key": "a", "topic": 7}': "'topic' is text",
        b'{"op": "get", "key": "a", "topic": "cc"}': "no topic 'cc'",
        b'{"op": "member", "peer_id": "xyz", "role": "member"}': "not a peer ID",
        b'{"op": "member", "peer_id": "%s", "role": "king"}' % peer_id_text(BOB).encode(): "'role'",
        b'{"op": "member", "peer_id": "%s", "role": "member"}' % peer_id_text(NOBODY).encode(): (
            "not a master"
        ),
        b"[" * 100_000: "not JSON",
    }
    with trio.fail_after(10):
        stream, reader = await _raw(d)
        async with stream:
            for line, message in bad.items():
                answer = await _ask(stream, reader, line)
                assert answer["ok"] is False and answer["kind"] == "usage", line[:60]
                assert message in answer["error"], (line[:60], answer["error"])
            assert (await _ask(stream, reader, b'{"op": "ping"}'))["ok"]  # same connection

            await stream.send_all(b"x" * (MAX_LINE + 10))
            answer = await reader.line()
            assert answer is not None
            assert f"at most {MAX_LINE} bytes" in json.loads(answer)["error"]
            assert await reader.line() is None  # and the connection is closed
        assert await control_call(d, {"op": "ping"})


async def test_node_failures_are_failures_not_usage(served: tuple[FakeNode, Path]) -> None:
    _, d = served
    with trio.fail_after(10):
        with pytest.raises(PttsyncError, match="the node failed: RuntimeError") as info:
            await control_call(d, {"op": "put", "key": "boom", "value": 1})
        assert not isinstance(info.value, UsageError)
        assert await control_call(d, {"op": "ping"})


async def test_a_request_that_takes_too_long_is_answered_with_a_failure(
    served: tuple[FakeNode, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, d = served
    monkeypatch.setattr(control, "REQUEST_TIMEOUT", 0.2)
    with trio.fail_after(10):
        with pytest.raises(PttsyncError, match=r"did not answer within 0\.2 s"):
            await control_call(d, {"op": "put", "key": "slow", "value": 1})
        with pytest.raises(PttsyncError, match=r"did not answer within 0\.1 s"):
            await control_call(d, {"op": "put", "key": "slow", "value": 1}, timeout=0.1)
        assert await control_call(d, {"op": "ping"})


async def test_clients_over_the_limit_are_told_to_try_again(
    served: tuple[FakeNode, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, d = served
    monkeypatch.setattr(control, "MAX_CLIENTS", 1)
    with trio.fail_after(10):
        stream, reader = await _raw(d)
        async with stream:
            assert (await _ask(stream, reader, b'{"op": "ping"}'))["ok"]  # it is being served
            with pytest.raises(PttsyncError, match="1 control clients at most"):
                await control_call(d, {"op": "ping"})
        assert await control_call(d, {"op": "ping"})


async def test_no_node_running_is_a_clear_error(tmp_path: Path) -> None:
    with trio.fail_after(10):
        with pytest.raises(NodeNotRunningError) as info:
            await control_call(tmp_path, {"op": "status"})
        assert str(info.value) == (
            f"no node is running on {tmp_path}"
            f" (start one with: pttsync run --data {tmp_path} --listen HOST:PORT)"
        )
        with pytest.raises(DataDirError, match="no pttsync data directory"):
            await control_call(tmp_path / "missing", {"op": "status"})


async def test_a_long_list_is_cut_to_fit_a_line_and_paged(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, d = served
    big = "x" * 250_000  # 500 kB a document (its value, and its version's): 4 a line
    with trio.fail_after(10):
        for i in range(12):
            await control_call(d, {"op": "put", "key": f"k{i:02}", "value": big})
        pages: list[dict[str, Any]] = [await control_call(d, {"op": "list"})]
        while pages[-1]["more"]:
            after = pages[-1]["items"][-1]["key"]
            pages.append(await control_call(d, {"op": "list", "after": after}))
        assert len(pages) >= 3 and all(page["items"] for page in pages)
        keys = [doc["key"] for page in pages for doc in page["items"]]
        assert keys == [f"k{i:02}" for i in range(12)]
        assert await _cli("list", "--data", str(d), "--limit", "11", "--json") == 0
    assert [doc["key"] for doc in json.loads(capsys.readouterr().out)] == keys[:11]


# ---------------------------------------------------------------------------
# Watching.


@asynccontextmanager
async def _watching(
    d: Path, request: dict[str, Any]
) -> AsyncIterator[trio.MemoryReceiveChannel[Any]]:
    """Watch in a task (the stream only connects once iterated): events, then any error."""
    send, receive = trio.open_memory_channel[Any](100)

    async def consume() -> None:
        async with send, aclosing(control_stream(d, request)) as events:
            try:
                async for event in events:
                    await send.send(event)
            except PttsyncError as exc:
                await send.send(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        yield receive
        nursery.cancel_scope.cancel()


async def test_watch_streams_changes_until_the_client_hangs_up(
    served: tuple[FakeNode, Path],
) -> None:
    node, d = served
    with trio.fail_after(10):
        async with _watching(d, {"op": "watch"}) as events:
            await node.until(lambda: len(node.watchers) == 1)
            await node.put("a", {"v": 1})
            await node.put("a", "other topic", topic=node.topics[1].topic_id)
            await node.delete("a")
            first = await events.receive()
            second = await events.receive()
        assert first["kind"] == "put" and first["key"] == "a" and first["local"] is True
        assert first["state"]["value"] == {"v": 1}
        assert second["kind"] == "delete" and second["state"]["exists"] is False
        await node.until(lambda: not node.watchers)  # the server saw the hang-up


async def test_watch_of_a_topic(served: tuple[FakeNode, Path]) -> None:
    node, d = served
    with trio.fail_after(10):
        async with _watching(d, {"op": "watch", "topic": "bb"}) as events:
            await node.until(lambda: len(node.watchers) == 1)
            await node.put("a", "main")
            await node.put("b", "other", topic=node.topics[1].topic_id)
            event = await events.receive()
        assert (event["key"], event["state"]["value"]) == ("b", "other")


async def test_watch_of_an_unknown_topic_is_refused(served: tuple[FakeNode, Path]) -> None:
    _, d = served
    with trio.fail_after(10):
        async with _watching(d, {"op": "watch", "topic": "cc"}) as events:
            error = await events.receive()
        assert isinstance(error, UsageError) and "no topic 'cc'" in str(error)


async def test_a_watcher_that_falls_behind_gets_an_error(served: tuple[FakeNode, Path]) -> None:
    node, d = served
    node.watch_buffer = 2
    with trio.fail_after(10):
        async with _watching(d, {"op": "watch"}) as events:
            await node.until(lambda: len(node.watchers) == 1)
            for i in range(10):  # no checkpoint in between: the buffer of 2 overflows
                node._store(None, f"k{i}", node._version(i), ChangeKind.PUT)
            got: list[Any] = []
            while not got or isinstance(got[-1], dict):
                got.append(await events.receive())
        # What was buffered (and perhaps one the server was already waiting for), then the error.
        assert [e["key"] for e in got[:-1]] in (["k0", "k1"], ["k0", "k1", "k2"])
        assert isinstance(got[-1], UsageError) and "fell too far behind" in str(got[-1])


async def test_watch_ends_when_the_node_stops_watching(served: tuple[FakeNode, Path]) -> None:
    node, d = served
    with trio.fail_after(10):
        async with _watching(d, {"op": "watch"}) as events:
            await node.until(lambda: len(node.watchers) == 1)
            await node.put("a", 1)
            node.end_watches()
            assert [e["key"] async for e in events] == ["a"]


# ---------------------------------------------------------------------------
# The CLI over the socket.


async def test_cli_put_get_delete(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    node, d = served
    data = str(d)
    with trio.fail_after(10):
        assert await _cli("put", "--data", data, "greeting", '"hello"') == 0
        out = capsys.readouterr().out
        assert out.startswith("put greeting: confirmed (oplog ")
        assert node.docs[node.topics[0].topic_id, "greeting"].value == "hello"

        assert await _cli("put", "--data", data, "n", '{"a": [1, 2.5, null]}', "--json") == 0
        assert json.loads(capsys.readouterr().out)["status"] == "confirmed"

        assert await _cli("get", "--data", data, "greeting") == 0
        assert capsys.readouterr().out == '"hello"\n'
        assert await _cli("get", "--data", data, "n") == 0
        assert json.loads(capsys.readouterr().out) == {"a": [1, 2.5, None]}

        assert await _cli("get", "--data", data, "missing") == 1
        out, err = capsys.readouterr()
        assert out == "" and "not found: missing" in err

        assert await _cli("put", "--data", data, "--topic", "bb", "t", "1") == 0
        assert await _cli("get", "--data", data, "--topic", "bb", "t") == 0
        assert capsys.readouterr().out.endswith("1\n")

        assert await _cli("delete", "--data", data, "greeting") == 0
        assert capsys.readouterr().out.startswith("deleted greeting: confirmed")
        assert await _cli("get", "--data", data, "greeting") == 1
        assert "not found: greeting (deleted by" in capsys.readouterr().err


async def test_cli_put_needs_json(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, d = served
    with trio.fail_after(10):
        assert await _cli("put", "--data", str(d), "greeting", "hello") == 2
    err = capsys.readouterr().err
    assert "VALUE is JSON text" in err and """'"hello"'""" in err


async def test_cli_get_json_shows_pending_and_conflicts(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    node, d = served
    node.add_conflict("doc")
    with trio.fail_after(10):
        assert await _cli("get", "--data", str(d), "doc", "--json") == 0
        doc = json.loads(capsys.readouterr().out)
        assert doc["pending"] is True and doc["in_conflict"] is True
        assert [v["value"] for v in doc["conflicts"]] == ["mine"]
        assert doc["version"]["pending"] is True and len(doc["heads"]) == 2
        assert await _cli("get", "--data", str(d), "doc") == 0
    out, err = capsys.readouterr()
    assert out == '"next"\n' and "pending" in err and "conflict: 1 other version" in err


async def test_cli_list(served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]) -> None:
    node, d = served
    for i in range(5):
        await node.put(f"item/{i}", {"i": i})
    await node.put("other", "x" * 100)
    await node.delete("item/4")
    data = str(d)
    with trio.fail_after(10):
        assert await _cli("list", "--data", data) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == 'item/0  {"i": 0}' and len(lines) == 5
        assert lines[-1].startswith('other  "xxx') and lines[-1].endswith("…")

        assert await _cli("list", "--data", data, "--prefix", "item/", "--deleted", "--json") == 0
        docs = json.loads(capsys.readouterr().out)
        assert [doc["key"] for doc in docs] == [f"item/{i}" for i in range(5)]
        assert docs[-1]["exists"] is False

        assert await _cli("list", "--data", data, "--limit", "2", "--after", "item/0") == 0
        assert [ln.split()[0] for ln in capsys.readouterr().out.splitlines()] == [
            "item/1",
            "item/2",
        ]
        assert await _cli("list", "--data", data, "--prefix", "zzz") == 0
        assert capsys.readouterr().out == "no documents under 'zzz'\n"


async def test_cli_status_and_peers(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, d = served
    with trio.fail_after(10):
        assert await _cli("status", "--data", str(d)) == 0
        out = capsys.readouterr().out
        assert f"peer id:  {peer_id_text(ALICE)}" in out
        assert "listen:   127.0.0.1:7400" in out and "peers:    1 connected" in out
        assert "visits:   2 made, 5 taken (1 displaced by newer ones)" in out
        assert f"topic {'aa' * 32}  main: 3 valid, 1 pending, digest {'cd' * 4}…{'cd' * 2}" in out

        assert await _cli("status", "--data", str(d), "--json") == 0
        assert len(json.loads(capsys.readouterr().out)["topics"]) == 2

        assert await _cli("peers", "--data", str(d)) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "connected (2)"
        assert lines[1].split() == ["PEER", "DIRECTION", "LISTEN", "CONNECTED", "SENT", "RECEIVED"]
        # The fake peers have no direction: the column is blank for them.
        assert lines[2].split()[:2] == [peer_id_text(BOB), "127.0.0.1:7401"]
        assert lines[3].split()[:2] == [peer_id_text(ALICE), "[::1]:7402"]
        assert lines[5] == "known, not connected (1)"
        assert lines[7].split() == [
            "nowhere:7400", "(--join)", "-", "3", "in", "5", "s", "Name", "or", "service",
            "not", "known", "(2", "s", "ago)",
        ]  # fmt: skip
        assert lines[9] == "refused at the door in the last hour (1)"
        # The full peer ID: a master pastes it into `member add`.
        assert lines[11].split()[:4] == [peer_id_text(BOB), "10.0.0.9:7400", "4", "61"]
        assert lines[12] == f"(a master admits one with: pttsync member add --data {d} PEER_ID)"

        assert await _cli("peers", "--data", str(d), "--json") == 0
        view = json.loads(capsys.readouterr().out)
        assert [len(view[k]) for k in ("connected", "known", "refused")] == [2, 1, 1]


async def test_cli_member(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    node, d = served
    bob = peer_id_text(BOB)
    with trio.fail_after(10):
        assert await _cli("member", "add", bob, "--data", str(d)) == 0
        assert capsys.readouterr().out == f"{bob}: made a member (valid)\n"
        assert await _cli("member", "add", bob, "--master", "--data", str(d), "--json") == 0
        assert json.loads(capsys.readouterr().out)["role"] == "master"
        assert await _cli("member", "remove", bob, "--data", str(d), "--topic", "bb") == 0
        assert "removed from the topic" in capsys.readouterr().out
        assert [r for _, r, _ in node.roles] == [Role.MEMBER, Role.MASTER, Role.NONE]
        assert node.roles[-1][2] == node.topics[1].topic_id

        assert await _cli("member", "add", "not-a-peer", "--data", str(d)) == 2
        assert "not a peer ID" in capsys.readouterr().err
        assert await _cli("member", "add", peer_id_text(NOBODY), "--data", str(d)) == 2
        assert "not a master" in capsys.readouterr().err


async def test_cli_watch_prints_json_lines(
    served: tuple[FakeNode, Path], capsys: pytest.CaptureFixture[str], nursery: trio.Nursery
) -> None:
    node, d = served
    codes: list[int] = []
    done = trio.Event()

    async def watch() -> None:
        codes.append(await _cli("-q", "watch", "--data", str(d), "--json"))
        done.set()

    with trio.fail_after(10):
        nursery.start_soon(watch)
        await node.until(lambda: len(node.watchers) == 1)
        await node.put("a", [1, 2])
        await node.delete("a")
        node.end_watches()  # the node stops: the watch ends with exit 1
        await done.wait()
    out, err = capsys.readouterr()
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["kind"], e["key"]) for e in events] == [("put", "a"), ("delete", "a")]
    assert codes == [1] and "stopped" in err


async def test_cli_with_no_node_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with trio.fail_after(10):
        for argv in (["status"], ["get", "k"], ["put", "k", "1"], ["watch"], ["list"]):
            assert await _cli(*argv, "--data", str(tmp_path)) == 2
            err = capsys.readouterr().err
            assert f"no node is running on {tmp_path} (start one with: pttsync run" in err


# ---------------------------------------------------------------------------
# The run, launch and demo parsers (their handlers are in run.py).


def test_addresses_are_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(
        ["run", "--data", "d", "--listen", "[::1]:7400", "--join", "a:1", "--join", "b:2"]
    )
    assert args.listen == ("::1", 7400) and args.join == [("a", 1), ("b", 2)]
    assert args.max_peers == 16 and args.sync_interval == 10.0 and args.no_push is False
    assert parser.parse_args(["run", "--data", "d", "--listen", "0.0.0.0:0"]).listen == (
        "0.0.0.0",
        0,
    )
    for bad, message in (
        ("7400", "is not HOST:PORT"),
        ("host:", "the port is a whole number"),
        ("host:70000", "the port is a whole number"),
        ("::1:7400", "brackets"),
        (":7400", "is not HOST:PORT"),
        ("[]:7400", "no valid host"),
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(["run", "--data", "d", "--join", bad])
        assert message in capsys.readouterr().err, bad
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--data", "d", "--join", "h:0"])


def test_counts_are_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["launch", "3", "--dir", "x"])
    assert (args.n, args.base_port, args.host, args.sync_interval) == (3, 7400, "127.0.0.1", None)
    assert parser.parse_args(["run", "--data", "d"]).visit_interval == 60.0
    assert parser.parse_args(["run", "--data", "d", "--visit-interval", "0"]).visit_interval == 0
    args = parser.parse_args(["demo"])
    assert (args.peers, args.writes, args.base_port, args.dir, args.seed) == (5, 20, 0, None, None)
    for argv in (
        ["launch", "0", "--dir", "x"],
        ["launch", "65", "--dir", "x"],
        ["demo", "--peers", "0"],
        ["demo", "--writes", "-1"],
        ["run", "--data", "d", "--sync-interval", "0"],
        ["run", "--data", "d", "--sync-interval", "nan"],
        ["run", "--data", "d", "--max-peers", "0"],
        ["run", "--data", "d", "--visit-interval", "-1"],
        ["run", "--data", "d", "--visit-interval", "0.0001"],
        ["simulate", "--visit-interval", "inf"],
    ):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert "error:" in capsys.readouterr().err


def test_launch_checks_its_ports_fit(run: Any) -> None:
    code, _, err = run("launch", "10", "--dir", "x", "--base-port", "65530")
    assert code == 2 and "leaves no room for 10 ports" in err
