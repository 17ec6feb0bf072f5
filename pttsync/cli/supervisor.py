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


class Process(Protocol):
    """What the supervisor needs of a child process (subprocess.Popen has it)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...


class State(enum.Enum):
    STARTING = "starting"  # running, not ready yet
    UP = "up"
    WAITING = "waiting"  # exited; a restart is due at `restart_at`
    DOWN = "down"  # exited; no restart (restarts off)
    GAVE_UP = "gave up"  # failed to start GIVE_UP_AFTER times in a row
    STOPPED = "stopped"  # stopped by the supervisor


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
    last_exit: str | None = None

    @property
    def name(self) -> str:
        return f"peer-{self.index}"


@dataclass(frozen=True, slots=True)
class Event:
    """Something the supervisor saw or did, for the operator; `line` says it."""

    peer: Peer
    kind: str  # "up", "exited", "restarted", "gave up"
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

    def _start(self, peer: Peer, now: float) -> None:
        peer.proc = self.spawn(peer)
        peer.state = State.STARTING
        peer.started_at = now
        peer.restart_at = None

    def step(self, now: float) -> list[Event]:
        """Look at every peer once: readiness, exits, restarts due.  The new events."""
        self.events = []
        for peer in self.peers:
            if peer.state in (State.STARTING, State.UP):
                self._watch(peer, now)
            elif peer.state is State.WAITING:
                assert peer.restart_at is not None
                if now >= peer.restart_at:
                    peer.restarts += 1
                    self._start(peer, now)
                    assert peer.proc is not None
                    self._say(
                        peer,
                        "restarted",
                        f"{peer.name} restarted (restart {peer.restarts}, pid {peer.proc.pid})",
                    )
        return self.events

    def _watch(self, peer: Peer, now: float) -> None:
        assert peer.proc is not None
        code = peer.proc.poll()
        if code is None:
            if peer.state is State.STARTING and self.is_ready(peer):
                peer.state = State.UP
                peer.failed_starts = 0
                if peer.restarts:
                    self._say(peer, "up", f"{peer.name} is up again (pid {peer.proc.pid})")
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

    def _say(self, peer: Peer, kind: str, line: str) -> None:
        self.events.append(Event(peer, kind, line))

    def settled(self) -> bool:
        """No peer is still starting: each is up, or down for good, or waiting to restart."""
        return all(p.state is not State.STARTING for p in self.peers)

    def stopped(self) -> None:
        """The supervisor stopped every peer (launch's Ctrl-C or SIGTERM)."""
        for peer in self.peers:
            if peer.state in (State.STARTING, State.UP, State.WAITING):
                peer.state = State.STOPPED

    def idle(self) -> bool:
        """Nothing runs and nothing will: every peer is down for good."""
        return all(p.state in (State.DOWN, State.GAVE_UP, State.STOPPED) for p in self.peers)
