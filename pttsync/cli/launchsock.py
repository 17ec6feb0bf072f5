"""A running launch's control socket, DIR/launch.sock: what `launch stop|start|down` send.

One request a connection: a JSON object on one line, then one reply line.

```
{"op": "stop", "peer": "peer-1"}    answered once the peer has exited (SIGTERM, then
                                    SIGKILL after supervisor.STOP_TIMEOUT)
{"op": "start", "peer": "peer-1"}   answered once the peer is up, or failed to start
{"op": "down"}                      answered once every peer has exited; then the
                                    supervisor removes the socket and ends
reply: {"ok": true, "message": "peer-1 stopped (exit code 0)", "launch": STATE}
       {"ok": false, "error": "...", "kind": "usage" | "failure"}
```

STATE is launch.json's content (launchstate.py).  The supervisor serves the
socket from its loop, which waits on it between looks at its peers
(`ControlServer.wait`) and accepts without blocking; a request is read with a
short timeout.  The socket file is made with mode 0600: only its owner may
steer the launch.  A client first checks that a supervisor holds the launch's
lock, so that "no launch is running" is told apart from a supervisor that
does not answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import PttsyncError, UsageError
from . import launchstate
from .supervisor import RUNNING, State

if TYPE_CHECKING:
    from pathlib import Path

    from .supervisor import Peer, Supervisor

log = logging.getLogger(__name__)

MAX_REQUEST = 4096  # bytes in a request line
READ_TIMEOUT = 1.0  # seconds for a client to send its request once connected


class ControlServer:
    """The listening socket DIR/launch.sock; only the lock's holder makes one."""

    def __init__(self, root: Path) -> None:
        self.path = root / launchstate.SOCKET_FILE
        # The lock is ours, so a socket file there is a dead supervisor's.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # 0600 from the moment the file exists
        try:
            self.sock.bind(str(self.path))
        except OSError as exc:
            self.sock.close()
            raise UsageError(f"cannot make the control socket {self.path}: {exc}") from None
        finally:
            os.umask(old)
        self.inode = os.stat(self.path).st_ino
        self.sock.listen(16)
        self.sock.setblocking(False)

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking as soon as a client connects."""
        select.select([self.sock], [], [], seconds)

    def accept(self) -> list[tuple[socket.socket, dict[str, Any]]]:
        """The requests waiting now; a malformed one is answered and dropped here."""
        requests: list[tuple[socket.socket, dict[str, Any]]] = []
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return requests
            except OSError as exc:
                log.warning("launch's control socket: cannot accept: %s", exc.strerror)
                return requests
            try:
                requests.append((conn, _read_request(conn)))
            except (OSError, UsageError) as exc:
                reply(conn, {"ok": False, "error": f"a bad request: {exc}", "kind": "usage"})

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()


def _read_request(conn: socket.socket) -> dict[str, Any]:
    conn.settimeout(READ_TIMEOUT)
    data = b""
    while b"\n" not in data and len(data) <= MAX_REQUEST:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
    try:
        request = json.loads(data.partition(b"\n")[0])
    except ValueError:
        raise UsageError("not a JSON object on one line") from None
    if not isinstance(request, dict) or request.get("op") not in ("stop", "start", "down"):
        raise UsageError('a request is {"op": "stop" | "start" | "down", ...}')
    if request["op"] != "down" and not isinstance(request.get("peer"), str):
        raise UsageError(f'{request["op"]} needs "peer"')
    return request


def reply(conn: socket.socket, answer: dict[str, Any]) -> None:
    """Send `answer` and close `conn`; a client that went away is no matter."""
    try:
        conn.settimeout(READ_TIMEOUT)
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass
    finally:
        conn.close()


@dataclass
class _Waiting:
    conn: socket.socket
    op: str
    peer: Peer | None = None
    before: State | None = None  # the peer's state when the request came


class Controller:
    """Requests carried out on a Supervisor, answered once what they wait for is done.

    Each reply carries the launch's state, saved to launch.json before the
    reply is sent: a client that reads the file once answered sees what the
    answer says.  The supervisor's loop calls `handle` for each request,
    `answer_settled` after each step, and `finish` when it ends."""

    def __init__(self, sup: Supervisor, record: launchstate.Record) -> None:
        self.sup, self.record = sup, record
        self.waiting: list[_Waiting] = []
        self.down = False

    def handle(self, conn: socket.socket, request: dict[str, Any], now: float) -> None:
        op = request["op"]
        if self.down:
            reply(conn, {"ok": False, "error": "the launch is going down", "kind": "usage"})
            return
        if op == "down":
            self.down = True
            self.sup.stop_all(now)
            self.waiting.append(_Waiting(conn, op))
            return
        peer = self._peer(str(request["peer"]))
        if peer is None:
            names = ", ".join(p.name for p in self.sup.peers)
            error = f"no peer {request['peer']!r} in this launch: its peers are {names}"
            reply(conn, {"ok": False, "error": error, "kind": "usage"})
            return
        before = peer.state
        if op == "stop":
            self.sup.stop(peer, now)
        else:
            try:
                self.sup.start(peer, now)
            except ValueError as exc:
                reply(conn, {"ok": False, "error": str(exc), "kind": "usage"})
                return
        self.waiting.append(_Waiting(conn, op, peer, before))
        self.answer_settled()

    def _peer(self, text: str) -> Peer | None:
        name = launchstate.peer_name(text)
        return next((p for p in self.sup.peers if p.name == name), None)

    def answer_settled(self) -> None:
        """Answer the stops whose peer has exited and the starts whose peer is up or failed."""
        still = []
        for w in self.waiting:
            peer = w.peer
            if peer is None or (w.op, peer.state) in (
                ("stop", State.STOPPING),
                ("start", State.STARTING),
            ):
                still.append(w)
            else:
                reply(w.conn, self._answer(w.op, peer, w.before))
        self.waiting = still

    def _answer(self, op: str, peer: Peer, before: State | None) -> dict[str, Any]:
        pid = peer.proc.pid if peer.proc is not None else None
        state = peer.state.value
        if op == "stop":
            if before in (State.STOPPED, State.DOWN, State.GAVE_UP):
                message = f"{peer.name} is not running ({state})"
            elif before is State.WAITING:
                message = f"{peer.name} stopped (it was waiting to restart)"
            else:
                message = f"{peer.name} stopped ({peer.last_exit})"
            return {"ok": True, "message": message, "launch": self.record.save(self.sup)}
        if peer.state is State.UP:
            already = "already " if before is State.UP else ""
            message = f"{peer.name} is {already}up (pid {pid})"
            return {"ok": True, "message": message, "launch": self.record.save(self.sup)}
        if peer.state in RUNNING:
            return {"ok": False, "error": f"{peer.name} is {state}", "kind": "usage"}
        then = {
            State.WAITING: "it will be restarted",
            State.DOWN: "left down (--no-restart)",
            State.GAVE_UP: "left down",
        }.get(peer.state, state)
        error = f"{peer.name} exited as it started ({peer.last_exit}); {then}; its log: {peer.log}"
        return {"ok": False, "error": error, "kind": "failure"}

    def finish(self) -> None:
        """The supervisor ends: a `down` is done; anything else waiting is not."""
        for w in self.waiting:
            if w.op == "down":
                n = len(self.sup.peers)
                message = f"stopped {n} peer{'s' * (n != 1)} and the supervisor"
                launch = self.record.save(self.sup)
                reply(w.conn, {"ok": True, "message": message, "launch": launch})
            else:
                error = "the launch ended before the request was done"
                reply(w.conn, {"ok": False, "error": error, "kind": "failure"})
        self.waiting = []


def call(root: Path, request: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send `request` to the launch on `root`; its reply.

    Raises:
        UsageError: no launch runs on `root`, or it refused the request as a bad one.
        PttsyncError: the supervisor does not answer in `timeout` seconds, or failed.
    """
    if not launchstate.running(root):
        raise UsageError(
            f"no launch is running on {root}: `pttsync launch ps --dir {root}` shows its"
            f" last state, `pttsync launch N --dir {root} --detach` starts one"
        )
    path = root / launchstate.SOCKET_FILE
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
            s.sendall(json.dumps(request).encode() + b"\n")
            data = b""
            while b"\n" not in data:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise PttsyncError(
                f"the launch on {root} did not answer within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise PttsyncError(f"the launch on {root} does not answer on {path}: {exc}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise PttsyncError(f"the launch on {root} gave no answer (it may have ended)") from None
    if not isinstance(answer, dict):
        raise PttsyncError(f"the launch on {root} answered {answer!r}")
    if not answer.get("ok"):
        error = str(answer.get("error", "failed"))
        raise UsageError(error) if answer.get("kind") == "usage" else PttsyncError(error)
    return answer
