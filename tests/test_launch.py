"""`pttsync launch` as a supervisor, on real processes: crash a peer and watch it come back.

The policy itself (backoff, giving up) is tested on fake processes in
test_supervisor.py; here real `pttsync run` processes are killed with -9.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from contextlib import asynccontextmanager, suppress
from typing import TYPE_CHECKING

import pytest
import trio

from pttsync.cli.supervisor import GIVE_UP_AFTER
from pttsync.net.controlclient import control_call

from .prochelpers import PTTSYNC, alive, append_fd, cli, free_ports, poll, read_until, short_root

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with short_root(tmp_path) as path:
        yield path


class Launch:
    """A running `pttsync launch N` and what it has printed so far."""

    def __init__(self, proc: trio.Process, net: Path, n: int) -> None:
        self.proc, self.net, self.output = proc, net, bytearray()
        self.peers = [net / f"peer-{i}" for i in range(n)]
        self.pids: list[int] = []
        assert proc.stdout is not None
        self.stdout = proc.stdout

    async def until(self, marker: str, seconds: float = 30) -> None:
        with trio.fail_after(seconds):
            await read_until(self.stdout, self.output, marker.encode())

    def text(self) -> str:
        return self.output.decode()

    async def status(self, i: int) -> dict[str, object]:
        result: dict[str, object] = await control_call(self.peers[i], {"op": "status"}, timeout=5)
        return result


@asynccontextmanager
async def launch(root: Path, n: int, *extra: str) -> AsyncIterator[Launch]:
    """`pttsync launch n` until its table is out; every process it left is killed at the end."""
    net = root / "net"
    cmd = [*PTTSYNC, "launch", str(n), "--dir", str(net), "--base-port", str(free_ports(n))]
    cmd += ["--sync-interval", "1", *extra]
    err = append_fd(root / "launch.err")
    try:
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stderr=err)
    finally:
        os.close(err)
    run = Launch(proc, net, n)
    try:
        await run.until("Ctrl-C (or SIGTERM) stops them")
        rows = [line.split() for line in run.text().splitlines() if line.startswith("peer-")]
        run.pids = [int(r[3]) for r in rows]
        yield run
    finally:
        with trio.CancelScope(shield=True):
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
            for pid in run.pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            await run.stdout.aclose()


async def test_a_peer_killed_with_sigkill_is_restarted_and_catches_up(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with launch(root, 3) as net:
        victim = net.pids[2]
        os.kill(victim, signal.SIGKILL)
        await net.until("peer-2 exited (killed by SIGKILL)")
        assert f"its log: {net.peers[2] / 'node.log'}; restarting in 1 s" in net.text()
        # The others run on: a write on the master while peer-2 is down or starting.
        assert await cli("put", "--data", str(net.peers[0]), "while-down", "1") == 0
        await net.until("peer-2 is up again")
        line = next(x for x in net.text().splitlines() if x.startswith("peer-2 restarted"))
        new_pid = int(line.rsplit("pid ", 1)[1].rstrip(")"))
        net.pids.append(new_pid)
        assert new_pid != victim and not alive(victim)
        assert net.pids[:2] == [p for p in net.pids[:2] if alive(p)]  # not restarted

        status = await net.status(2)
        assert status["restarts"] == 1
        capsys.readouterr()
        assert await cli("status", "--data", str(net.peers[2])) == 0
        assert "restarts: 1 (by its supervisor)" in capsys.readouterr().out

        async def caught_up() -> bool:
            tops = [(await net.status(i))["topics"] for i in range(3)]
            digests = {t[0]["digest"] for t in tops}  # type: ignore[index]
            return len(digests) == 1

        await poll(caught_up, 30, "the restarted peer catches up with the others")

        net.proc.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await net.proc.wait()
            while chunk := await net.stdout.receive_some():
                net.output += chunk
        assert net.proc.returncode == 0, (root / "launch.err").read_text()
        assert [pid for pid in net.pids if alive(pid)] == []
        # The table at the end shows the restart.
        rows = [x.split() for x in net.text().splitlines() if x.startswith("peer-2 ")]
        assert rows[-1][4:6] == ["1", "stopped"]


async def test_without_restarts_a_killed_peer_stays_down_and_killing_launch_ends_the_rest(
    root: Path,
) -> None:
    async with launch(root, 3, "--no-restart") as net:
        os.kill(net.pids[1], signal.SIGKILL)
        await net.until("peer-1 exited (killed by SIGKILL)")
        assert "left down (--no-restart)" in net.text()
        for i in (0, 2):  # the others still serve
            assert (await net.status(i))["restarts"] == 0
        # launch killed with -9: its peers see their lifeline close and stop cleanly.
        net.proc.kill()
        with trio.fail_after(15):
            await net.proc.wait()

        async def all_gone() -> bool:
            return not any(alive(pid) for pid in net.pids)

        await poll(all_gone, 15, "the peers of a killed launch stop")
        for i in (0, 2):
            log = (net.peers[i] / "node.log").read_text()
            assert "stopping (the supervisor's lifeline closed)" in log
            assert not (net.peers[i] / "control.sock").exists()  # a clean stop


async def test_status_of_a_node_never_restarted_has_no_restarts_line(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with launch(root, 1) as net:
        assert await cli("status", "--data", str(net.peers[0])) == 0
        assert "restarts:" not in capsys.readouterr().out
        assert await cli("status", "--data", str(net.peers[0]), "--json") == 0
        assert json.loads(capsys.readouterr().out)["restarts"] == 0


async def test_a_peer_that_cannot_start_is_given_up_and_the_others_run_on(root: Path) -> None:
    # peer-1's port is taken: it exits at every start, is retried with backoff, then left down.
    base = free_ports(2)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 1))
        taken.listen()
        cmd = [*PTTSYNC, "launch", "2", "--dir", str(root / "net"), "--base-port", str(base)]
        proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE)
        assert proc.stdout is not None
        run = Launch(proc, root / "net", 2)
        try:
            await run.until(f"failed to start {GIVE_UP_AFTER} times in a row: left down", 90)
            assert "peer-1 exited (exit code 2)" in run.text()
            assert "1 of 2 peers are up" in run.text()
            assert (await run.status(0))["restarts"] == 0  # peer-0 still serves
            proc.send_signal(signal.SIGTERM)
            with trio.fail_after(20):
                await proc.wait()
            assert proc.returncode == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                await proc.wait()
            await run.stdout.aclose()
