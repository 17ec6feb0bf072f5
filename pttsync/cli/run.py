"""`pttsync run`: serve one data directory as a network node until Ctrl-C or SIGTERM.

The node stops cleanly (the store is closed; a kill -9 loses nothing
acknowledged).  `make_peers` makes the local data directories, all in one
topic, that `launch` and `demo` run nodes on.

The node itself (trio and pttsync.net) is imported only when one runs: the
parser declared here is built for every command.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.identity import peer_id_text
from ..datadir import DataDir
from ..errors import DataDirError
from .init import admit
from .options import add_command, bounded, count, seconds, seconds_or_off

if TYPE_CHECKING:
    from ..net.config import NodeConfig
    from ..net.node import Node
    from .options import Subparsers


def _split_address(text: str, *, allow_zero: bool) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:7400, or [::1]:7400 for IPv6)"
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise argparse.ArgumentTypeError(
            f"{text!r}: put an IPv6 address in brackets, e.g. [::1]:7400"
        )
    if not host or any(c.isspace() or c in "[]/" for c in host):
        raise argparse.ArgumentTypeError(f"{text!r} has no valid host before the port")
    lowest = 0 if allow_zero else 1
    if not port.isascii() or not port.isdigit() or not lowest <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(
            f"{text!r}: the port is a whole number in {lowest}..65535, not {port!r}"
        )
    return host, int(port)


def _address(text: str) -> tuple[str, int]:
    """HOST:PORT as (host, port); IPv6 as [::1]:7400."""
    return _split_address(text, allow_zero=False)


def _listen_address(text: str) -> tuple[str, int]:
    """HOST:PORT to listen on; port 0 picks a free one."""
    return _split_address(text, allow_zero=True)


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "run",
        cmd_run,
        help="run a network node on a data directory (until Ctrl-C)",
        description=(
            "Run a node: listen for peers, dial the --join addresses, sync every topic"
            " with connected peers, push new writes, and serve DIR/control.sock so that"
            " put, get, list, status, peers, member and watch can talk to it."
        ),
        topic=False,
    )
    p.add_argument(
        "--listen",
        type=_listen_address,
        metavar="HOST:PORT",
        help="accept peers on this address (port 0 picks a free one; default: do not listen)",
    )
    p.add_argument(
        "--join",
        type=_address,
        action="append",
        metavar="HOST:PORT",
        help="a peer to dial (repeat for more)",
    )
    p.add_argument(
        "--max-peers",
        type=bounded(1, 1024),
        default=16,
        help="connected peers at most (default: %(default)s)",
    )
    p.add_argument(
        "--sync-interval",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between sync rounds with each peer (default: %(default)s)",
    )
    p.add_argument(
        "--visit-interval",
        type=seconds_or_off,
        default=60.0,
        metavar="SECONDS",
        help="about every SECONDS visit a known peer this node has no link to, for one sync"
        " round outside the slots; 0: never (default: %(default)s)",
    )
    p.add_argument(
        "--no-push", action="store_true", help="do not push new writes; rely on sync rounds"
    )
    p.add_argument(
        "--metrics",
        type=_listen_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (port 0 picks a free one;"
        " the metrics are listed in docs/pip-11/network.md)",
    )
    p.add_argument(
        "--lifeline",
        action="store_true",
        help="stop when standard input is closed (a supervisor's pipe: `launch` uses it so"
        " that its peers end with it, even if it is killed)",
    )
    p.add_argument(
        "--restarts",
        type=count,
        default=0,
        metavar="N",
        help="how many times a supervisor has restarted this node; status shows it",
    )


def cmd_run(args: argparse.Namespace) -> int:
    import trio  # noqa: PLC0415 - the node loads when it runs

    from ..net.config import NodeConfig  # noqa: PLC0415
    from ..net.network import format_address  # noqa: PLC0415

    def addr(value: tuple[str, int] | str) -> str:
        return value if isinstance(value, str) else format_address(*value)

    config = NodeConfig(
        listen=addr(args.listen) if args.listen else None,
        join=tuple(addr(a) for a in args.join or ()),
        max_peers=args.max_peers,
        sync_interval=args.sync_interval,
        visit_interval=args.visit_interval,
        push=not args.no_push,
        restarts=args.restarts,
    )
    DataDir(args.data).check()
    metrics = addr(args.metrics) if args.metrics else None
    trio.run(_run, Path(args.data), config, args.lifeline, metrics)
    return 0


async def _run(data: Path, config: NodeConfig, lifeline: bool, metrics: str | None) -> None:
    import trio  # noqa: PLC0415

    from ..net.metrics import node_registry  # noqa: PLC0415
    from ..net.metricsserver import serve_metrics  # noqa: PLC0415
    from ..net.serve import serve_node  # noqa: PLC0415

    async def until_signal(cancel: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                print(f"stopping ({signal.Signals(signum).name})", flush=True)
                cancel.cancel()
                return

    async def until_lifeline_closes(cancel: trio.CancelScope) -> None:
        # Standard input is a pipe from the supervisor; anything written on it is ignored.
        async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
            while await stdin.receive_some():
                pass
        print("stopping (the supervisor's lifeline closed)", flush=True)
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(until_signal, nursery.cancel_scope)
        if lifeline:
            nursery.start_soon(until_lifeline_closes, nursery.cancel_scope)
        node: Node = await nursery.start(functools.partial(serve_node, data, config=config))
        print(
            f"pttsync node {peer_id_text(node.peer_id)} listening on"
            f" {node.listen_address or '(not listening)'}; data in {data}",
            flush=True,
        )
        if metrics is not None:
            registry = node_registry(node, process=True)
            bound = await nursery.start(serve_metrics, registry, metrics)
            print(f"metrics at http://{bound}/metrics", flush=True)


def make_peers(root: Path, n: int, *, expiry: int | None = None) -> list[DataDir]:
    """DIR/peer-0 .. peer-(n-1) in one topic: made if missing, checked if present.

    `expiry` (nanoseconds) is the new topic's, if peer-0 founds one here."""
    dirs = [DataDir(root / f"peer-{i}") for i in range(n)]
    for i, d in enumerate(dirs):
        if d.path.exists() and any(d.path.iterdir()):
            d.check()
            continue
        now = time.time_ns()
        if i == 0:
            DataDir.init(d.path, topic_name="main", now=now, nonce=os.urandom(16), expiry=expiry)
            continue
        topic = dirs[0].topic()
        _, identity, _ = DataDir.init(
            d.path, topic_name="main", now=now, nonce=os.urandom(16), topic=topic
        )
        if admit(dirs[0], topic, identity.peer_id, now) is None:
            raise DataDirError(f"{dirs[0].path} is not a master of its topic: cannot admit peers")
    topics = {d.topic().topic_id for d in dirs}
    if len(topics) != 1:
        raise DataDirError(f"the data directories under {root} are not all in one topic")
    return dirs
