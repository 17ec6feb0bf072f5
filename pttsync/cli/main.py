"""Argument parsing, logging set-up and error reporting for every command.

This is the only place in pttsync that configures logging handlers.
Exit codes: 0 success, 1 failure (and `get` of a missing document), 2 bad
usage (bad arguments, a bad data directory, or no node running on it:
NodeNotRunningError is a LocalError, fixed by the caller starting one),
130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from typing import TYPE_CHECKING

from .. import __version__
from ..core.documents.docstore import MAX_LIST
from ..core.timeutil import parse_iso
from ..errors import LocalError, PttsyncError, UsageError
from ..synthetic import DEFAULT_BATCH, MAX_BATCH
from . import client, commands, inspect, simulate, sync

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import ModuleType

log = logging.getLogger(__name__)


def _iso(text: str) -> int:
    try:
        return parse_iso(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _batch(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_BATCH:,}")
    return value


def _rounds(text: str) -> int:
    value = _count(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = _count(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


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


def _port(text: str) -> int:
    return _bounded(1, 65535)(text)


def _port_or_zero(text: str) -> int:
    return _bounded(0, 65535)(text)


def _run_module() -> ModuleType:
    # `pttsync run`, `launch` and `demo` live in run.py, which pulls in the whole
    # network node: imported only when one of them runs, so the other commands
    # start fast and work without it.
    from . import run  # noqa: PLC0415

    return run


def _run(args: argparse.Namespace) -> int:
    result: int = _run_module().cmd_run(args)
    return result


def _launch(args: argparse.Namespace) -> int:
    if args.base_port + args.n - 1 > 65535:
        raise UsageError(f"--base-port {args.base_port} leaves no room for {args.n} ports")
    result: int = _run_module().cmd_launch(args)
    return result


def _demo(args: argparse.Namespace) -> int:
    result: int = _run_module().cmd_demo(args)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pttsync",
        description="A peer-to-peer oplog sync engine after PTT.ai's PIP-11.",
    )
    parser.add_argument("--version", action="version", version=f"pttsync {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress or log output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", required=True, metavar="DIR", help="the peer's data directory")

    def topic_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--topic", metavar="ID", help="topic ID or unique prefix (default: the first topic)"
        )

    def json_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = sub.add_parser(
        "init",
        help="make an identity and a new topic in a data directory",
        description="Make a new Ed25519 identity and a new topic in DIR, and print their IDs.",
    )
    data_arg(p)
    p.add_argument("--name", default="main", help="the new topic's name (default: main)")
    p.add_argument(
        "--topic-of",
        metavar="DIR",
        help="join the topic of another local data directory instead of making a new one",
    )
    p.add_argument(
        "--topic", metavar="ID", help="with --topic-of: which of DIR's topics (default: its first)"
    )
    p.add_argument(
        "--invite",
        metavar="TOKEN",
        help="join the topic a token names (from: pttsync invite, on a peer of that topic)",
    )
    json_arg(p)
    p.set_defaults(func=commands.cmd_init)

    p = sub.add_parser(
        "invite",
        help="print a token naming this peer's topic, for a new peer to join",
        description=(
            "Print a token that names a topic (ptt1...).  On the new machine, run"
            " `pttsync init --data DIR --invite TOKEN`, give its peer ID to a master, who"
            " runs `pttsync member add --data DIR PEER_ID`, then start the new peer with"
            " `pttsync run --data DIR --listen HOST:PORT --join MASTER_HOST:PORT`."
            "  The token holds no secret: only a master's admission lets a peer in."
        ),
    )
    data_arg(p)
    topic_arg(p)
    json_arg(p)
    p.set_defaults(func=commands.cmd_invite)

    p = sub.add_parser(
        "gen",
        help="write synthetic signed oplogs (demos, benchmarks)",
        description=(
            "Write COUNT synthetic signed, valid oplogs with update times spread uniformly"
            " over [FROM, TO).  The same key, range and seed always give the same oplogs."
        ),
    )
    data_arg(p)
    topic_arg(p)
    p.add_argument("--count", type=_count, required=True, help="how many oplogs to write")
    p.add_argument(
        "--from",
        dest="start",
        type=_iso,
        required=True,
        metavar="ISO",
        help="earliest update time, e.g. 2025-01-01 (UTC unless an offset is given)",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=_iso,
        required=True,
        metavar="ISO",
        help="update times are before this, e.g. 2026-01-01",
    )
    p.add_argument("--seed", type=int, help="random seed (default: a random one, printed)")
    p.add_argument(
        "--batch",
        type=_batch,
        default=DEFAULT_BATCH,
        help="oplogs per transaction (default: %(default)s)",
    )
    p.add_argument(
        "--sign-workers",
        type=int,
        choices=[0, 1],
        default=1,
        help="1 (default): sign in a worker process, overlapped with storing; 0: sign inline",
    )
    json_arg(p)
    p.set_defaults(func=commands.cmd_gen)

    p = sub.add_parser(
        "sync",
        help="sync two local data directories through the PIP-11 session code",
        description=(
            "Run PIP-11 sync rounds between two data directories in this process (A"
            " requests, B answers), through the same session code and wire format the"
            " network uses, until both trees agree.  Prints round trips, bytes each way,"
            " oplogs sent and received, and both digests.  Exits 1 if they do not converge."
        ),
    )
    p.add_argument(
        "--local", nargs=2, required=True, metavar=("A", "B"), help="the two data directories"
    )
    topic_arg(p)
    p.add_argument(
        "--max-rounds",
        type=_rounds,
        default=8,
        help="give up after this many rounds (default: %(default)s)",
    )
    p.add_argument(
        "--now", type=_iso, metavar="ISO", help="the time both sides use (default: the clock)"
    )
    json_arg(p)
    p.set_defaults(func=sync.cmd_sync)

    p = sub.add_parser(
        "inspect",
        help="look inside a store (works while no node runs)",
        description="Look at a store's Merkle tree, tree lists and oplogs.",
    )
    isub = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    q = isub.add_parser(
        "merkle",
        help="the Merkle tree, down to a level",
        description=(
            "Print the Merkle tree from its years down to LEVEL: each node's level, start"
            " (ISO 8601, UTC), hash, number of children and number of leaves."
            "  With --json, print the nodes of LEVEL as a list."
        ),
    )
    data_arg(q)
    topic_arg(q)
    q.add_argument(
        "--level",
        choices=["year", "month", "day", "hour"],
        default="month",
        help="the deepest level to show (default: month)",
    )
    json_arg(q)
    q.set_defaults(func=inspect.cmd_merkle)

    q = isub.add_parser(
        "tree-list",
        help="the PIP-11 tree list for a to-sync-time",
        description=(
            "Print the tree list a sync round compares for to-sync-time AT: past years,"
            " then this year's months, this month's days and today's hours before AT's hour."
        ),
    )
    data_arg(q)
    topic_arg(q)
    q.add_argument("--at", type=_iso, required=True, metavar="ISO", help="the to-sync-time")
    json_arg(q)
    q.set_defaults(func=inspect.cmd_tree_list)

    q = isub.add_parser(
        "oplog",
        help="one decoded oplog and its status",
        description="Print one oplog, found by its hex ID or a unique prefix of it.",
    )
    data_arg(q)
    topic_arg(q)
    q.add_argument("oplog_id", metavar="OPLOG_ID", help="hex oplog ID, or a unique prefix")
    json_arg(q)
    q.set_defaults(func=inspect.cmd_oplog)

    q = isub.add_parser(
        "check",
        help="verify the store's consistency",
        description=(
            "Check that every valid oplog has its leaf, every leaf its oplog, and that every"
            " tree node matches a rebuild from the leaves.  Exits 1 if anything is wrong."
        ),
    )
    data_arg(q)
    topic_arg(q)
    json_arg(q)
    q.set_defaults(func=inspect.cmd_check)

    # -- a running node ---------------------------------------------------------------

    p = sub.add_parser(
        "run",
        help="run a network node on a data directory (until Ctrl-C)",
        description=(
            "Run a node: listen for peers, dial the --join addresses, sync every topic"
            " with connected peers, push new writes, and serve DIR/control.sock so that"
            " put, get, list, status, peers, member and watch can talk to it."
        ),
    )
    data_arg(p)
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
        type=_bounded(1, 1024),
        default=16,
        help="connected peers at most (default: %(default)s)",
    )
    p.add_argument(
        "--sync-interval",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="seconds between sync rounds with each peer (default: %(default)s)",
    )
    p.add_argument(
        "--no-push", action="store_true", help="do not push new writes; rely on sync rounds"
    )
    p.set_defaults(func=_run)

    p = sub.add_parser(
        "launch",
        help="start N local nodes as processes, connected to each other",
        description=(
            "Make N data directories under DIR (peer0, peer1, ..., all in one topic) if"
            " they are not there yet, and run a node on each, listening on consecutive"
            " ports from --base-port and joining the first.  Stops them all on Ctrl-C."
        ),
    )
    p.add_argument("n", metavar="N", type=_bounded(1, 64), help="how many nodes (1..64)")
    p.add_argument("--dir", required=True, metavar="DIR", help="where the data directories go")
    p.add_argument(
        "--base-port",
        type=_port,
        default=7400,
        metavar="PORT",
        help="the first node's port; the others take the next ones (default: %(default)s)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--sync-interval",
        type=_seconds,
        metavar="SECONDS",
        help="seconds between sync rounds (default: run's default)",
    )
    p.set_defaults(func=_launch)

    p = sub.add_parser(
        "demo",
        help="a self-contained demo: peers in one process write and converge",
        description=(
            "Start --peers nodes in this process over real TCP on localhost, make random"
            " writes on random peers, and show them converge: every peer ends with the"
            " same documents and the same Merkle digest."
        ),
    )
    p.add_argument(
        "--peers",
        type=_bounded(1, 64),
        default=5,
        metavar="N",
        help="how many peers (1..64, default: %(default)s)",
    )
    p.add_argument(
        "--writes",
        type=_bounded(1, 100_000),
        default=20,
        metavar="N",
        help="how many writes (default: %(default)s)",
    )
    p.add_argument(
        "--dir", metavar="DIR", help="keep the data directories here (default: a temporary one)"
    )
    p.add_argument(
        "--base-port",
        type=_port_or_zero,
        default=0,
        metavar="PORT",
        help="the first peer's port (default: 0, free ports picked for you)",
    )
    p.add_argument("--seed", type=int, help="random seed (default: a random one, printed)")
    json_arg(p)
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "put",
        help="write a document through the running node",
        description=(
            "Write VALUE (JSON text) as the document KEY's new version, through the node"
            " running on DIR, which pushes it to its peers.  Strings need JSON quotes:"
            """ pttsync put --data DIR greeting '"hello"'."""
        ),
    )
    data_arg(p)
    topic_arg(p)
    p.add_argument("key", metavar="KEY", help="the document's key (printable text, 128 bytes)")
    p.add_argument("value", metavar="VALUE", help="the new value, as JSON text")
    json_arg(p)
    p.set_defaults(func=client.cmd_put)

    p = sub.add_parser(
        "get",
        help="read a document from the running node",
        description=(
            "Print the value of document KEY as JSON (exit 1 if there is no such document)."
            "  With --json, print its whole state: the shown version, whether it is"
            " pending, and any conflicting versions."
        ),
    )
    data_arg(p)
    topic_arg(p)
    p.add_argument("key", metavar="KEY", help="the document's key")
    json_arg(p)
    p.set_defaults(func=client.cmd_get)

    p = sub.add_parser(
        "delete",
        help="delete a document through the running node",
        description="Delete document KEY (a tombstone version: it can be put again).",
    )
    data_arg(p)
    topic_arg(p)
    p.add_argument("key", metavar="KEY", help="the document's key")
    json_arg(p)
    p.set_defaults(func=client.cmd_delete)

    p = sub.add_parser(
        "list",
        help="list documents from the running node",
        description="List documents in key order: key, value, and any pending or conflict flag.",
    )
    data_arg(p)
    topic_arg(p)
    p.add_argument("--prefix", default="", help="only keys that start with this")
    p.add_argument("--after", metavar="KEY", help="only keys after this one (to page on)")
    p.add_argument(
        "--limit",
        type=_bounded(1, MAX_LIST),
        default=100,
        help=f"list at most this many (1..{MAX_LIST:,}, default: %(default)s)",
    )
    p.add_argument("--deleted", action="store_true", help="list deleted documents too")
    json_arg(p)
    p.set_defaults(func=client.cmd_list)

    p = sub.add_parser(
        "status",
        help="the running node's peer ID, address, peers and topics",
        description=(
            "Print the node's peer ID, listen address, number of connected peers, and"
            " per topic its valid and pending oplogs and Merkle digest."
        ),
    )
    data_arg(p)
    json_arg(p)
    p.set_defaults(func=client.cmd_status)

    p = sub.add_parser(
        "peers",
        help="the running node's connected peers",
        description="Print a table of the peers the node on DIR is connected to.",
    )
    data_arg(p)
    json_arg(p)
    p.set_defaults(func=client.cmd_peers)

    p = sub.add_parser(
        "member",
        help="add or remove a topic member (needs a master's node)",
        description=(
            "Write a ROLE oplog through the running node: make a peer a member (or a"
            " master), or remove it.  Only a master may; the change becomes valid once"
            " the topic's masters' quorum signs it."
        ),
    )
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = msub.add_parser(
        "add",
        help="make a peer a member (or a master)",
        description="Make PEER_ID a member of the topic, or a master with --master.",
    )
    data_arg(q)
    topic_arg(q)
    q.add_argument("peer_id", metavar="PEER_ID", help="the peer's ID (52 base32 characters)")
    q.add_argument("--master", action="store_true", help="make it a master, not just a member")
    json_arg(q)
    q.set_defaults(func=client.cmd_member)
    q = msub.add_parser(
        "remove",
        help="remove a peer from the topic",
        description=(
            "Take PEER_ID's role away: its new writes are refused from now on."
            "  A topic keeps at least one master."
        ),
    )
    data_arg(q)
    topic_arg(q)
    q.add_argument("peer_id", metavar="PEER_ID", help="the peer's ID (52 base32 characters)")
    json_arg(q)
    q.set_defaults(func=client.cmd_member, master=False)

    p = sub.add_parser(
        "watch",
        help="print the running node's document changes as they happen",
        description=(
            "Print one line per document change (put, delete, conflict, confirmed,"
            " failed, rolled_back) until Ctrl-C; with --json, one JSON object per line."
        ),
    )
    data_arg(p)
    topic_arg(p)
    json_arg(p)
    p.set_defaults(func=client.cmd_watch)

    simulate.add_parser(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.ERROR
        if quiet
        else (logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    )
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _unwrapped(args: argparse.Namespace) -> int:
    """Run the command; an error group of one error (trio's nurseries) becomes that error."""
    try:
        result: int = args.func(args)
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, PttsyncError | KeyboardInterrupt | BrokenPipeError):
            raise leaf from None
        raise
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        result: int = _unwrapped(args)
    except KeyboardInterrupt:
        print("pttsync: interrupted", file=sys.stderr)
        return 130
    except LocalError as exc:
        print(f"pttsync: error: {exc}", file=sys.stderr)
        return 2
    except PttsyncError as exc:
        print(f"pttsync: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`pttsync watch | head`): stop quietly, as Unix
        # tools do, and point stdout at /dev/null so flushing it at exit is quiet.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return result
