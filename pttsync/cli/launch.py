"""`pttsync launch N`: N local nodes, one process each, connected to each other.

Makes N data directories in one topic (peer 0 its master, the others members
admitted by peer 0) if they do not exist yet, starts one `pttsync run`
process per peer on consecutive ports, prints a table, and stops them all
on Ctrl-C or SIGTERM.  Each peer logs to DIR/peer-i/node.log.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataDirError, UsageError
from .options import add_command, bounded, port, seconds
from .run import make_peers

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from ..datadir import DataDir
    from .options import Subparsers

READY_TIMEOUT = 20.0  # seconds for a launched peer to open its control socket
STOP_TIMEOUT = 10.0  # seconds for a peer to stop after SIGTERM before it is killed


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "launch",
        cmd_launch,
        help="start N local nodes as processes, connected to each other",
        description=(
            "Make N data directories under DIR (peer0, peer1, ..., all in one topic) if"
            " they are not there yet, and run a node on each, listening on consecutive"
            " ports from --base-port and joining the first.  Stops them all on Ctrl-C."
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


def cmd_launch(args: argparse.Namespace) -> int:
    from ..net.network import format_address  # noqa: PLC0415 - pttsync.net loads on use

    if args.base_port + args.n - 1 > 65535:
        raise UsageError(f"--base-port {args.base_port} leaves no room for {args.n} ports")
    root = Path(args.dir)
    n, host, base = args.n, args.host, args.base_port
    if not 0 < base <= 65535 - n + 1:
        raise UsageError(f"ports {base}..{base + n - 1} are not all valid")
    dirs = make_peers(root, n)
    listens = [format_address(host, base + i) for i in range(n)]
    procs: list[subprocess.Popen[bytes]] = []
    with _stop_on(signal.SIGTERM):
        try:
            for i, d in enumerate(dirs):
                cmd = [sys.executable, "-m", "pttsync", "-v", "run", "--data", str(d.path)]
                cmd += ["--listen", listens[i]]
                if args.sync_interval is not None:
                    cmd += ["--sync-interval", str(args.sync_interval)]
                if i:
                    cmd += ["--join", listens[0]]
                with open(d.path / "node.log", "ab") as logfile:
                    procs.append(
                        subprocess.Popen(
                            cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    )
            _wait_ready(dirs, procs)
            _print_table(dirs, procs, listens)
            print("all peers are up; Ctrl-C (or SIGTERM) stops them", flush=True)
            while True:
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        print(
                            f"peer-{i} exited with code {p.returncode}"
                            f" (see {dirs[i].path / 'node.log'})",
                            file=sys.stderr,
                        )
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping all peers", flush=True)
            return 0
        finally:
            _stop_all(procs)


@contextlib.contextmanager
def _stop_on(signum: int) -> Iterator[None]:
    """Turn `signum` into KeyboardInterrupt for the duration."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, old)


def _wait_ready(dirs: list[DataDir], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for d, p in zip(dirs, procs, strict=True):
        while not (d.path / "control.sock").exists():
            if p.poll() is not None:
                raise DataDirError(f"{d.path}: the node exited (see {d.path / 'node.log'})")
            if time.monotonic() > deadline:
                raise DataDirError(f"{d.path}: the node did not start within {READY_TIMEOUT} s")
            time.sleep(0.05)


def _print_table(
    dirs: list[DataDir], procs: list[subprocess.Popen[bytes]], listens: list[str]
) -> None:
    print(f"{'peer':<8} {'role':<7} {'listen':<22} {'pid':>7}  {'peer id':<54} data")
    for i, (d, p, listen) in enumerate(zip(dirs, procs, listens, strict=True)):
        role = "master" if i == 0 else "member"
        print(f"peer-{i:<3} {role:<7} {listen:<22} {p.pid:>7}  {d.identity().text:<54} {d.path}")
    sys.stdout.flush()


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
