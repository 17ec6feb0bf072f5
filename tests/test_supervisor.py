"""The supervisor's policy (pttsync/cli/supervisor.py), on fake processes and a fake clock.

Restarts with backoff, giving up, and the operator's stop and start of one
peer.  tests/test_launch.py runs the same policy on real `pttsync run`
processes.
"""

from __future__ import annotations

import itertools
import json
import signal
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.cli import launchstate
from pttsync.cli.launchsock import Controller
from pttsync.cli.supervisor import (
    GIVE_UP_AFTER,
    RESTART_BASE,
    RESTART_MAX,
    STABLE,
    STOP_TIMEOUT,
    Peer,
    State,
    Supervisor,
    describe_exit,
)

PIDS = itertools.count(1000)


@dataclass
class FakeProcess:
    """A child process; it exits 0 on SIGTERM unless `stubborn`, and always on SIGKILL."""

    pid: int
    returncode: int | None = None
    ready: bool = False
    stubborn: bool = False
    signals: list[int] = field(default_factory=list)

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGTERM and not self.stubborn and self.returncode is None:
            self.returncode = 0

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        if self.returncode is None:
            self.returncode = -signal.SIGKILL


class Harness:
    """N peers whose processes the test kills and makes ready by hand."""

    def __init__(self, n: int, *, restart: bool = True) -> None:
        self.spawned: list[tuple[int, FakeProcess]] = []
        peers = [Peer(i, Path(f"/net/peer-{i}/node.log")) for i in range(n)]
        self.sup = Supervisor(peers, self.spawn, self.is_ready, restart=restart)
        self.now = 0.0
        self.sup.start_all(self.now)

    def spawn(self, peer: Peer) -> FakeProcess:
        proc = FakeProcess(next(PIDS))
        self.spawned.append((peer.index, proc))
        return proc

    def is_ready(self, peer: Peer) -> bool:
        return isinstance(peer.proc, FakeProcess) and peer.proc.ready

    def proc(self, i: int) -> FakeProcess:
        proc = self.sup.peers[i].proc
        assert isinstance(proc, FakeProcess)
        return proc

    def step(self, dt: float = 0.0) -> list[str]:
        self.now += dt
        return [e.line for e in self.sup.step(self.now)]

    def states(self) -> list[State]:
        return [p.state for p in self.sup.peers]

    def all_ready(self) -> None:
        for p in self.sup.peers:
            if p.proc is not None:
                self.proc(p.index).ready = True
        self.step()


def test_a_killed_peer_is_reported_and_restarted_while_the_others_run() -> None:
    h = Harness(3)
    h.all_ready()
    assert [p.state for p in h.sup.peers] == [State.UP] * 3
    old = h.proc(1)
    old.returncode = -signal.SIGKILL
    assert h.step(0.2) == [
        "peer-1 exited (killed by SIGKILL); its log: /net/peer-1/node.log; restarting in 1 s"
    ]
    assert h.sup.peers[1].state is State.WAITING
    assert h.step(RESTART_BASE / 2) == []  # not yet
    (line,) = h.step(RESTART_BASE / 2)
    assert line == f"peer-1 restarted (restart 1, pid {h.proc(1).pid})"
    assert h.proc(1) is not old and h.sup.peers[1].restarts == 1
    h.proc(1).ready = True
    assert h.step(0.2) == [f"peer-1 is up again (pid {h.proc(1).pid})"]
    assert [p.state for p in h.sup.peers] == [State.UP] * 3
    assert [i for i, _ in h.spawned] == [0, 1, 2, 1]  # the others were never touched


def test_quick_exits_back_off_doubling_to_the_cap_and_a_stable_run_resets_it() -> None:
    h = Harness(1)
    h.all_ready()
    delays = []
    for _ in range(8):
        h.proc(0).ready = True
        h.step()
        h.proc(0).returncode = 1
        (line,) = h.step(0.1)
        delays.append(float(line.rsplit("in ", 1)[1].removesuffix(" s")))
        h.step(delays[-1])  # restarted
    assert delays == [min(RESTART_MAX, RESTART_BASE * 2**k) for k in range(8)]
    assert delays[-1] == RESTART_MAX
    h.proc(0).ready = True
    h.step(STABLE)  # up for STABLE seconds: the backoff starts again
    h.proc(0).returncode = 1
    assert h.step(0.1)[0].endswith(f"restarting in {RESTART_BASE:g} s")


def test_a_peer_that_never_starts_is_given_up_after_some_tries() -> None:
    h = Harness(2)
    h.proc(0).ready = True
    for attempt in range(1, GIVE_UP_AFTER + 1):
        h.proc(1).returncode = 2
        lines = h.step(0.1)
        if attempt < GIVE_UP_AFTER:
            assert lines[-1].startswith("peer-1 exited (exit code 2)")
            h.step(RESTART_MAX)
    assert lines == [
        "peer-1 exited (exit code 2); its log: /net/peer-1/node.log;"
        f" it failed to start {GIVE_UP_AFTER} times in a row: left down"
    ]
    assert h.sup.peers[1].state is State.GAVE_UP and h.sup.settled()
    assert not h.sup.idle()  # peer-0 still runs
    h.proc(0).returncode = 0
    h.step(0.1)
    h.step(RESTART_BASE)
    assert h.sup.peers[0].state is State.STARTING  # peer-0 is restarted; peer-1 stays down
    assert h.sup.peers[1].state is State.GAVE_UP


def test_with_restarts_off_a_peer_stays_down_and_all_down_is_idle() -> None:
    h = Harness(2, restart=False)
    h.all_ready()
    h.proc(0).returncode = -signal.SIGTERM
    assert h.step(0.1) == [
        "peer-0 exited (killed by SIGTERM); its log: /net/peer-0/node.log; left down (--no-restart)"
    ]
    h.step(RESTART_MAX * 10)
    assert h.sup.peers[0].state is State.DOWN and len(h.spawned) == 2
    assert not h.sup.idle()
    h.proc(1).returncode = 0
    h.step(0.1)
    assert h.sup.idle()


def test_stop_all_stops_every_live_peer_and_leaves_a_down_one_down() -> None:
    h = Harness(3, restart=False)
    h.all_ready()
    h.proc(2).returncode = 1
    h.step()
    h.sup.stop_all(h.now)
    assert h.states() == [State.STOPPING, State.STOPPING, State.DOWN]
    assert h.sup.stopping()
    h.step()
    assert h.states() == [State.STOPPED, State.STOPPED, State.DOWN]
    assert not h.sup.stopping() and h.sup.idle()


def test_a_stopped_peer_exits_on_sigterm_and_is_never_restarted() -> None:
    h = Harness(3)
    h.all_ready()
    victim = h.proc(1)
    h.sup.stop(h.sup.peers[1], h.now)
    assert victim.signals == [signal.SIGTERM]
    assert h.step(0.1) == [
        f"peer-1 stopping (SIGTERM to pid {victim.pid})",
        "peer-1 stopped (exit code 0)",
    ]
    assert h.states() == [State.UP, State.STOPPED, State.UP]
    assert h.sup.peers[1].last_exit == "exit code 0"
    assert h.step(RESTART_MAX * 10) == []
    assert [i for i, _ in h.spawned] == [0, 1, 2]  # nothing started again
    assert h.sup.peers[1].restarts == 0
    assert not h.sup.idle() and not h.sup.failed()


def test_a_stop_is_answered_only_once_launch_json_says_stopped(tmp_path: Path) -> None:
    # CI once read "stopping" from launch.json just after `launch stop` answered:
    # the reply went out before the file was saved.  Now each reply saves it first.
    h = Harness(2)
    h.all_ready()
    record = launchstate.Record(tmp_path, {"pid": 1}, {}, ["a", "b"], ["id0", "id1"])
    control = Controller(h.sup, record)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        control.handle(theirs, {"op": "stop", "peer": "peer-1"}, h.now)
        ours.setblocking(False)
        with pytest.raises(BlockingIOError):
            ours.recv(1)  # not answered while the peer is stopping
        h.step(0.1)
        control.answer_settled()
        answer = json.loads(ours.makefile().readline())
    assert answer["ok"] and answer["message"] == "peer-1 stopped (exit code 0)"
    saved = launchstate.read_state(tmp_path)
    assert saved is not None and saved == answer["launch"]
    assert [(p["state"], p["pid"]) for p in saved["peers"]] == [
        ("up", h.proc(0).pid),
        ("stopped", None),
    ]


def test_a_peer_that_ignores_sigterm_is_killed_after_the_timeout() -> None:
    h = Harness(1)
    h.all_ready()
    h.proc(0).stubborn = True
    h.sup.stop(h.sup.peers[0], h.now)
    h.step(STOP_TIMEOUT / 2)
    assert h.states() == [State.STOPPING] and h.proc(0).signals == [signal.SIGTERM]
    assert h.step(STOP_TIMEOUT / 2) == [
        f"peer-0 did not stop within {STOP_TIMEOUT:g} s of SIGTERM: sent SIGKILL"
    ]
    assert h.proc(0).signals == [signal.SIGTERM, signal.SIGKILL]
    assert h.step(0.1) == ["peer-0 stopped (killed by SIGKILL)"]
    assert h.states() == [State.STOPPED]


def test_stopping_a_peer_waiting_to_restart_cancels_the_restart() -> None:
    h = Harness(2)
    h.all_ready()
    h.proc(0).returncode = 1
    h.step(0.1)
    assert h.states()[0] is State.WAITING
    h.sup.stop(h.sup.peers[0], h.now)
    assert h.step(RESTART_MAX) == ["peer-0 stopped (it was waiting to restart)"]
    assert h.states() == [State.STOPPED, State.UP] and len(h.spawned) == 2


def test_stop_leaves_a_peer_that_is_not_running_as_it_is() -> None:
    h = Harness(2, restart=False)
    h.all_ready()
    h.proc(0).returncode = 1
    h.step()
    h.sup.stop(h.sup.peers[0], h.now)  # down: it stays down, not "stopped"
    h.sup.stop(h.sup.peers[1], h.now)
    h.step()
    h.sup.stop(h.sup.peers[1], h.now)  # stopped twice: nothing more happens
    assert h.step() == []
    assert h.states() == [State.DOWN, State.STOPPED]
    assert h.proc(1).signals == [signal.SIGTERM]


def test_a_stopped_peer_started_again_is_announced_and_supervised() -> None:
    h = Harness(2)
    h.all_ready()
    h.sup.stop(h.sup.peers[1], h.now)
    h.step()
    h.sup.start(h.sup.peers[1], h.now)
    new = h.proc(1)
    assert [i for i, _ in h.spawned] == [0, 1, 1]
    assert h.states() == [State.UP, State.STARTING]
    assert h.sup.peers[1].restarts == 0  # started by hand: not a restart
    new.ready = True
    assert h.step(0.2) == [f"peer-1 started (pid {new.pid})", f"peer-1 is up (pid {new.pid})"]
    new.returncode = -signal.SIGKILL  # under the restart policy again
    assert h.step(0.2)[0].endswith("restarting in 1 s")


def test_start_gives_a_given_up_peer_a_fresh_set_of_tries() -> None:
    h = Harness(1)
    for _ in range(GIVE_UP_AFTER):
        h.proc(0).returncode = 2
        h.step(0.1)
        h.step(RESTART_MAX)
    assert h.states() == [State.GAVE_UP] and h.sup.failed()
    h.sup.start(h.sup.peers[0], h.now)
    assert h.states() == [State.STARTING] and h.sup.peers[0].failed_starts == 0
    h.proc(0).returncode = 2
    assert h.step(0.1)[-1].endswith(f"restarting in {RESTART_BASE:g} s")  # not given up


def test_start_of_a_running_peer_does_nothing_and_of_a_stopping_one_is_refused() -> None:
    h = Harness(2)
    h.all_ready()
    h.sup.start(h.sup.peers[0], h.now)
    h.proc(1).stubborn = True
    h.sup.stop(h.sup.peers[1], h.now)
    with pytest.raises(ValueError, match="peer-1 is stopping: start it once it has stopped"):
        h.sup.start(h.sup.peers[1], h.now)
    assert len(h.spawned) == 2


def test_a_peer_waiting_to_restart_is_started_at_once() -> None:
    h = Harness(1)
    h.all_ready()
    for _ in range(4):  # a long backoff
        h.proc(0).returncode = 1
        h.step(0.1)
        h.step(RESTART_MAX)
    h.proc(0).returncode = 1
    h.step(0.1)
    assert h.sup.peers[0].restart_at == h.now + 16 * RESTART_BASE
    h.sup.start(h.sup.peers[0], h.now)
    assert h.states() == [State.STARTING] and h.sup.peers[0].restart_at is None


def test_failed_is_every_peer_down_by_itself_not_stopped_by_hand() -> None:
    h = Harness(2, restart=False)
    h.all_ready()
    h.proc(0).returncode = 1
    h.sup.stop(h.sup.peers[1], h.now)
    h.step()
    assert h.sup.idle() and not h.sup.failed()  # peer-1 may be started again
    h.sup.start(h.sup.peers[1], h.now)
    h.proc(1).returncode = 1
    h.step()
    assert h.sup.failed()


def test_exits_are_described_by_code_or_signal() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-200) == "killed by signal 200"


# Any schedule of exits, readiness, stops, starts and time: the policy's bounds hold.
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["exit", "ready", "wait", "stop", "start", "stubborn"]),
        st.integers(0, 2),
        st.floats(0, 2 * RESTART_MAX, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ACTIONS, st.booleans())
def test_property_restarts_are_spaced_bounded_and_counted(
    actions: list[tuple[str, int, float]], restart: bool
) -> None:
    h = Harness(3, restart=restart)
    exited_at: dict[int, float] = {}
    stopped_at: dict[int, float] = {}
    by_hand = [0, 0, 0]  # starts by the operator that spawned a process
    for kind, i, dt in actions:
        peer = h.sup.peers[i]
        if kind == "exit" and peer.state in (State.STARTING, State.UP):
            h.proc(i).returncode = 1
        elif kind == "ready" and peer.state is State.STARTING:
            h.proc(i).ready = True
        elif kind == "stubborn" and peer.proc is not None:
            h.proc(i).stubborn = True
        elif kind == "stop":
            if peer.state in (State.STARTING, State.UP):
                stopped_at[i] = h.now
            h.sup.stop(peer, h.now)
            if peer.state is State.STOPPED:
                exited_at.pop(i, None)  # it was waiting: no restart comes
        elif kind == "start" and peer.state is not State.STOPPING:
            spawned = len(h.spawned)
            h.sup.start(peer, h.now)
            by_hand[i] += len(h.spawned) - spawned
            exited_at.pop(i, None)
        before = [(p.state, len(h.spawned)) for p in h.sup.peers]
        h.now += dt
        for event in h.sup.step(h.now):
            index = event.peer.index
            if event.kind == "exited":
                assert restart == (event.peer.state is State.WAITING)
                exited_at[index] = h.now
            elif event.kind == "restarted":
                # At least the base delay after the exit was seen, at most the cap later
                # (plus the step in which it fell due).
                assert restart
                waited = h.now - exited_at.pop(index)
                assert RESTART_BASE <= waited <= RESTART_MAX + dt
        for p, (was, _) in zip(h.sup.peers, before, strict=True):
            assert p.failed_starts <= GIVE_UP_AFTER
            # Every spawn after a peer's first is a counted restart or a start by hand.
            spawns = sum(1 for index, _ in h.spawned if index == p.index)
            assert p.restarts == spawns - 1 - by_hand[p.index]
            assert p.state is not State.WAITING or p.index in exited_at
            # A stopped peer stays stopped; a stopping one is killed once its time is up.
            if was is State.STOPPED:
                assert p.state is State.STOPPED
            if p.state is State.STOPPING:
                proc = h.proc(p.index)
                late = h.now - stopped_at[p.index] >= STOP_TIMEOUT
                assert not late or signal.SIGKILL in proc.signals
