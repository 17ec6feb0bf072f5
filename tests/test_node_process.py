"""Nodes over real sockets and as real processes: loopback TCP, kill -9, launch, restart.

The helpers (bounded waits, free ports, short paths) are in prochelpers.py.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from pttsync.cli.run import make_peers
from pttsync.core.documents.docstore import DocumentStore
from pttsync.core.identity import peer_id_text
from pttsync.core.lifecycle.replica import Replica
from pttsync.core.store.integrity import scan
from pttsync.core.timeutil import parse_iso
from pttsync.datadir import DataDir
from pttsync.errors import PttsyncError
from pttsync.net.changes import wait_until
from pttsync.net.config import NodeConfig
from pttsync.net.controlclient import control_call
from pttsync.net.serve import open_node
from pttsync.synthetic import populate

from .prochelpers import (
    PTTSYNC,
    alive,
    append_fd,
    cli,
    free_ports,
    log_of,
    new_data_dir,
    node_process,
    poll,
    read_until,
    reap,
    short_root,
    start_node_process,
    stop,
    value_of,
    wait_for_control,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with short_root(tmp_path) as path:
        yield path


# ---------------------------------------------------------------------------
# 1. Several nodes in one process, over real loopback TCP and Noise.


async def test_three_nodes_converge_over_loopback_tcp(root: Path) -> None:
    dirs = [d.path for d in make_peers(root, 3)]
    with trio.fail_after(20):
        async with open_node(
            dirs[0], config=NodeConfig(listen="127.0.0.1:0", sync_interval=1.0)
        ) as n0:
            addr0 = n0.listen_address
            assert addr0 is not None and addr0.startswith("127.0.0.1:")
            assert not addr0.endswith(":0")
            cfg = NodeConfig(listen="127.0.0.1:0", join=(addr0,), sync_interval=1.0)
            async with open_node(dirs[1], config=cfg) as n1, open_node(dirs[2], config=cfg) as n2:
                nodes = [n0, n1, n2]
                # The members learn their admission from peer 0 (it wrote it at make_peers).
                await wait_until(
                    nodes,
                    lambda: (
                        all(n.topic().admits(n.peer_id) for n in nodes)
                        and all(len(n.links) == 2 for n in nodes)
                    ),
                )
                for i, node in enumerate(nodes):
                    await node.put(f"from-{i}", {"peer": i, "text": f"hello from {i}"})
                expected = {f"from-{i}": {"peer": i, "text": f"hello from {i}"} for i in range(3)}

                def converged() -> bool:
                    return (
                        all(
                            value_of(n, key) == value
                            for n in nodes
                            for key, value in expected.items()
                        )
                        and len({bytes(next(iter(n.digests().values()))) for n in nodes}) == 1
                        and all(n.pending_count() == 0 for n in nodes)
                    )

                await wait_until(nodes, converged)
                assert len({tuple(n.digests().items()) for n in nodes}) == 1

                # Each node's control socket answers, in this very process.
                for d, node in zip(dirs, nodes, strict=True):
                    ping = await control_call(d, {"op": "ping"})
                    assert ping == {"peer_id": peer_id_text(node.peer_id)}
                    for key, value in expected.items():
                        doc = await control_call(d, {"op": "get", "key": key})
                        assert doc["key"] == key and doc["value"] == value
                        assert doc["exists"] and not doc["pending"]
                    assert await control_call(d, {"op": "get", "key": "nothing"}) is None
                    status = await control_call(d, {"op": "status"})
                    assert status["listen"] == node.listen_address
                    assert status["connected"] == 2
                    assert status["topics"][0]["digest"] == next(iter(n0.digests().values())).hex()


# ---------------------------------------------------------------------------
# 2. kill -9 in the middle of a burst of acknowledged writes.

WRITERS = 3  # concurrent put loops, so the kill finds writes in flight


async def burst_then_kill(
    d: Path,
    proc: trio.Process,
    counter: Iterator[int],
    *,
    after_acks: int | None = None,
    after_seconds: float | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Put k0000, k0001, ... until SIGKILL; (acknowledged key -> value, keys tried)."""
    acked: dict[str, Any] = {}
    tried: list[str] = []
    errors: list[PttsyncError] = []
    first_ack, enough = trio.Event(), trio.Event()

    async def writer() -> None:
        while True:
            n = next(counter)
            key, value = f"k{n:04d}", {"n": n, "pad": "x" * (n % 50)}
            tried.append(key)
            try:
                await control_call(d, {"op": "put", "key": key, "value": value}, timeout=10)
            except PttsyncError as exc:  # the node died under this call: not acknowledged
                errors.append(exc)
                return
            acked[key] = value
            first_ack.set()
            if after_acks is not None and len(acked) >= after_acks:
                enough.set()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for _ in range(WRITERS):
                nursery.start_soon(writer)
            if after_acks is not None:
                await enough.wait()
            else:
                assert after_seconds is not None
                await first_ack.wait()
                await trio.sleep(after_seconds)  # a kill point in time, mid-burst
            os.kill(proc.pid, signal.SIGKILL)
            # The writers go on until each one's call fails.
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert len(errors) == WRITERS  # every writer was stopped by the kill, none by a bug
    assert acked, "no write was acknowledged before the kill"
    return acked, tried


def check_store(d: Path, acked: dict[str, Any], tried: set[str]) -> None:
    """The store opens, is consistent, and holds every acknowledged write."""
    with DataDir(d).open_store() as store:
        topic_id = store.topics()[0].topic_id
        assert store.check(topic_id) == []
        docs = DocumentStore(Replica(store, topic_id))
        try:
            for key, value in acked.items():
                state = docs.get(key)
                assert state is not None, f"acknowledged write {key} was lost"
                assert state.exists and not state.pending and state.value == value, key
            present = docs.items(prefix="k", limit=10_000)
            # Nothing that was never sent, nothing torn: at most the in-flight writes beyond.
            assert {s.key for s in present} <= tried
            for s in present:
                assert s.value == {"n": int(s.key[1:]), "pad": "x" * (int(s.key[1:]) % 50)}
        finally:
            docs.close()


async def test_kill_9_during_a_burst_loses_no_acknowledged_write(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = new_data_dir(root / "node").path
    counter = itertools.count()
    acked: dict[str, Any] = {}
    tried: set[str] = set()
    peer_id = ""
    # Three kill points: ~100 writes in, a handful in, and a fraction of a second in.
    for kill in ({"after_acks": 100}, {"after_acks": 5}, {"after_seconds": 0.2}):
        proc = await start_node_process(d)
        try:
            answered_as = await wait_for_control(d, proc)
            assert peer_id in ("", answered_as)  # the same identity on every restart
            peer_id = answered_as
            round_acked, round_tried = await burst_then_kill(d, proc, counter, **kill)
        finally:
            await reap(proc)
        acked.update(round_acked)
        tried.update(round_tried)

        # The dead node left its control socket behind: clients say nobody runs there.
        assert (d / "control.sock").exists()
        capsys.readouterr()
        assert await cli("get", "--data", str(d), "k0000") == 2
        assert "no node is running" in capsys.readouterr().err

        await trio.to_thread.run_sync(check_store, d, acked, tried)
        assert await cli("inspect", "check", "--data", str(d)) == 0
        assert (
            "records verified (IDs, hashes and signatures); store is consistent"
            in capsys.readouterr().out
        )

    assert len(acked) >= 100 + 5 + 1
    # A node starts on the same directory (stale socket, free lock) with every write.
    with trio.fail_after(15):
        async with open_node(d, listen="127.0.0.1:0") as node:
            assert peer_id_text(node.peer_id) == peer_id
            for key, value in acked.items():
                assert value_of(node, key) == value, key
            last = max(acked)
            assert (await control_call(d, {"op": "get", "key": last}))["value"] == acked[last]
            write = await node.put("after-crash", 1)
            assert write.key == "after-crash"
    assert not (d / "control.sock").exists()  # a clean stop removes it


# ---------------------------------------------------------------------------
# 3. `pttsync launch`: N processes, the CLI against them, SIGTERM stops them all.


async def test_launch_three_peers_put_get_status_and_stop(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = root / "net"
    base = free_ports(3)
    cmd = [*PTTSYNC, "launch", "3", "--dir", str(net), "--base-port", str(base)]
    cmd += ["--sync-interval", "1"]
    children: list[int] = []
    output = bytearray()
    err = append_fd(root / "launch.err")
    try:
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=err)
    finally:
        os.close(err)
    assert proc.stdout is not None
    try:
        with trio.fail_after(30):
            await read_until(proc.stdout, output, b"all peers are up")
        rows = [line.split() for line in output.decode().splitlines() if line.startswith("peer-")]
        assert [r[0] for r in rows] == ["peer-0", "peer-1", "peer-2"]
        assert [r[1] for r in rows] == ["master", "member", "member"]
        assert [r[2] for r in rows] == [f"127.0.0.1:{base + i}" for i in range(3)]
        children = [int(r[3]) for r in rows]
        assert [(r[4], r[5]) for r in rows] == [("up", "0")] * 3  # state, restarts
        ids = [r[7] for r in rows]  # after the uptime
        peers = [net / f"peer-{i}" for i in range(3)]

        async def member_knows() -> bool:
            status = await control_call(peers[1], {"op": "status"}, timeout=5)
            return bool(status["topics"][0]["role"] == "member")

        await poll(member_knows, 15, "peer-1 learns from peer-0 that it is a member")

        capsys.readouterr()
        assert await cli("put", "--data", str(peers[1]), "greeting", '"hello"') == 0
        assert capsys.readouterr().out.startswith("put greeting: ")

        async def peer2_has_it() -> bool:
            code = await cli("get", "--data", str(peers[2]), "greeting", "--json")
            out = capsys.readouterr().out
            if code != 0:
                return False
            doc = json.loads(out)
            return bool(doc["value"] == "hello" and not doc["pending"])

        await poll(peer2_has_it, 15, "peer-2 shows greeting = hello, co-signed")

        assert await cli("status", "--data", str(peers[2]), "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["peer_id"] == ids[2]
        assert status["listen"] == f"127.0.0.1:{base + 2}"
        assert isinstance(status["peers"], list) and status["peers"]
        assert {p["peer_id"] for p in status["peers"]} <= {ids[0], ids[1]}
        (topic,) = status["topics"]
        assert topic["valid"] >= 4  # genesis, two admissions, the greeting
        assert topic["pending"] == 0
        assert len(topic["digest"]) == 64

        async def all_agree() -> bool:
            tops = [(await control_call(p, {"op": "status"}))["topics"][0] for p in peers]
            return len({t["digest"] for t in tops}) == 1 and all(t["pending"] == 0 for t in tops)

        await poll(all_agree, 15, "the three peers hold the same tree")

        proc.send_signal(signal.SIGTERM)
        with trio.fail_after(12):
            await proc.wait()
            while chunk := await proc.stdout.receive_some():
                output += chunk
        assert proc.returncode == 0, (root / "launch.err").read_text()
        assert "stopping all peers" in output.decode()
        assert [pid for pid in children if alive(pid)] == []
        for p in peers:
            assert not (p / "control.sock").exists()  # each peer stopped cleanly
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with trio.CancelScope(shield=True), trio.move_on_after(12):
                await proc.wait()
        await reap(proc)
        for pid in children:  # the peers launch started for this test, if it left any
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await proc.stdout.aclose()


# ---------------------------------------------------------------------------
# 4. Clear errors: a second node on one directory; a client with no node.


async def test_a_second_run_on_a_busy_data_dir_fails_clearly(root: Path) -> None:
    d = new_data_dir(root / "busy").path
    with trio.fail_after(20):
        async with open_node(d, listen="127.0.0.1:0") as node:
            second = await trio.run_process(
                [*PTTSYNC, "run", "--data", str(d), "--listen", "127.0.0.1:0"],
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            err = second.stderr.decode()
            assert second.returncode == 2, err
            assert "already running" in err and "Traceback" not in err
            # The first node is untouched and still answers.
            ping = await control_call(d, {"op": "ping"})
            assert ping["peer_id"] == peer_id_text(node.peer_id)


def test_a_client_with_no_node_running_says_so(
    root: Path, run: Callable[..., tuple[int, str, str]]
) -> None:
    d = new_data_dir(root / "idle").path
    for argv in (["get", "k"], ["status"], ["put", "k", "1"]):
        code, out, err = run(argv[0], "--data", str(d), *argv[1:])
        assert code == 2 and out == ""
        assert "no node is running" in err and "pttsync run --data" in err
        assert "Traceback" not in err


# ---------------------------------------------------------------------------
# 5. A node stopped and started again on its data directory resumes.


async def test_a_restarted_node_resumes_with_its_data_and_identity(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = new_data_dir(root / "again").path
    values = {"a": 1, "b": {"nested": [1, 2, None]}, "c": "text"}
    async with node_process(d) as (proc, first_id):
        for key, value in values.items():
            assert await cli("put", "--data", str(d), key, json.dumps(value)) == 0
        assert await cli("delete", "--data", str(d), "c") == 0
        capsys.readouterr()
        await stop(proc, d)
    assert "stopping (SIGTERM)" in log_of(d)
    assert not (d / "control.sock").exists()

    async with node_process(d) as (proc, second_id):
        assert second_id == first_id
        assert await cli("status", "--data", str(d), "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["peer_id"] == first_id
        assert status["topics"][0]["valid"] == 1 + len(values) + 1  # genesis, puts, delete
        for key in ("a", "b"):
            assert await cli("get", "--data", str(d), key, "--json") == 0
            doc = json.loads(capsys.readouterr().out)
            assert doc["value"] == values[key] and not doc["pending"]
        assert await cli("get", "--data", str(d), "c") == 1  # deleted stays deleted
        assert "not found: c" in capsys.readouterr().err
        await stop(proc, d)


# ---------------------------------------------------------------------------
# 6. Bit rot: a byte flipped in a stopped node's store heals when it runs again.


T_OLD = parse_iso("2025-06-01")


async def test_a_record_damaged_on_disk_is_quarantined_and_replaced_from_a_peer(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dirs = [d.path for d in make_peers(root, 2)]
    master = DataDir(dirs[0])
    with master.open_store() as store:
        tid = store.topics()[0].topic_id
        populate(store, master.identity(), tid, count=50, start=T_OLD, end=T_OLD + 10**13, seed=5)
    cfg0 = NodeConfig(listen="127.0.0.1:0", sync_interval=0.5)
    with trio.fail_after(30):
        async with open_node(dirs[0], config=cfg0) as n0:
            cfg1 = NodeConfig(
                listen="127.0.0.1:0", join=(n0.listen_address or "",), sync_interval=0.5
            )
            async with open_node(dirs[1], config=cfg1) as n1:
                await wait_until([n0, n1], lambda: n0.digests() == n1.digests())
            # peer-1 is stopped: a byte of one of its records rots.
            conn = sqlite3.connect(dirs[1] / "store.sqlite3")
            with conn:
                victim, body = conn.execute(
                    "SELECT oplog_id, body FROM oplogs WHERE status=3"
                    " ORDER BY oplog_id LIMIT 1 OFFSET 7"
                ).fetchone()
                rotten = bytearray(body)
                rotten[len(rotten) // 2] ^= 0x10
                conn.execute("UPDATE oplogs SET body=? WHERE oplog_id=?", (bytes(rotten), victim))
            conn.close()
            async with open_node(dirs[1], config=cfg1) as n1:
                store1 = n1.topic().ctx.store
                # The node's first scrub finds it, quarantines it, and a round brings it back.
                await wait_until(
                    [n0, n1],
                    lambda: bool(store1.quarantined(tid)) and n0.digests() == n1.digests(),
                )
                assert [d.oplog_id for d in store1.quarantined(tid)] == [victim]
                assert scan(store1, tid) == [] and store1.check(tid) == []
                assert store1.get(tid, victim) is not None
        assert f"stored oplog {victim.hex()}" in caplog.text and "quarantined" in caplog.text
