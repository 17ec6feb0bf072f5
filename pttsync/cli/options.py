"""What several commands' parsers share: value types and the common options.

Each command module declares its own subparser with `add_command`, which
adds the --data and --topic options most commands take and names the
handler; `add_json` adds --json, last, as every command lists it.  The
types turn text into values or raise argparse.ArgumentTypeError, whose
message argparse prints as the usage error (exit 2).
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, TypeAlias

from ..core.timeutil import parse_iso
from ..errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
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


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    return bounded(1, 65535)(text)


def port_or_zero(text: str) -> int:
    """A TCP port, or 0 for a free one."""
    return bounded(0, 65535)(text)


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
