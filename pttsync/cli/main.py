"""Argument parsing, logging set-up and error reporting for every command.

This is the only place in pttsync that configures logging handlers.
Exit codes: 0 success, 1 failure, 2 bad usage (bad arguments or data
directory), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

from .. import __version__
from ..core.synthetic import DEFAULT_BATCH, MAX_BATCH
from ..core.timeutil import parse_iso
from ..errors import LocalError, PttsyncError, UsageError
from . import commands, inspect, sync

if TYPE_CHECKING:
    from collections.abc import Sequence

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
    json_arg(p)
    p.set_defaults(func=commands.cmd_init)

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        print("pttsync: interrupted", file=sys.stderr)
        return 130
    except LocalError as exc:
        print(f"pttsync: error: {exc}", file=sys.stderr)
        return 2
    except PttsyncError as exc:
        print(f"pttsync: error: {exc}", file=sys.stderr)
        return 1
    return result
