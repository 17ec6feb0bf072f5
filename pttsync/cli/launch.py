"""`pttsync launch N`: N local nodes, one process each, connected to each other.

Makes N data directories in one topic (peer 0 its master, the others members
admitted by peer 0) if they do not exist yet, starts one `pttsync run`
process per peer on consecutive ports, and prints a table.  Then it
supervises them (supervisor.py): a peer that exits is reported and
restarted with backoff while the others run on (`--no-restart` leaves it
down, for crash experiments).  Launch ends on Ctrl-C or SIGTERM, and then
stops every peer; if launch itself is killed, its peers see their lifeline
close and stop too.  Each peer logs to DIR/peer-i/node.log.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .options import add_command, bounded, port, seconds
from .run import make_peers
from .supervisor import Peer, State, Supervisor

if TYPE_CHECKING:
    import argparse

    from ..datadir import DataDir
    from .options import Subparsers
    from .supervisor import Event

STOP_TIMEOUT = 10.0  # seconds for a peer to stop after SIGTERM before it is killed
TICK = 0.2  # seconds between looks at the peers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "launch",
        cmd_launch,
        help="start N local nodes as processes, connected to each other",
        description=(
            "Make N data directories under DIR (peer-0, peer-1, ..., all in one topic) if"
            " they are not there yet, and run a node on each, listening on consecutive"
            " ports from --base-port and joining the first.  A peer that exits is"
            " reported and restarted with backoff (not with --no-restart).  Ctrl-C or"
            " SIGTERM stops them all; so does killing launch."
        ),
        data=False,
        topic=False,
    )
    p.add_argument("n", metavar="N", type=bounded(1, 64), help="how many nodes (1..64)")
    p.add_argument("--dir", required=True, metavar="DIR", help="where the data directories go")
    p.add_argument(
        "--base-port",
        type=port,
        default=7400,
        metavar="PORT",
        help="the first node's port; the others take the next ones (default: %(default)s)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--sync-interval",
        type=seconds,
        metavar="SECONDS",
        help="seconds between sync rounds (default: run's default)",
    )
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="leave a peer that exits down (for crash experiments) instead of restarting it",
    )


def cmd_launch(args: argparse.Namespace) -> int:
    from ..net.network import format_address  # noqa: PLC0415 - pttsync.net loads on use

    root = Path(args.dir)
    n, host, base = args.n, args.host, args.base_port
    if base + n - 1 > 65535:
        raise UsageError(f"--base-port {base} leaves no room for {n} ports")
    dirs = make_peers(root, n)
    listens = [format_address(host, base + i) for i in range(n)]

    def spawn(peer: Peer) -> subprocess.Popen[bytes]:
        if isinstance(peer.proc, subprocess.Popen) and peer.proc.stdin is not None:
            peer.proc.stdin.close()  # the lifeline of the process that exited
        cmd = [sys.executable, "-m", "pttsync", "-v", "run", "--data", str(dirs[peer.index].path)]
        cmd += ["--listen", listens[peer.index], "--lifeline", "--restarts", str(peer.restarts)]
        if args.sync_interval is not None:
            cmd += ["--sync-interval", str(args.sync_interval)]
        if peer.index:
            cmd += ["--join", listens[0]]
        with open(peer.log, "ab") as logfile:
            # stdin is the lifeline: its pipe closes when launch ends, however it ends.
            return subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def is_ready(peer: Peer) -> bool:
        return _answers(dirs[peer.index].path / "control.sock")

    peers = [Peer(i, d.path / "node.log") for i, d in enumerate(dirs)]
    sup = Supervisor(peers, spawn, is_ready, restart=not args.no_restart)
    # SIGTERM arrives as cli.main.Terminated, a KeyboardInterrupt, like Ctrl-C.
    try:
        sup.start_all(time.monotonic())
        while not sup.settled():
            _report(sup.step(time.monotonic()))
            time.sleep(TICK)
        _print_table(sup, dirs, listens)
        up = sum(p.state is State.UP for p in peers)
        if up == n:
            print("all peers are up; Ctrl-C (or SIGTERM) stops them", flush=True)
        else:
            print(f"{up} of {n} peers are up; Ctrl-C (or SIGTERM) stops them", flush=True)
        while not sup.idle():
            _report(sup.step(time.monotonic()))
            time.sleep(TICK)
        print("no peer is running and none will restart", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("stopping all peers", flush=True)
        return 0
    finally:
        _stop_all(sup)
        if any(p.restarts or p.last_exit for p in peers):
            _print_table(sup, dirs, listens)


def _answers(path: Path) -> bool:
    """Whether a node answers on the control socket `path` (a stale file does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _report(events: list[Event]) -> None:
    for event in events:
        print(event.line, flush=True)


def _print_table(sup: Supervisor, dirs: list[DataDir], listens: list[str]) -> None:
    print(
        f"{'peer':<8} {'role':<7} {'listen':<22} {'pid':>7} {'restarts':>8}  {'state':<8}"
        f" {'peer id':<54} data"
    )
    for peer, d, listen in zip(sup.peers, dirs, listens, strict=True):
        role = "master" if peer.index == 0 else "member"
        pid = "-" if peer.proc is None else str(peer.proc.pid)
        print(
            f"{peer.name:<8} {role:<7} {listen:<22} {pid:>7} {peer.restarts:>8}"
            f"  {peer.state.value:<8} {d.identity().text:<54} {d.path}"
        )
    sys.stdout.flush()


def _stop_all(sup: Supervisor) -> None:
    """SIGTERM every running peer; SIGKILL what has not stopped after STOP_TIMEOUT."""
    procs = [p.proc for p in sup.peers if isinstance(p.proc, subprocess.Popen)]
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    sup.stopped()
