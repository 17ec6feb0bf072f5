"""What several commands' parsers share: value types and the common options.

Each command module declares its own subparser with `add_command`, which
adds the --data and --topic options most commands take and names the
handler; `add_json` adds --json, last, as every command lists it.  The
types turn text into values or raise argparse.ArgumentTypeError, whose
message argparse prints as the usage error (exit 2).

-v, -q and --log-format go before the command or after it (`pttsync -v run`
or `pttsync run -v`): the top-level parser declares them, and so does every
subparser, being a `CommandParser` (main.py makes the subparsers of that
class, and argparse makes nested ones, such as `inspect merkle`'s, of the
class of their parent).  A subparser parses into a namespace of its own and
copies it over its parent's, so its copies default to nothing (SUPPRESS),
and its -v counts under a name of its own, summed by `merge_common`.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import logging
import math
import sys
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias

from ..core.timeutil import parse_iso
from ..errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    Subparsers: TypeAlias = "argparse._SubParsersAction[CommandParser]"
    Handler: TypeAlias = "Callable[[argparse.Namespace], int]"


# -- value types ------------------------------------------------------------------


def iso(text: str) -> int:
    """An ISO 8601 date or time as nanoseconds since the epoch."""
    try:
        return parse_iso(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def count(text: str) -> int:
    """A whole number, not negative; `_` may group digits (1_000_000)."""
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def bounded(low: int, high: int) -> Callable[[str], int]:
    """A `count` in low..high."""

    def parse(text: str) -> int:
        value = count(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}")
        return value

    return parse


def seconds(text: str) -> float:
    """A number of seconds, more than 0 and at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def seconds_or_off(text: str) -> float:
    """0 (off), or a number of seconds from 0.001 to a day."""
    with contextlib.suppress(ValueError):
        if float(text) == 0:
            return 0.0
    value = seconds(text)
    if value < 0.001:
        raise argparse.ArgumentTypeError("must be 0 (off) or at least 0.001 seconds")
    return value


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    return bounded(1, 65535)(text)


def port_or_zero(text: str) -> int:
    """A TCP port, or 0 for a free one."""
    return bounded(0, 65535)(text)


# -- the options every command takes ---------------------------------------------

LOG_FORMATS = ("text", "json")
_VERBOSE_MORE = "verbose_more_"  # a subparser's -v count: verbose_more_1, _2, ...
_parsers = itertools.count(1)


def add_common(p: argparse.ArgumentParser, *, top: bool) -> list[argparse.Action]:
    """-v, -q and --log-format; on a subparser (not `top`) they default to nothing."""
    group = p.add_argument_group("logging and progress (before or after the command)")
    unset = argparse.SUPPRESS
    verbose = group.add_argument(
        "-v",
        "--verbose",
        action="count",
        dest="verbose" if top else f"{_VERBOSE_MORE}{next(_parsers)}",
        default=0 if top else unset,
        help="more log output: -v for info, -vv for debug (default: warnings and errors)",
    )
    quiet = group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=False if top else unset,
        help="errors only: no progress, no warnings",
    )
    log_format = group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if top else unset,
        help="log lines on stderr as text, or as one JSON object per line (default: text)",
    )
    return [verbose, quiet, log_format]


class _UsageErrors:
    json = False  # the command line asks for --log-format json (json_usage_errors)


def json_usage_errors(argv: Sequence[str]) -> None:
    """Make a bad command line's error one JSON record if `argv` asks for --log-format
    json (before or after the command): it comes before logging is set up."""
    words = list(itertools.takewhile(lambda a: a != "--", argv))
    _UsageErrors.json = "--log-format=json" in words or any(
        a == "--log-format" and b == "json" for a, b in itertools.pairwise(words)
    )


def usage_error(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """argparse's error: the usage and the error, exit 2; or, with --log-format json,
    one JSON record (level ERROR, exit_code 2, the usage in `usage`)."""
    if not _UsageErrors.json:
        parser.print_usage(sys.stderr)
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    from .logformat import JsonFormatter  # noqa: PLC0415 - only for this error

    record = logging.makeLogRecord(
        {"name": "pttsync", "levelno": logging.ERROR, "levelname": "ERROR",
         "msg": f"{parser.prog}: {message}", "exit_code": 2,
         "usage": parser.format_usage().strip()}
    )  # fmt: skip
    print(JsonFormatter().format(record), file=sys.stderr, flush=True)
    parser.exit(2)


class TopParser(argparse.ArgumentParser):
    """`pttsync`'s own parser: its usage errors as `usage_error` gives them."""

    def error(self, message: str) -> NoReturn:
        usage_error(self, message)


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it takes -v, -q and --log-format too (see the module text)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._common = add_common(self, top=False)

    def error(self, message: str) -> NoReturn:
        usage_error(self, message)

    def _common_last(self) -> None:
        """List the common options after the command's own, in the usage line."""
        self._actions[:] = [a for a in self._actions if a not in self._common] + self._common

    def format_usage(self) -> str:
        self._common_last()
        return super().format_usage()

    def format_help(self) -> str:
        self._common_last()
        return super().format_help()


def merge_common(args: argparse.Namespace) -> None:
    """Sum the -v counts given before and after the command into `args.verbose`."""
    more = [key for key in vars(args) if key.startswith(_VERBOSE_MORE)]
    for key in more:
        args.verbose += getattr(args, key)
        delattr(args, key)


# -- options ----------------------------------------------------------------------


def add_command(
    sub: Subparsers,
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str,
    data: bool = True,
    topic: bool = True,
) -> argparse.ArgumentParser:
    """Add the subparser `name`, run by `handler`, with --data and --topic unless told not to."""
    p = sub.add_parser(name, help=help, description=description)
    if data:
        p.add_argument("--data", required=True, metavar="DIR", help="the peer's data directory")
    if topic:
        add_topic(p)
    p.set_defaults(func=handler)
    return p


def add_topic(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--topic", metavar="ID", help="topic ID or unique prefix (default: the first topic)"
    )


def add_json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
