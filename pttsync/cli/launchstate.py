"""A launch's state on disk: what its supervisor writes and `launch ps|logs|stop|start|down` read.

```
DIR/
├── launch.json   the launch's state: rewritten whole (a temporary file, then
│                 os.replace) when the supervisor starts and at every change
├── launch.lock   held (flock) by the running supervisor for as long as it runs;
│                 it holds its pid
├── launch.sock   the running supervisor's control socket (launchsock.py)
├── launch.log    a detached supervisor's output: its events and errors
└── peer-i/       peer i's data directory; peer-i/node.log is its log
```

launch.json:

```
{"format": 1, "dir": "/tmp/net",
 "supervisor": {"pid": 4242, "started": "2025-…Z", "ended": null, "detached": true,
                "log": "/tmp/net/launch.log"},
 "settings": {"n": 3, "host": "127.0.0.1", "base_port": 7400, "sync_interval": null,
              "restart": true},
 "settled": true,                # no peer is starting
 "peers": [{"name": "peer-0", "index": 0, "role": "master", "listen": "127.0.0.1:7400",
            "pid": 4243,         # null unless its process runs
            "state": "up",       # starting, up, waiting, down, gave up, stopping, stopped
            "restarts": 0, "last_exit": null, "started": "2025-…Z",
            "data": "/tmp/net/peer-0", "log": "/tmp/net/peer-0/node.log", "peer_id": "…"},
           …]}
```

Whether a launch runs on DIR is whether launch.lock is held, not whether
the pid in launch.json is alive: the kernel drops a flock when its process
dies, even by kill -9, and a reused pid cannot fake one.  Readers test it
with a shared lock taken and dropped at once; a starting supervisor retries
its exclusive lock for a moment so that such a test never refuses it.
`view` is launch.json as `ps --json` shows it: with `running`, each peer's
uptime, and, when the supervisor is gone, no peer shown as running.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.timeutil import parse_iso, to_iso
from ..errors import UsageError
from .output import table_lines
from .supervisor import RUNNING

if TYPE_CHECKING:
    from .supervisor import Supervisor

STATE_FILE = "launch.json"
LOCK_FILE = "launch.lock"
SOCKET_FILE = "launch.sock"
LOG_FILE = "launch.log"
FORMAT = 1
LOCK_PATIENCE = 1.0  # seconds a starting supervisor retries the lock (a reader may hold it)
RUNNING_STATES = frozenset(s.value for s in RUNNING)


def now_iso() -> str:
    """The time now as ISO 8601 UTC, to the millisecond."""
    t = time.time_ns()
    return to_iso(t - t % 1_000_000)


# -- the lock -----------------------------------------------------------------------


def take_lock(root: Path) -> int:
    """Hold DIR/launch.lock for this process (its file descriptor); UsageError if a launch runs."""
    fd = _open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    deadline = time.monotonic() + LOCK_PATIENCE
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            os.close(fd)
            raise UsageError(
                f"a launch is already running on {root}{_pid_note(root)}:"
                f" `pttsync launch ps --dir {root}` shows it, `pttsync launch down --dir {root}`"
                " stops it"
            ) from None
    return _mark(fd)


def adopt_lock(fd: int) -> int:
    """The lock a detaching `launch` took and handed down as `fd`, now this process's."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the same lock: already ours
    except OSError as exc:
        raise UsageError(f"file descriptor {fd} is not launch's lock: {exc.strerror}") from None
    os.set_inheritable(fd, False)
    return _mark(fd)


def _mark(fd: int) -> int:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def running(root: Path) -> bool:
    """Whether a supervisor holds DIR/launch.lock now."""
    try:
        fd = _open(root / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # drops the shared lock too, if it was taken
    return False


def _open(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror}") from None


def _pid_note(root: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (supervisor pid {int((root / LOCK_FILE).read_text())})"
    return ""


# -- the state file -------------------------------------------------------------------


def write_state(root: Path, state: dict[str, Any]) -> None:
    """Replace DIR/launch.json with `state`, atomically: a reader sees the old or the new."""
    tmp = root / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, root / STATE_FILE)


def read_state(root: Path) -> dict[str, Any] | None:
    """DIR/launch.json, or None if there is none."""
    path = root / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not a launch's state file: {exc}") from None
    if (
        not isinstance(state, dict)
        or state.get("format") != FORMAT
        or not isinstance(state.get("peers"), list)
        or not isinstance(state.get("supervisor"), dict)
    ):
        raise UsageError(f"{path} is not a launch's state file (format {FORMAT})")
    return state


def launch_dir(text: str) -> Path:
    """--dir as an absolute path, checked to be a directory."""
    root = Path(text).absolute()
    if not root.is_dir():
        raise UsageError(f"{root} is not a directory: no launch there")
    return root


def load(root: Path) -> dict[str, Any]:
    """The view of the launch on DIR (see `view`); UsageError if none ever ran there."""
    is_running = running(root)
    state = read_state(root)
    if state is None:
        raise UsageError(
            f"no launch on {root} (no {STATE_FILE}): `pttsync launch N --dir {root}` starts one"
        )
    return view(state, running=is_running)


def view(state: dict[str, Any], *, running: bool) -> dict[str, Any]:
    """`state` with `running`, and each peer's `uptime_s` (null unless it runs)."""
    now = time.time_ns()
    peers = []
    for entry in state["peers"]:
        p = dict(entry)
        if not running and p.get("state") in (*RUNNING_STATES, "waiting"):
            p["state"], p["pid"] = "stopped", None  # its lifeline closed with the supervisor
        up = running and p.get("state") in RUNNING_STATES and p.get("started")
        p["uptime_s"] = round(max(0, now - parse_iso(p["started"])) / 1e9, 1) if up else None
        peers.append(p)
    return {**state, "running": running, "peers": peers}


def peer_name(text: str) -> str:
    """`peer-1` for `peer-1`, `1` or `01`; anything else as it is."""
    number = text.removeprefix("peer-")
    return f"peer-{int(number)}" if number.isascii() and number.isdigit() else text


def resolve_peer(view: dict[str, Any], text: str) -> dict[str, Any]:
    """The peer `text` names: `peer-1` or `1`; UsageError naming the valid ones if none."""
    peers: list[dict[str, Any]] = view["peers"]
    name = peer_name(text)
    for p in peers:
        if p.get("name") == name:
            return p
    names = ", ".join(str(p.get("name")) for p in peers)
    raise UsageError(f"no peer {text!r} in the launch on {view['dir']}: its peers are {names}")


# -- what the supervisor writes ------------------------------------------------------


@dataclass
class Record:
    """The launch's state as launch.json holds it; `save` writes it when it changed."""

    root: Path
    supervisor: dict[str, Any]
    settings: dict[str, Any]
    listens: list[str]
    peer_ids: list[str]
    started: dict[int, str] = field(default_factory=dict)  # peer index: its process's start
    last: dict[str, Any] | None = None

    def state(self, sup: Supervisor) -> dict[str, Any]:
        peers = [
            {
                "name": p.name,
                "index": p.index,
                "role": "master" if p.index == 0 else "member",
                "listen": self.listens[p.index],
                "pid": p.proc.pid if p.proc is not None and p.state in RUNNING else None,
                "state": p.state.value,
                "restarts": p.restarts,
                "last_exit": p.last_exit,
                "started": self.started.get(p.index),
                "data": str(p.log.parent),
                "log": str(p.log),
                "peer_id": self.peer_ids[p.index],
            }
            for p in sup.peers
        ]
        return {
            "format": FORMAT,
            "dir": str(self.root),
            "supervisor": dict(self.supervisor),
            "settings": self.settings,
            "settled": sup.settled(),
            "peers": peers,
        }

    def save(self, sup: Supervisor) -> dict[str, Any]:
        state = self.state(sup)
        if state != self.last:
            write_state(self.root, state)
            self.last = state
        return state


# -- text -----------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """4s, 3m 4s, 2h 5m, 3d 4h."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def summary(view: dict[str, Any]) -> str:
    """One line: where the launch is, whether its supervisor runs, since when."""
    sup = view["supervisor"]
    where = f"launch on {view['dir']}"
    if not view["running"]:
        if sup.get("ended"):
            return (
                f"{where}: not running (its supervisor, pid {sup.get('pid')}, ended {sup['ended']})"
            )
        return (
            f"{where}: not running (its supervisor, pid {sup.get('pid')}, was killed;"
            " its peers stopped with it)"
        )
    since = ""
    with contextlib.suppress(KeyError, TypeError, ValueError, UsageError):
        since = f", up {duration((time.time_ns() - parse_iso(sup['started'])) / 1e9)}"
    how = f"detached, its log {sup['log']}" if sup.get("detached") else "in the foreground"
    return f"{where}: running, supervisor pid {sup.get('pid')} ({how}){since}"


def table(view: dict[str, Any]) -> list[str]:
    """The peers as a table, one line each under a header (`ps`, and launch itself)."""
    header = ("PEER", "ROLE", "LISTEN", "PID", "STATE", "RESTARTS", "UPTIME", "PEER ID")
    rows = []
    for p in view["peers"]:
        state = str(p.get("state"))
        if state in ("waiting", "down", "gave up") and p.get("last_exit"):
            state += f" ({p['last_exit']})"
        uptime = p.get("uptime_s")
        rows.append(
            (
                str(p.get("name")),
                str(p.get("role")),
                str(p.get("listen")),
                "-" if p.get("pid") is None else str(p["pid"]),
                state,
                str(p.get("restarts", 0)),
                "-" if uptime is None else duration(uptime),
                str(p.get("peer_id")),
            )
        )
    return table_lines(header, rows)
