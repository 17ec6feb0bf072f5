"""The top-level parser, logging set-up, dispatch and error reporting.

Each command's module declares its own subparser next to its handler
(`register`); this module adds them in the order `pttsync --help` lists them.
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
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import LocalError, PttsyncError
from . import client, demo, documents, gen, init, inspect, launch, run, simulate, sync, watch

if TYPE_CHECKING:
    from collections.abc import Sequence


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
    # Each module adds its commands, in the order `pttsync --help` lists them.
    for register in (
        init.register,  # init, invite
        gen.register,
        sync.register,
        inspect.register,  # inspect merkle | tree-list | oplog | check
        run.register,
        launch.register,
        demo.register,
        documents.register,  # put, get, delete, list
        client.register,  # status, peers, member add | remove
        watch.register,
        simulate.register,
    ):
        register(sub)
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every command unwinds: its stores close and
    its helper processes (gen's signer) end, instead of dying where it stands."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.verbose, args.quiet)
    # Only the main thread may set handlers (tests run the CLI in worker threads too).
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _terminate)
    try:
        result: int = _unwrapped(args)
    except Terminated:
        print("pttsync: terminated", file=sys.stderr)
        return 143
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
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result
