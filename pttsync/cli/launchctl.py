"""`pttsync launch ps|stop|start|down --dir DIR`: look at a launch and steer it.

`ps` reads DIR/launch.json and the lock (launchstate.py), so it works
whether or not the launch still runs, and says which.  `stop`, `start` and
`down` ask the running supervisor through DIR/launch.sock (launchsock.py)
and return once it has done it: the peer exited, the peer is up, every peer
and the supervisor gone.  With no supervisor running they fail (exit 2).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import PttsyncError
from . import launchsock, launchstate
from .options import add_command, add_json
from .output import emit_json
from .supervisor import STOP_TIMEOUT

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers

START_TIMEOUT = 60.0  # seconds for a started peer to be up (or fail)
ANSWER_SLACK = 15.0  # seconds on top of a stop's own timeout
GONE_TIMEOUT = 15.0  # seconds for the supervisor to end after it answered `down`


def register(forms: Subparsers) -> None:
    p = add_command(
        forms,
        "ps",
        cmd_ps,
        help="the launch's peers: role, address, pid, state, restarts, uptime, peer ID",
        description=(
            "Print whether the launch on DIR runs, and a table of its peers: name, role,"
            " listen address, pid, state (with the last exit of a peer that is not up),"
            " restarts, uptime and peer ID.  Works on a launch that ended too, from"
            " DIR/launch.json."
        ),
        data=False,
        topic=False,
    )
    _add_dir(p)
    add_json(p)

    for name, handler, help, description in (
        (
            "stop",
            cmd_stop,
            "stop one peer; it stays stopped until `launch start`",
            "Stop PEER (SIGTERM; SIGKILL if it has not exited after"
            f" {STOP_TIMEOUT:g} s) and leave it stopped: it is not restarted.  Returns"
            " once it has exited.",
        ),
        (
            "start",
            cmd_start,
            "start a stopped (or given-up) peer again",
            "Start PEER again on its port, with a fresh restart backoff, if it is not"
            " running: stopped, down, given up or waiting to restart.  Returns once it is"
            " up; exit status 1 if it exits instead.",
        ),
    ):
        p = add_command(
            forms, name, handler, help=help, description=description, data=False, topic=False
        )
        p.add_argument("peer", metavar="PEER", help="the peer: its name (peer-1) or number (1)")
        _add_dir(p)
        add_json(p)

    p = add_command(
        forms,
        "down",
        cmd_down,
        help="stop every peer and the supervisor",
        description=(
            "Stop every peer (SIGTERM, then SIGKILL after"
            f" {STOP_TIMEOUT:g} s) and then the supervisor, which removes DIR/launch.sock."
            "  The data directories stay: `pttsync launch N --dir DIR` runs them again."
        ),
        data=False,
        topic=False,
    )
    _add_dir(p)
    add_json(p)


def _add_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", required=True, metavar="DIR", help="the launch's directory")


def cmd_ps(args: argparse.Namespace) -> int:
    view = launchstate.load(launchstate.launch_dir(args.dir))
    if args.json:
        emit_json(view)
        return 0
    print(launchstate.summary(view))
    print("\n".join(launchstate.table(view)))
    return 0


def _steer(args: argparse.Namespace, op: str, timeout: float) -> dict[str, Any]:
    """Ask the launch on args.dir to `op` args.peer; the peer's entry in the state after."""
    root = launchstate.launch_dir(args.dir)
    name = launchstate.resolve_peer(launchstate.load(root), args.peer)["name"]
    answer = launchsock.call(root, {"op": op, "peer": name}, timeout)
    after = launchstate.view(answer["launch"], running=True)
    peer: dict[str, Any] = launchstate.resolve_peer(after, name)
    if args.json:
        emit_json(peer)
    else:
        print(answer["message"])
    return peer


def cmd_stop(args: argparse.Namespace) -> int:
    _steer(args, "stop", STOP_TIMEOUT + ANSWER_SLACK)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    _steer(args, "start", START_TIMEOUT)
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    root = launchstate.launch_dir(args.dir)
    answer = launchsock.call(root, {"op": "down"}, STOP_TIMEOUT + ANSWER_SLACK)
    deadline = time.monotonic() + GONE_TIMEOUT
    while launchstate.running(root):  # it answered just before it ends
        if time.monotonic() > deadline:
            raise PttsyncError(f"the launch on {root} stopped its peers but did not end")
        time.sleep(0.05)
    if args.json:
        emit_json(launchstate.load(root))
    else:
        print(answer["message"])
    return 0
