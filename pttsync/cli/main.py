"""The top-level parser, logging set-up, dispatch and error reporting.

Each command's module declares its own subparser next to its handler
(`register`); this module adds them in the order `pttsync --help` lists them.
This is the only place in pttsync that configures logging handlers: one
handler on the root logger, to stderr, as text or JSON (logformat.py).
With --log-format json, the error that ends a command is a JSON record too
(and so is a bug's traceback), so that stderr is JSON lines throughout;
argparse's usage errors stay text (they come before the options are read).
Exit codes: 0 success, 1 failure (and `get` of a missing document), 2 bad
usage (bad arguments, a bad data directory, or no node running on it:
NodeNotRunningError is a LocalError, fixed by the caller starting one),
130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .. import __version__
from ..errors import LocalError, PttsyncError
from . import client, demo, documents, gen, init, inspect, launch, log, run, simulate, sync, watch
from .logformat import StderrHandler, formatter
from .options import CommandParser, TopParser, add_common, json_usage_errors, merge_common
from .output import configure_output, end_live_line, json_stderr, mark_entry
from .triorun import Terminated

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = TopParser(
        prog="pttsync",
        description="A peer-to-peer oplog sync engine after PTT.ai's PIP-11.",
    )
    parser.add_argument("--version", action="version", version=f"pttsync {__version__}")
    add_common(parser, top=True)
    # Every subparser (and theirs) is a CommandParser: -v, -q, --log-format after the command too.
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=CommandParser
    )
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
        log.register,
        client.register,  # status, peers, member add | remove
        watch.register,
        simulate.register,
    ):
        register(sub)
    return parser


@contextlib.contextmanager
def _logging(verbose: int, quiet: bool, log_format: str) -> Iterator[None]:
    """This CLI's handler on the root logger, and its level: -q errors, default warnings,
    -v info, -vv debug.  Other handlers (pytest's, say) stay; a handler an earlier call
    left is replaced.  On the way out, things are put back as they were, so that main()
    in process (tests, tools) leaves no trace in logging."""
    level = (
        logging.ERROR
        if quiet
        else (logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    handler = StderrHandler()
    handler.setFormatter(formatter(log_format))
    before = root.level
    root.addHandler(handler)
    root.setLevel(level)
    configure_output(quiet=quiet, json_stderr=log_format == "json")
    try:
        yield
    finally:
        root.removeHandler(handler)
        if root.level == level:  # (unless a call in another thread set its own since)
            root.setLevel(before)
        configure_output(quiet=False, json_stderr=False)


def _fail(message: str, code: int, *, error: bool = True) -> int:
    """Say why the command stopped, on stderr (a JSON record with --log-format json)."""
    end_live_line()
    if json_stderr():
        level = logging.ERROR if error else logging.WARNING
        logging.getLogger("pttsync").log(level, message, extra={"exit_code": code})
    else:
        print(f"pttsync: {'error: ' if error else ''}{message}", file=sys.stderr)
    return code


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


class _Signals:
    terminated = False  # a SIGTERM came (and is being delivered as SIGINT)


def _terminate(_signum: int, _frame: object) -> None:
    _Signals.terminated = True
    if signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL, None):
        raise Terminated
    # Delivered the way Ctrl-C is: trio, when it runs, raises it where that is safe
    # (an exception raised here, inside trio's own code, breaks its run loop).
    signal.raise_signal(signal.SIGINT)


def entry() -> None:
    """The `pttsync` command itself (its console script, and `python -m pttsync`):
    `main` as the process's entry, which a command may end early (`end_process_now`)."""
    mark_entry()
    sys.exit(main())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    json_usage_errors(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    merge_common(args)
    with _logging(args.verbose, args.quiet, args.log_format):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """Run the command with SIGTERM taken as Ctrl-C; report how it failed, if it did."""
    # Only the main thread may set handlers (tests run the CLI in worker threads too).
    previous = None
    _Signals.terminated = False
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _terminate)
    try:
        result: int = _unwrapped(args)
    except KeyboardInterrupt as exc:
        if _Signals.terminated or isinstance(exc, Terminated):
            return _fail("terminated", 143, error=False)
        return _fail("interrupted", 130, error=False)
    except LocalError as exc:
        return _fail(str(exc), 2)
    except PttsyncError as exc:
        return _fail(str(exc), 1)
    except BrokenPipeError:
        # The reader went away (`pttsync watch | head`): stop quietly, as Unix
        # tools do, and point stdout at /dev/null so flushing it at exit is quiet.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:
        if not json_stderr():
            end_live_line()
            raise  # a bug of ours: Python prints the traceback
        # A bug of ours, as one JSON record with its traceback, so stderr stays JSON.
        logging.getLogger("pttsync").critical(
            "internal error (a bug in pttsync)", exc_info=True, extra={"exit_code": 1}
        )
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result
