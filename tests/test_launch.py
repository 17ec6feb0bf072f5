"""`pttsync launch` on real processes: a supervisor in the foreground or detached.

Crash a peer and watch it come back; detach a launch and steer it with
`launch ps|logs|stop|start|down`.  The policy itself (backoff, giving up,
stop and start) is tested on fake processes in test_supervisor.py; here real
`pttsync run` processes are killed with -9.  Every wait is bounded, and
every test kills whatever a launch left running, even when it fails.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from pttsync.cli import build_parser, launchstate
from pttsync.cli.launch import cmd_launch
from pttsync.cli.launchctl import cmd_ps
from pttsync.cli.launchlogs import _Log, stamped
from pttsync.cli.supervisor import GIVE_UP_AFTER
from pttsync.errors import UsageError
from pttsync.net.controlclient import control_call

from .prochelpers import (
    PTTSYNC,
    alive,
    append_fd,
    cli,
    free_ports,
    poll,
    read_until,
    short_root,
    wait_for,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator


Run = Any  # conftest's `run`: the CLI in process, (exit code, stdout, stderr)


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
        assert rows[-1][4:6] == ["stopped", "1"]


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


# -- launch --detach, and the forms that act on it ------------------------------------


def gone(pid: int) -> bool:
    """The process `pid` has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:
        return not alive(pid)


def pttsync(*argv: str, seconds: float = 60) -> subprocess.CompletedProcess[str]:
    """The CLI as a process, bounded in time."""
    cmd = [*PTTSYNC, *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds, check=False)


def kill_launch(net: Path) -> None:
    """SIGKILL whatever a launch on `net` left running: its supervisor and its peers."""
    with suppress(Exception):
        if launchstate.running(net):
            os.kill(int((net / launchstate.LOCK_FILE).read_text()), signal.SIGKILL)
    with suppress(Exception):
        state = launchstate.read_state(net)
        assert state is not None
        for peer in state["peers"]:
            if peer["pid"] is not None and not gone(peer["pid"]):
                os.kill(peer["pid"], signal.SIGKILL)


@pytest.fixture
def net(root: Path) -> Iterator[Path]:
    """Where a test's launch goes; whatever it leaves running is killed at the end."""
    path = root / "net"
    try:
        yield path
    finally:
        kill_launch(path)


def detach(net: Path, n: int, *extra: str) -> subprocess.CompletedProcess[str]:
    base = str(free_ports(n))
    argv = ["launch", str(n), "--dir", str(net), "--base-port", base, "--sync-interval", "1"]
    return pttsync(*argv, "--detach", *extra)


def ps(run: Run, net: Path) -> dict[str, Any]:
    code, out, err = run("launch", "ps", "--dir", str(net), "--json")
    assert code == 0, err
    view: dict[str, Any] = json.loads(out)
    return view


def test_detach_then_ps_stop_start_and_down(net: Path, run: Run) -> None:
    ports = free_ports(4)  # two peers, then their metrics
    done = detach(net, 2, "--json", "--base-port", str(ports), "--metrics-port", str(ports + 2))
    assert done.returncode == 0, done.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{ports + 3}/metrics", timeout=10) as answer:
        families = {f.name for f in text_string_to_metric_families(answer.read().decode())}
    assert {"pttsync_node_info", "pttsync_connections", "process_resident_memory_bytes"} <= families
    shown = json.loads(done.stdout)
    assert shown["running"] and [p["state"] for p in shown["peers"]] == ["up", "up"]
    assert "all peers are up; `pttsync launch down --dir" in done.stderr
    state = launchstate.read_state(net)
    assert state is not None and state["supervisor"]["detached"]
    supervisor, pids = state["supervisor"]["pid"], [p["pid"] for p in state["peers"]]
    assert not gone(supervisor) and not any(gone(pid) for pid in pids)
    for name in ("launch.json", "launch.lock", "launch.sock", "launch.log"):
        assert (net / name).exists(), name

    view = ps(run, net)
    assert view["running"] and [p["pid"] for p in view["peers"]] == pids
    assert [(p["name"], p["role"], p["state"]) for p in view["peers"]] == [
        ("peer-0", "master", "up"),
        ("peer-1", "member", "up"),
    ]
    code, out, _ = run("launch", "ps", "--dir", str(net))
    assert code == 0
    assert f"launch on {net}: running, supervisor pid {supervisor} (detached" in out
    assert out.splitlines()[1].split() == [
        *("PEER", "ROLE", "LISTEN", "PID", "STATE", "RESTARTS", "UPTIME", "PEER", "ID")
    ]
    assert out.splitlines()[3].split()[:6] == [
        *("peer-1", "member", view["peers"][1]["listen"], str(pids[1]), "up", "0")
    ]

    # stop: answered once the peer has exited; it stays stopped.
    assert run("launch", "stop", "peer-1", "--dir", str(net))[:2] == (
        0,
        "peer-1 stopped (exit code 0)\n",
    )
    assert gone(pids[1]) and not gone(pids[0])
    # (That a stopped peer is not restarted later is test_supervisor's, on a fake clock.)
    after = ps(run, net)["peers"]
    assert [(p["state"], p["pid"]) for p in after] == [("up", pids[0]), ("stopped", None)]
    assert run("launch", "stop", "1", "--dir", str(net))[:2] == (
        0,
        "peer-1 is not running (stopped)\n",
    )

    # start: answered once the peer is up again, on its port.
    code, out, err = run("launch", "start", "1", "--dir", str(net), "--json")
    assert code == 0, err
    started = json.loads(out)
    assert started["state"] == "up" and started["listen"] == view["peers"][1]["listen"]
    assert started["pid"] not in pids and not gone(started["pid"])
    assert [p["state"] for p in ps(run, net)["peers"]] == ["up", "up"]
    code, out, _ = run("launch", "start", "peer-1", "--dir", str(net))
    assert (code, out) == (0, f"peer-1 is already up (pid {started['pid']})\n")

    # One launch a directory, detached or not.
    again = detach(net, 2)
    assert again.returncode == 2
    assert f"a launch is already running on {net} (supervisor pid {supervisor})" in again.stderr

    # down: every peer and the supervisor gone; the state stays, not running.
    code, out, err = run("launch", "down", "--dir", str(net))
    assert (code, out) == (0, "stopped 2 peers and the supervisor\n"), err
    wait_for(lambda: gone(supervisor), 10, "the supervisor ends")
    assert gone(pids[0]) and gone(started["pid"])
    assert not (net / "launch.sock").exists()
    view = ps(run, net)
    assert not view["running"] and [p["state"] for p in view["peers"]] == ["stopped"] * 2
    code, out, _ = run("launch", "ps", "--dir", str(net))
    assert f"launch on {net}: not running (its supervisor, pid {supervisor}, ended" in out
    for argv in (["stop", "peer-1"], ["start", "1"], ["down"]):
        code, _, err = run("launch", *argv, "--dir", str(net))
        assert code == 2
        assert f"pttsync: error: no launch is running on {net}:" in err


def read_until_line(proc: subprocess.Popen[bytes], output: bytearray, marker: str) -> None:
    """Read `proc`'s stdout into `output` until `marker` is in it, for at most 15 s."""
    assert proc.stdout is not None
    deadline = time.monotonic() + 15
    while marker.encode() not in output:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"no {marker!r} in the output:\n{output.decode()}")
        if select.select([proc.stdout], [], [], left)[0]:
            output += os.read(proc.stdout.fileno(), 65536)


def test_logs_prefix_each_peer_and_follow_them(net: Path, run: Run) -> None:
    done = detach(net, 2)
    assert done.returncode == 0, done.stderr
    assert "all peers are up" in done.stdout and done.stdout.startswith("PEER ")

    code, out, _ = run("launch", "logs", "--dir", str(net))
    assert code == 0
    for i in range(2):
        assert f"peer-{i} | pttsync node " in out  # the banner `run` prints
    assert all(line.startswith(("peer-0 | ", "peer-1 | ")) for line in out.splitlines())
    code, out, _ = run("launch", "logs", "--dir", str(net), "--tail", "1")
    # One line of each, in the order they were written (either may be the later).
    assert sorted(line[:9] for line in out.splitlines()) == ["peer-0 | ", "peer-1 | "]
    code, out, _ = run("launch", "logs", "peer-1", "--dir", str(net), "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and {line["peer"] for line in lines} == {"peer-1"}
    assert any("listening on" in line["line"] for line in lines)
    code, _, err = run("launch", "logs", "peer-9", "--dir", str(net))
    assert code == 2
    assert f"no peer 'peer-9' in the launch on {net}: its peers are peer-0, peer-1" in err

    # -f: the last line of each, then what is written later, until Ctrl-C.
    cmd = [*PTTSYNC, "launch", "logs", "--dir", str(net), "-f", "--tail", "1"]
    follow = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    output = bytearray()
    try:
        read_until_line(follow, output, "peer-1 | ")  # it has read both logs
        with open(net / "peer-1" / "node.log", "a") as log:
            log.write("written-later\n")
        read_until_line(follow, output, "peer-1 | written-later\n")
        follow.send_signal(signal.SIGINT)
        code = follow.wait(timeout=10)
        assert code == 0, (output.decode(), follow.stderr.read().decode())  # type: ignore[union-attr]
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
        assert follow.stdout is not None and follow.stderr is not None
        follow.stdout.close()
        follow.stderr.close()

    assert run("launch", "down", "--dir", str(net))[0] == 0


def test_the_forms_without_a_running_launch_fail_clearly(root: Path, run: Run) -> None:
    code, _, err = run("launch", "ps", "--dir", str(root / "nowhere"))
    assert code == 2 and f"{root / 'nowhere'} is not a directory" in err
    code, _, err = run("launch", "ps", "--dir", str(root))
    assert code == 2 and f"no launch on {root} (no launch.json)" in err
    # The state a supervisor killed with -9 leaves: peers recorded as up.
    peers = [
        {"name": f"peer-{i}", "index": i, "role": "member", "listen": f"127.0.0.1:{7400 + i}"}
        | {"pid": 99999999, "state": "up", "restarts": 0, "last_exit": None}
        | {"started": "2025-01-01T00:00:00Z", "peer_id": "x", "log": str(root / "node.log")}
        for i in range(2)
    ]
    supervisor = {"pid": 99999999, "started": "2025-01-01T00:00:00Z", "ended": None}
    state = {"format": 1, "dir": str(root), "supervisor": supervisor, "settings": {}}
    launchstate.write_state(root, state | {"settled": True, "peers": peers})

    code, out, _ = run("launch", "ps", "--dir", str(root))
    assert code == 0
    assert f"launch on {root}: not running (its supervisor, pid 99999999, was killed;" in out
    assert [line.split()[3:5] for line in out.splitlines()[2:]] == [["-", "stopped"]] * 2
    for argv in (["stop", "peer-1"], ["start", "1"], ["down"]):
        code, _, err = run("launch", *argv, "--dir", str(root))
        assert (code, err.count("\n")) == (2, 1)
        assert f"pttsync: error: no launch is running on {root}:" in err
    code, _, err = run("launch", "stop", "9", "--dir", str(root))
    assert code == 2 and "no peer '9' in the launch on" in err
    assert "its peers are peer-0, peer-1" in err


def test_launch_takes_a_number_or_a_form_name(run: Run, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    args = parser.parse_args(["launch", "3", "--dir", "d", "--detach"])
    assert (args.func, args.n, args.dir, args.detach) == (cmd_launch, 3, "d", True)
    args = parser.parse_args(["launch", "ps", "--dir", "d", "--json"])
    assert (args.func, args.json) == (cmd_ps, True)
    for argv, message in (
        (["launch", "0", "--dir", "d"], "argument N: must be between 1 and 64"),
        (["launch", "3"], "the following arguments are required: --dir"),
        (["launch", "sp", "--dir", "d"], "invalid choice: 'sp' (choose from 'N', 'ps'"),
        (["launch", "stop", "--dir", "d"], "the following arguments are required: PEER"),
    ):
        with pytest.raises(SystemExit) as info:
            run(*argv)
        assert info.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_a_followed_log_that_appears_grows_in_pieces_and_is_truncated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "node.log"
    log = _Log("peer-0", path)
    assert list(log.first(None)) == [] and log.new() == []
    path.write_bytes(b"one\ntw")
    assert log.new() == ["one"]
    with open(path, "ab") as f:
        f.write(b"o\nthree\n")
    assert log.new() == ["two", "three"]
    path.write_bytes(b"new\n")  # truncated (or replaced): read again from the start
    assert log.new() == ["new"]
    assert "was truncated or replaced" in capsys.readouterr().err
    path.write_bytes(b"a\nb\r\nc")
    assert list(_Log("x", path).first(None)) == ["a", "b"]  # "c" waits for its newline
    for tail, lines in ((0, []), (1, ["c"]), (2, ["b", "c"]), (9, ["a", "b", "c"])):
        fresh = _Log("x", path)
        assert list(fresh.first(tail)) + fresh.rest() == lines, tail


def test_logs_are_interleaved_in_time_order(
    tmp_path: Path, run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without -f, as docker compose does: by each line's time stamp (text or JSON logs); a
    line without one (a banner, a traceback) stays after the line before it."""
    for name, text in (
        (
            "peer-0",
            "banner 0\n2026-12-03 16:09:00,100 INFO a\nTraceback\n2026-12-03 16:09:03,000 c\n",
        ),
        ("peer-1", '{"ts":"2026-12-03T16:09:01.500Z","message":"b"}\n2026-12-03 16:09:04,000 d'),
    ):
        (tmp_path / name).mkdir()
        (tmp_path / name / "node.log").write_text(text)
    code, out, _ = run("launch", "logs", "--dir", str(tmp_path))
    assert code == 0
    assert [line.split(" | ")[0] + ":" + line.split(" | ")[1][-1] for line in out.splitlines()] == [
        "peer-0:0", "peer-0:a", "peer-0:k", "peer-1:}", "peer-0:c", "peer-1:d",
    ]  # fmt: skip
    assert stamped(iter(["x", "2026-01-02 03:04:05,006 y", "z"])).__next__() == ("", "x")
    assert list(stamped(iter(["2026-01-02 03:04:05,006 y", "z"]))) == [
        ("2026-01-02T03:04:05.006", "2026-01-02 03:04:05,006 y"),
        ("2026-01-02T03:04:05.006", "z"),
    ]


def test_the_catch_up_reads_what_was_there_and_leaves_the_rest_to_follow(tmp_path: Path) -> None:
    """Was: `logs -f` read the catch-up lazily to the end of the file, so a line a peer
    wrote meanwhile came out in it, before the follow loop (and Ctrl-C then ended the
    command with 130, not 0: CI saw it once in six runs under load)."""
    path = tmp_path / "node.log"
    path.write_bytes(b"one\ntwo\nthree\nhalf")
    log = _Log("peer-0", path)
    lines = log.first(3)  # the unfinished last line counts as one
    assert next(lines) == "two"
    with path.open("ab") as f:
        f.write(b"-done\nlater\n")  # written while the catch-up is under way
    assert list(lines) == ["three"]
    assert log.new() == ["half-done", "later"]


def test_a_detached_supervisor_killed_with_sigkill_takes_its_peers_and_frees_the_dir(
    net: Path, run: Run
) -> None:
    """kill -9 of the background supervisor: its peers see their lifeline close and stop,
    `ps` says the launch is not running (the lock died with it), and a new launch starts."""
    done = detach(net, 2)
    assert done.returncode == 0, done.stderr
    state = launchstate.read_state(net)
    assert state is not None
    supervisor, pids = state["supervisor"]["pid"], [p["pid"] for p in state["peers"]]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: all(gone(pid) for pid in [supervisor, *pids]), 20, "every process ends")
    code, out, _ = run("launch", "ps", "--dir", str(net))
    assert code == 0 and f"launch on {net}: not running" in out
    again = detach(net, 2, "--json")
    assert again.returncode == 0, again.stderr
    assert [p["state"] for p in json.loads(again.stdout)["peers"]] == ["up", "up"]
    assert run("launch", "down", "--dir", str(net))[0] == 0


@given(st.binary(max_size=300) | st.sampled_from([b"[]", b"{}", b'{"format": 1}', b"null"]))
@settings(max_examples=200, deadline=None)
def test_any_state_file_is_read_or_refused_clearly(data: bytes) -> None:
    """A damaged or foreign launch.json: a state, or a UsageError that names the file."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / launchstate.STATE_FILE).write_bytes(data)
        said = ""
        try:
            state = launchstate.read_state(root)
        except UsageError as exc:
            said = str(exc)
        else:
            assert isinstance(state, dict)
        assert not said or str(root / launchstate.STATE_FILE) in said


def test_a_damaged_state_file_is_set_aside_by_the_next_launch(net: Path, run: Run) -> None:
    net.mkdir(parents=True)
    (net / launchstate.STATE_FILE).write_text("{garbage")
    code, _, err = run("launch", "ps", "--dir", str(net))
    assert code == 2 and "launch.json is not a launch's state file" in err
    done = detach(net, 1)
    assert done.returncode == 0, done.stderr
    assert "set aside as" in done.stderr
    assert (net / "launch.json.unreadable").read_text() == "{garbage"
    assert ps(run, net)["running"]
    assert run("launch", "down", "--dir", str(net))[0] == 0
