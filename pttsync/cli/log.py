"""`pttsync log`: a document's history, through the running node.

One block per version, newest first, as `git log` prints commits: what a
person looks for is what happened last, and the answer comes before the
scroll.  Every oplog ID is printed in full, so it can be pasted into any
other command (`pttsync inspect oplog`); --json prints the node's answer
as it is, oldest first (docs/pip-11/lifecycle.md, History).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..core.documents.history import DEFAULT_LIMIT, INLINE_VALUE, MAX_LIMIT
from .client import call
from .documents import short
from .options import add_command, add_json, bounded
from .output import emit_json, tell

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers

VALUE_WIDTH = 72
"""The widest value printed, in characters (--json has it whole)."""
LISTED = 5
"""Versions named on a conflict line before "and N more" (--json lists them all)."""
LABEL = 10
"""The width of the labels' column."""
STATUS = {"valid": "valid", "pending": "pending", "internal_pending": "internal pending"}


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "log",
        cmd_log,
        help="a document's history: every version, its conflicts and their resolution",
        description=(
            "Print every version of document KEY that the node on DIR holds, newest first:"
            " its oplog ID (in full), author, time, status, op and value, and which versions"
            " were in conflict and which later version resolved each conflict."
            f"  A value over {INLINE_VALUE:,} bytes is given by its size.  Exit 1 if the node"
            " holds no version of KEY.  With --json, print the whole history, oldest first."
        ),
    )
    p.add_argument("key", metavar="KEY", help="the document's key")
    p.add_argument(
        "--limit",
        type=bounded(1, MAX_LIMIT),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"the newest N versions at most (1..{MAX_LIMIT:,}, default: %(default)s)",
    )
    add_json(p)


def cmd_log(args: argparse.Namespace) -> int:
    history = call(args, "history", key=args.key, limit=args.limit)
    if history is None:
        tell(
            f"pttsync: not found: {args.key} (this node holds no version of it)",
            level=logging.ERROR,
        )
        return 1
    if args.json:
        emit_json(history)
        return 0
    print(header(history))
    for version in reversed(history["versions"]):
        print()
        print("\n".join(block(version)))
    if history["omitted"]:
        print()
        print(omitted_note(history))
    return 0


def header(history: dict[str, Any]) -> str:
    """The document's line: its key, how many versions, and what it shows now."""
    total = history["total"]
    now = "deleted" if not history["exists"] else "exists"
    if history["in_conflict"]:
        now += ", in conflict"
    return f"document {history['key']}: {total:,} version{'s' if total != 1 else ''} ({now})"


def block(v: dict[str, Any]) -> list[str]:
    """One version's lines."""
    marks = [m for m, on in (("shown now", v["shown"]), ("head", v["head"])) if on]
    lines = [f"oplog {v['oplog_id']}" + (f"  ({', '.join(marks)})" if marks else "")]
    author = v["author"] + (f" (device {v['device']})" if v.get("device") else "")
    date = v["create_time"]
    if v["update_time_ns"] != v["create_time_ns"]:
        date += f" (last signed {v['update_time']})"
    op = v["op"] + (" (a delete)" if v["op"] == "resolve" and v["deleted"] else "")
    lines += [
        _line("Author:", author),
        _line("Date:", date),
        _line("Status:", STATUS.get(v["status"], v["status"])),
        _line("Op:", op),
        _line("Value:", value_text(v)),
        _line("Prev:", v["prev_id"] or "(none: the first version here)"),
        *_listed("Resolves:", v["resolves"]),
        *_conflict(v),
    ]
    return lines


def value_text(v: dict[str, Any]) -> str:
    if v["deleted"]:
        return "(deleted)"
    if v["value_omitted"]:
        return f"<{v['size']:,} bytes>"
    return short(v["value"], VALUE_WIDTH)


def _conflict(v: dict[str, Any]) -> list[str]:
    lines = _listed("Conflict:", v["conflicts_with"], "in conflict with ")
    done = v.get("resolved_by")
    if done is not None:
        lines += [
            _line("Resolved:", f"by {done['oplog_id']}"),
            _line("", f"written by {done['author']} at {done['create_time']}"),
        ]
    elif v["conflicts_with"]:
        lines.append(_line("Resolved:", "not yet (the conflict is open)"))
    lines += _listed("Closes:", v["closes"], "the conflict of ")
    return lines


def _line(label: str, text: str) -> str:
    return f"{label:<{LABEL}}{text}"


def _listed(label: str, ids: list[str], lead: str = "") -> list[str]:
    """`label` and the first LISTED IDs, one a line, then how many more."""
    if not ids:
        return []
    pad = " " * len(lead)
    lines = [_line(label, lead + ids[0]), *(_line("", pad + i) for i in ids[1:LISTED])]
    if len(ids) > LISTED:
        lines.append(_line("", f"{pad}and {len(ids) - LISTED:,} more (see --json)"))
    return lines


def omitted_note(history: dict[str, Any]) -> str:
    omitted, fit = history["omitted"], history.get("omitted_to_fit", 0)
    note = f"({omitted:,} older version{'s' if omitted != 1 else ''} not shown"
    if fit:
        return note + f": {fit:,} of them to fit the node's answer in one line)"
    if history["total"] > MAX_LIMIT:
        return note + f": at most the newest {MAX_LIMIT:,} are listed)"
    them = "them" if omitted != 1 else "it"
    return note + f": --limit {history['total']} shows {them})"
