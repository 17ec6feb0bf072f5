"""`pttsync launch`: N local nodes, one process each, connected to each other.

`launch N --dir DIR` makes N data directories in one topic (peer 0 its
master, the others members admitted by peer 0) if they do not exist yet,
starts one `pttsync run` process per peer on consecutive ports, prints a
table once every peer is up (or failed), and supervises them
(supervisor.py): a peer that exits is reported and restarted with backoff
while the others run on (`--no-restart` leaves it down, for crash
experiments).  In the foreground it ends on Ctrl-C or SIGTERM and stops
every peer; if it is killed, its peers see their lifeline close and stop
too.  With `--detach` the same supervisor runs in the background, in a
session of its own with its output in DIR/launch.log, and `launch` returns
once the peers have settled; the detaching process hands its lock on DIR
down to it, so no other launch can slip in between.

Either way the supervisor holds DIR/launch.lock while it runs, keeps
DIR/launch.json up to date (launchstate.py) and answers on DIR/launch.sock
(launchsock.py); `launch ps|logs|stop|start|down --dir DIR` (launchctl.py,
launchlogs.py) use them.  Each peer logs to DIR/peer-i/node.log.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import PttsyncError, UsageError
from . import launchctl, launchlogs, launchstate
from .launchsock import Controller, ControlServer
from .options import add_command, add_json, bounded, port, seconds
from .output import emit_json, tell
from .run import make_peers
from .supervisor import STOP_TIMEOUT, Peer, State, Supervisor, describe_exit

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .options import Subparsers
    from .options import Subparsers as _SubParsersAction
    from .supervisor import Event
else:
    _SubParsersAction = argparse._SubParsersAction  # generic only to type checkers

TICK = 0.2  # seconds between looks at the peers
DETACH_TIMEOUT = 120.0  # seconds `launch --detach` waits for its peers to settle


class _Forms(_SubParsersAction):
    """launch's forms: a number (`launch 3 ...`, the form named N) or an action name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = _NumberOrName()

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, list)
        if _is_number(values[0]):
            values = ["N", *values]  # the form N, and the number its argument
        super().__call__(parser, namespace, values, option_string)


class _NumberOrName(dict[str, Any]):
    def __contains__(self, key: object) -> bool:
        return super().__contains__(key) or (isinstance(key, str) and _is_number(key))


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "launch",
        help="start N local nodes as processes, connected; ps, logs, stop, start, down",
        description=(
            "Start N local nodes, one `pttsync run` process each, and supervise them, in"
            " the foreground or (--detach) in the background; then look at them and steer"
            " them with the other forms, which act on the launch's state in DIR."
        ),
        epilog=(
            "PEER is a peer's name, peer-1, or its number, 1.  `pttsync launch FORM --help`"
            " (e.g. `pttsync launch N --help`) tells more about each form."
        ),
    )
    forms = p.add_subparsers(
        dest="form", metavar="FORM", title="forms (FORM)", required=True, action=_Forms
    )
    q = add_command(
        forms,
        "N",
        cmd_launch,
        help="`launch 3 --dir DIR [--detach]`: start 3 peers (1..64) and supervise them",
        description=(
            "Make N data directories under DIR (peer-0, peer-1, ..., all in one topic) if"
            " they are not there yet, and run a node on each, listening on consecutive"
            " ports from --base-port and joining the first; print a table once they are"
            " up.  A peer that exits is reported and restarted with backoff (not with"
            " --no-restart).  In the foreground, Ctrl-C or SIGTERM stops them all, and so"
            " does killing launch.  With --detach the supervisor runs in the background"
            " (its output in DIR/launch.log) and launch returns once the peers are up:"
            " then `pttsync launch ps|logs|stop|start|down --dir DIR` act on it.  Exit"
            " status 1 if some peer is not up."
        ),
        data=False,
        topic=False,
    )
    q.prog = "pttsync launch"
    q.usage = "%(prog)s N --dir DIR [--detach] [--json] [options]"
    q.add_argument("n", metavar="N", type=bounded(1, 64), help="how many nodes (1..64)")
    q.add_argument(
        "--dir", required=True, metavar="DIR", help="where the peers' directories go: DIR/peer-i"
    )
    q.add_argument(
        "--detach",
        action="store_true",
        help="run the supervisor in the background; return once the peers are up",
    )
    q.add_argument(
        "--base-port",
        type=port,
        default=7400,
        metavar="PORT",
        help="the first node's port; the others take the next ones (default: %(default)s)",
    )
    q.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address to listen on (default: %(default)s)",
    )
    q.add_argument(
        "--sync-interval",
        type=seconds,
        metavar="SECONDS",
        help="seconds between sync rounds (default: run's default)",
    )
    q.add_argument(
        "--no-restart",
        action="store_true",
        help="leave a peer that exits down (for crash experiments) instead of restarting it",
    )
    q.add_argument(
        "--metrics-port",
        type=port,
        metavar="PORT",
        help="serve each peer's Prometheus metrics: peer-i at http://HOST:PORT+i/metrics",
    )
    q.add_argument("--daemon-lock-fd", type=int, help=argparse.SUPPRESS)  # --detach's child
    add_json(q)
    launchctl.register(forms)
    launchlogs.register(forms)


def cmd_launch(args: argparse.Namespace) -> int:
    from ..net.controlwire import CONTROL_SOCKET, check_socket_path  # noqa: PLC0415

    root = Path(args.dir).absolute()
    n, base = args.n, args.base_port
    if base + n - 1 > 65535:
        raise UsageError(f"--base-port {base} leaves no room for {n} ports")
    metrics = args.metrics_port
    if metrics is not None:
        overlaps = metrics < base + n and base < metrics + n
        if overlaps or metrics + n - 1 > 65535:
            raise UsageError(f"--metrics-port {metrics}: {n} ports from it, apart from the peers'")
    check_socket_path(root / launchstate.SOCKET_FILE)
    check_socket_path(root / f"peer-{n - 1}" / CONTROL_SOCKET)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot make the directory {root}: {exc.strerror}") from None
    if args.daemon_lock_fd is None:
        lock = launchstate.take_lock(root)
    else:
        lock = launchstate.adopt_lock(args.daemon_lock_fd)
    try:
        if args.daemon_lock_fd is None:  # (a detached child's parent did it)
            _replace_unreadable_state(root)
        dirs = [d.path for d in make_peers(root, n)]
        if args.detach:
            return _detach(args, root, lock)
        return _supervise(args, root, dirs)
    finally:
        os.close(lock)  # a detached supervisor holds its own copy


def _replace_unreadable_state(root: Path) -> None:
    """A state file no launch can read (damaged, or not ours) is set aside: with the
    lock held no launch runs, and this one writes its own."""
    try:
        launchstate.read_state(root)
    except UsageError as exc:
        path = root / launchstate.STATE_FILE
        aside = path.with_name(path.name + ".unreadable")
        path.replace(aside)
        tell(f"pttsync: {exc}; set aside as {aside}")


# -- --detach ------------------------------------------------------------------------


def _detach(args: argparse.Namespace, root: Path, lock: int) -> int:
    """Start the supervisor in the background with our lock; its table once peers settle."""
    cmd = [sys.executable, "-m", "pttsync"]
    cmd += ["-v"] * getattr(args, "verbose", 0) + ["-q"] * getattr(args, "quiet", False)
    if getattr(args, "log_format", "text") != "text":
        cmd += ["--log-format", args.log_format]
    cmd += ["launch", str(args.n), "--dir", str(root), "--base-port", str(args.base_port)]
    cmd += ["--host", args.host, "--daemon-lock-fd", str(lock)]
    if args.sync_interval is not None:
        cmd += ["--sync-interval", str(args.sync_interval)]
    if args.no_restart:
        cmd += ["--no-restart"]
    if args.metrics_port is not None:
        cmd += ["--metrics-port", str(args.metrics_port)]
    log = root / launchstate.LOG_FILE
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # no Ctrl-C or hang-up from this terminal
            pass_fds=(lock,),
            cwd="/",
        )
    deadline = time.monotonic() + DETACH_TIMEOUT
    while True:
        code = proc.poll()
        if code is not None:
            tail = log.read_text(errors="replace").splitlines()[-5:]
            raise PttsyncError(
                f"launch's supervisor ended ({describe_exit(code)}); its log {log} ends:\n"
                + "\n".join(tail)
            )
        state = launchstate.read_state(root)
        if state is not None and state["supervisor"].get("pid") == proc.pid:
            if state["settled"] or time.monotonic() > deadline:
                break
        elif time.monotonic() > deadline:
            proc.kill()
            raise PttsyncError(f"launch's supervisor wrote no state in {DETACH_TIMEOUT:g} s")
        time.sleep(0.1)
    # The supervisor runs on, past this process (init reaps it): not ours to wait for,
    # and no "subprocess is still running" warning when `proc` is collected.
    proc.returncode = 0
    view = launchstate.view(state, running=True)
    how = f"`pttsync launch down --dir {root}` stops them"
    return _announce(view, args.json, how, sys.stderr if args.json else sys.stdout)


def _announce(view: dict[str, Any], as_json: bool, how: str, out: TextIO) -> int:
    """The table (or JSON) and how many peers are up; 0 if all of them."""
    if as_json:
        emit_json(view)
    else:
        print("\n".join(launchstate.table(view)))
    sys.stdout.flush()
    peers = view["peers"]
    up = sum(p["state"] == "up" for p in peers)
    which = "all peers are up" if up == len(peers) else f"{up} of {len(peers)} peers are up"
    print(f"{which}; {how}", file=out, flush=True)
    return 0 if up == len(peers) else 1


# -- the supervisor ------------------------------------------------------------------


def _record(args: argparse.Namespace, root: Path, dirs: list[Path]) -> launchstate.Record:
    """What launch.json will say of this launch, its peers not started yet."""
    from ..datadir import DataDir  # noqa: PLC0415
    from ..net.network import format_address  # noqa: PLC0415 - pttsync.net loads on use

    detached = args.daemon_lock_fd is not None
    return launchstate.Record(
        root,
        supervisor={
            "pid": os.getpid(),
            "started": launchstate.now_iso(),
            "ended": None,
            "detached": detached,
            "log": str(root / launchstate.LOG_FILE) if detached else None,
        },
        settings={
            "n": args.n,
            "host": args.host,
            "base_port": args.base_port,
            "sync_interval": args.sync_interval,
            "restart": not args.no_restart,
            "metrics_port": args.metrics_port,
        },
        listens=[format_address(args.host, args.base_port + i) for i in range(args.n)],
        peer_ids=[DataDir(d).identity().text for d in dirs],
    )


def _spawner(
    args: argparse.Namespace, dirs: list[Path], record: launchstate.Record
) -> Callable[[Peer], subprocess.Popen[bytes]]:
    """How the supervisor starts a peer: `pttsync run` on its directory and port."""
    from ..net.network import format_address  # noqa: PLC0415 - pttsync.net loads on use

    listens = record.listens

    def spawn(peer: Peer) -> subprocess.Popen[bytes]:
        if isinstance(peer.proc, subprocess.Popen) and peer.proc.stdin is not None:
            peer.proc.stdin.close()  # the lifeline of the process that exited
        cmd = [sys.executable, "-m", "pttsync", "-v", "run", "--data", str(dirs[peer.index])]
        cmd += ["--listen", listens[peer.index], "--lifeline", "--restarts", str(peer.restarts)]
        if args.sync_interval is not None:
            cmd += ["--sync-interval", str(args.sync_interval)]
        if peer.index:
            cmd += ["--join", listens[0]]
        if args.metrics_port is not None:
            cmd += ["--metrics", format_address(args.host, args.metrics_port + peer.index)]
        record.started[peer.index] = launchstate.now_iso()
        with open(peer.log, "ab") as logfile:
            # stdin is the lifeline: its pipe closes when launch ends, however it ends.
            return subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    return spawn


def _supervise(args: argparse.Namespace, root: Path, dirs: list[Path]) -> int:
    detached = args.daemon_lock_fd is not None
    record = _record(args, root, dirs)

    def is_ready(peer: Peer) -> bool:
        return _answers(dirs[peer.index] / "control.sock")

    peers = [Peer(i, d / "node.log") for i, d in enumerate(dirs)]
    sup = Supervisor(peers, _spawner(args, dirs, record), is_ready, restart=not args.no_restart)
    # With --json, stdout has the JSON alone; the event lines go to stderr.
    out = sys.stderr if args.json else sys.stdout
    server = ControlServer(root)
    control = Controller(sup, record)
    announced = False
    if detached:
        when = launchstate.now_iso()
        print(f"{when} supervisor pid {os.getpid()} starts {args.n} peers in {root}", flush=True)
    # SIGTERM arrives as a KeyboardInterrupt, like Ctrl-C (cli/main.py).
    try:
        sup.start_all(time.monotonic())
        while not (control.down and not sup.stopping()):
            now = time.monotonic()
            _report(sup.step(now), out, stamp=detached)
            for conn, request in server.accept():
                control.handle(conn, request, now)
            control.answer_settled()
            state = record.save(sup)
            if not announced and sup.settled():
                announced = True
                how = f"`pttsync launch down --dir {root}`" if detached else "Ctrl-C (or SIGTERM)"
                _announce(
                    launchstate.view(state, running=True), args.json, f"{how} stops them", out
                )
            if sup.failed():
                tell("no peer is running and none will restart")
                return 1
            server.wait(TICK)
        print("stopped every peer (launch down)", file=out, flush=True)
        return 0
    except KeyboardInterrupt:
        print("stopping all peers", file=out, flush=True)
        return 0
    finally:
        server.close()
        _stop_all(sup, out, stamp=detached)
        record.supervisor["ended"] = launchstate.now_iso()
        record.save(sup)
        control.finish()
        if not args.json and any(p.restarts or p.last_exit for p in peers):
            print("\n".join(launchstate.table(launchstate.view(record.state(sup), running=True))))


def _answers(path: Path) -> bool:
    """Whether a node answers on the control socket `path` (a stale file does not)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def _report(events: list[Event], out: TextIO, *, stamp: bool) -> None:
    """Print the event lines; with the time first in a detached supervisor's log."""
    for event in events:
        line = f"{launchstate.now_iso()} {event.line}" if stamp else event.line
        print(line, file=out, flush=True)


def _stop_all(sup: Supervisor, out: TextIO, *, stamp: bool) -> None:
    """Stop every running peer: SIGTERM, SIGKILL after STOP_TIMEOUT; close their lifelines."""
    sup.stop_all(time.monotonic())
    deadline = time.monotonic() + STOP_TIMEOUT + 5
    while sup.stopping() and time.monotonic() < deadline:
        time.sleep(0.05)
        killed = [e for e in sup.step(time.monotonic()) if e.kind == "killed"]
        _report(killed, out, stamp=stamp)
    for p in sup.peers:
        if isinstance(p.proc, subprocess.Popen):
            if p.proc.stdin is not None:
                p.proc.stdin.close()
            if p.state is State.STOPPING:  # not even SIGKILL worked in time
                p.proc.kill()
