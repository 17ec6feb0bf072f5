"""What `pttsync launch` does with its peer processes: start, watch, restart, stop.

The policy is a small state machine, `Supervisor.step(now)`, with the
processes and the clock passed in: the tests drive it with fake processes on
a fake clock, and `launch` with `subprocess.Popen` and `time.monotonic`.

* A peer that exits is reported (which peer, its exit code or signal, its
  log) and, unless restarts are off, started again after a backoff while the
  others keep running.  The backoff doubles from `RESTART_BASE` to
  `RESTART_MAX` over consecutive quick exits (within `STABLE` seconds of a
  start) and is back at its base after a peer has run that long.
* A peer that exits before it is ready (its control socket is there)
  `GIVE_UP_AFTER` times in a row is left down: a bad port or a damaged data
  directory does not come right by retrying.
* The operator stops and starts single peers (`launch stop PEER`, `launch
  start PEER`): `stop` sends SIGTERM, then SIGKILL if the peer has not
  exited `STOP_TIMEOUT` seconds later, and leaves the peer stopped (never
  restarted); `start` starts a stopped, down or given-up peer again with a
  fresh backoff.  `stop_all` is `stop` for every peer (Ctrl-C, `launch down`).
* Each peer's standard input is a pipe from the supervisor, its lifeline: a
  peer run with `--lifeline` stops when the pipe closes, so that if the
  supervisor is killed (even with kill -9) its peers end with it.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

RESTART_BASE = 1.0  # seconds before the first restart
RESTART_MAX = 30.0  # the longest wait between restarts
STABLE = 10.0  # a peer up this long has its backoff reset
GIVE_UP_AFTER = 5  # exits in a row before the peer was ready
STOP_TIMEOUT = 10.0  # seconds for a peer to stop after SIGTERM before it is killed


class Process(Protocol):
    """What the supervisor needs of a child process (subprocess.Popen has it)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def send_signal(self, sig: int) -> None: ...
    def kill(self) -> None: ...


class State(enum.Enum):
    STARTING = "starting"  # running, not ready yet
    UP = "up"
    WAITING = "waiting"  # exited; a restart is due at `restart_at`
    DOWN = "down"  # exited; no restart (restarts off)
    GAVE_UP = "gave up"  # failed to start GIVE_UP_AFTER times in a row
    STOPPING = "stopping"  # sent SIGTERM; SIGKILL at `kill_at`
    STOPPED = "stopped"  # stopped by the operator (or launch ending): no restart


RUNNING = frozenset({State.STARTING, State.UP, State.STOPPING})
"""The states in which the peer's process runs."""


@dataclass(slots=True)
class Peer:
    """One supervised peer: its process now and its history."""

    index: int
    log: Path
    proc: Process | None = None
    state: State = State.STARTING
    started_at: float = 0.0
    restarts: int = 0
    quick_exits: int = 0  # consecutive exits within STABLE of a start
    failed_starts: int = 0  # consecutive exits before the peer was ready
    restart_at: float | None = None
    kill_at: float | None = None  # when a stopping peer gets SIGKILL
    last_exit: str | None = None
    announce: str = ""  # what to say once it is up: "is up again" after a restart

    @property
    def name(self) -> str:
        return f"peer-{self.index}"


@dataclass(frozen=True, slots=True)
class Event:
    """Something the supervisor saw or did, for the operator; `line` says it."""

    peer: Peer
    kind: str  # "up", "exited", "restarted", "gave up", "started", "stopping", "killed",
    # "stopped"
    line: str


def describe_exit(returncode: int) -> str:
    """'exit code 1', or 'killed by SIGKILL' for a signal."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


@dataclass
class Supervisor:
    """Peers started by `spawn(peer)`, ready when `is_ready(peer)`; see the module doc."""

    peers: list[Peer]
    spawn: Callable[[Peer], Process]
    is_ready: Callable[[Peer], bool]
    restart: bool = True
    events: list[Event] = field(default_factory=list)

    def start_all(self, now: float) -> None:
        for peer in self.peers:
            self._start(peer, now)

    def _start(self, peer: Peer, now: float, *, announce: str = "") -> None:
        peer.proc = self.spawn(peer)
        peer.state = State.STARTING
        peer.started_at = now
        peer.restart_at = None
        peer.announce = announce

    def start(self, peer: Peer, now: float) -> None:
        """Start `peer` again now, with a fresh backoff, if it is not running.

        A stopped, down or given-up peer is started; one waiting for its
        restart is started at once; a running one is left alone.

        Raises:
            ValueError: the peer is stopping: start it once it has stopped.
        """
        if peer.state is State.STOPPING:
            raise ValueError(f"{peer.name} is stopping: start it once it has stopped")
        if peer.state in RUNNING:
            return
        peer.quick_exits = peer.failed_starts = 0
        self._start(peer, now, announce="is up")
        assert peer.proc is not None
        self._say(peer, "started", f"{peer.name} started (pid {peer.proc.pid})")

    def stop(self, peer: Peer, now: float) -> None:
        """Stop `peer` for good: SIGTERM now, SIGKILL after STOP_TIMEOUT (in `step`).

        A peer waiting for its restart is stopped at once; one that is down,
        given up or already stopping or stopped is left as it is."""
        if peer.state is State.WAITING:
            peer.state = State.STOPPED
            peer.restart_at = None
            self._say(peer, "stopped", f"{peer.name} stopped (it was waiting to restart)")
        elif peer.state in (State.STARTING, State.UP):
            assert peer.proc is not None
            peer.proc.send_signal(signal.SIGTERM)
            peer.state = State.STOPPING
            peer.kill_at = now + STOP_TIMEOUT
            self._say(peer, "stopping", f"{peer.name} stopping (SIGTERM to pid {peer.proc.pid})")

    def stop_all(self, now: float) -> None:
        """`stop` every peer (launch ends, or `launch down`)."""
        for peer in self.peers:
            self.stop(peer, now)

    def step(self, now: float) -> list[Event]:
        """Look at every peer once: readiness, exits, restarts, kills due.

        The events since the last step (`start` and `stop` add some too)."""
        for peer in self.peers:
            if peer.state in (State.STARTING, State.UP):
                self._watch(peer, now)
            elif peer.state is State.STOPPING:
                self._watch_stopping(peer, now)
            elif peer.state is State.WAITING:
                assert peer.restart_at is not None
                if now >= peer.restart_at:
                    peer.restarts += 1
                    self._start(peer, now, announce="is up again")
                    assert peer.proc is not None
                    self._say(
                        peer,
                        "restarted",
                        f"{peer.name} restarted (restart {peer.restarts}, pid {peer.proc.pid})",
                    )
        events, self.events = self.events, []
        return events

    def _watch(self, peer: Peer, now: float) -> None:
        assert peer.proc is not None
        code = peer.proc.poll()
        if code is None:
            if peer.state is State.STARTING and self.is_ready(peer):
                peer.state = State.UP
                peer.failed_starts = 0
                if peer.announce:
                    self._say(peer, "up", f"{peer.name} {peer.announce} (pid {peer.proc.pid})")
            if now - peer.started_at >= STABLE:
                peer.quick_exits = 0
            return
        peer.last_exit = describe_exit(code)
        said = f"{peer.name} exited ({peer.last_exit}); its log: {peer.log}"
        if peer.state is State.STARTING:
            peer.failed_starts += 1
        peer.quick_exits = peer.quick_exits + 1 if now - peer.started_at < STABLE else 1
        if not self.restart:
            peer.state = State.DOWN
            self._say(peer, "exited", f"{said}; left down (--no-restart)")
        elif peer.failed_starts >= GIVE_UP_AFTER:
            peer.state = State.GAVE_UP
            self._say(
                peer,
                "gave up",
                f"{said}; it failed to start {peer.failed_starts} times in a row: left down",
            )
        else:
            delay = min(RESTART_MAX, RESTART_BASE * 2 ** (peer.quick_exits - 1))
            peer.state = State.WAITING
            peer.restart_at = now + delay
            self._say(peer, "exited", f"{said}; restarting in {delay:g} s")

    def _watch_stopping(self, peer: Peer, now: float) -> None:
        assert peer.proc is not None
        code = peer.proc.poll()
        if code is not None:
            peer.state = State.STOPPED
            peer.kill_at = None
            peer.last_exit = describe_exit(code)
            self._say(peer, "stopped", f"{peer.name} stopped ({peer.last_exit})")
        elif peer.kill_at is not None and now >= peer.kill_at:
            peer.proc.kill()
            peer.kill_at = None
            self._say(
                peer,
                "killed",
                f"{peer.name} did not stop within {STOP_TIMEOUT:g} s of SIGTERM: sent SIGKILL",
            )

    def _say(self, peer: Peer, kind: str, line: str) -> None:
        self.events.append(Event(peer, kind, line))

    def settled(self) -> bool:
        """No peer is still starting: each is up, or down for good, or waiting to restart."""
        return all(p.state is not State.STARTING for p in self.peers)

    def stopping(self) -> bool:
        """Some peer was told to stop and has not exited yet."""
        return any(p.state is State.STOPPING for p in self.peers)

    def idle(self) -> bool:
        """Nothing runs and nothing will by itself: every peer is down, given up or stopped."""
        return all(p.state in (State.DOWN, State.GAVE_UP, State.STOPPED) for p in self.peers)

    def failed(self) -> bool:
        """Every peer exited and none will restart, and the operator stopped none of them:
        there is nothing left to supervise (a peer stopped by hand may be started again)."""
        return all(p.state in (State.DOWN, State.GAVE_UP) for p in self.peers)
