"""`pttsync put`, `get`, `delete` and `list`: documents, through the running node.

Each sends its request to the node on DIR (see client.py) and prints the
answer: plain text for people, JSON with --json.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ..core.documents.docstore import MAX_LIST
from ..errors import UsageError
from ..net.controlwire import decode_json
from .client import call
from .options import add_command, add_json, bounded
from .output import emit_json, tell

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers

LIST_PAGE = 1000  # documents asked for per request when listing


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "put",
        cmd_put,
        help="write a document through the running node",
        description=(
            "Write VALUE (JSON text) as the document KEY's new version, through the node"
            " running on DIR, which pushes it to its peers.  Strings need JSON quotes:"
            """ pttsync put --data DIR greeting '"hello"'."""
        ),
    )
    p.add_argument("key", metavar="KEY", help="the document's key (printable text, 128 bytes)")
    p.add_argument("value", metavar="VALUE", help="the new value, as JSON text")
    add_json(p)

    p = add_command(
        sub,
        "get",
        cmd_get,
        help="read a document from the running node",
        description=(
            "Print the value of document KEY as JSON (exit 1 if there is no such document)."
            "  With --json, print its whole state: the shown version, whether it is"
            " pending, and any conflicting versions."
        ),
    )
    p.add_argument("key", metavar="KEY", help="the document's key")
    add_json(p)

    p = add_command(
        sub,
        "delete",
        cmd_delete,
        help="delete a document through the running node",
        description="Delete document KEY (a tombstone version: it can be put again).",
    )
    p.add_argument("key", metavar="KEY", help="the document's key")
    add_json(p)

    p = add_command(
        sub,
        "list",
        cmd_list,
        help="list documents from the running node",
        description="List documents in key order: key, value, and any pending or conflict flag.",
    )
    p.add_argument("--prefix", default="", help="only keys that start with this")
    p.add_argument("--after", metavar="KEY", help="only keys after this one (to page on)")
    p.add_argument(
        "--limit",
        type=bounded(1, MAX_LIST),
        default=100,
        metavar="N",
        help=f"list at most this many (1..{MAX_LIST:,}, default: %(default)s)",
    )
    p.add_argument("--deleted", action="store_true", help="list deleted documents too")
    add_json(p)


def short(value: Any, width: int = 60) -> str:
    """`value` as JSON, cut to `width` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _flags(doc: dict[str, Any]) -> str:
    flags = []
    if not doc.get("exists", True):
        flags.append("deleted")
    if doc.get("pending"):
        flags.append("pending")
    if doc.get("in_conflict"):
        flags.append(f"conflict: {len(doc.get('conflicts', []))} other version(s)")
    return f"  [{', '.join(flags)}]" if flags else ""


def parse_value(text: str) -> Any:
    """The JSON value a command line gives.

    Raises:
        UsageError: the text is not JSON (with a hint: strings need quotes).
    """
    try:
        return decode_json(text)
    except UsageError as exc:
        raise UsageError(
            f"VALUE is JSON text, and {text[:40]!r} is not ({exc}); a string needs JSON"
            """ quotes inside shell quotes, e.g. '"hello"'"""
        ) from None


def cmd_put(args: argparse.Namespace) -> int:
    value = parse_value(args.value)
    write = call(args, "put", key=args.key, value=value)
    if args.json:
        emit_json(write)
    else:
        print(f"put {write['key']}: {write['status']} (oplog {write['oplog_id'][:16]}…)")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    doc = call(args, "get", key=args.key)
    if doc is None:
        tell(f"pttsync: not found: {args.key}", level=logging.ERROR)
        return 1
    if args.json:
        emit_json(doc)
        return 0 if doc["exists"] else 1
    if not doc["exists"]:
        tell(
            f"pttsync: not found: {args.key} (deleted by {doc['version']['creator'][:12]}…"
            f" at {doc['version']['create_time']})",
            level=logging.ERROR,
        )
        return 1
    print(json.dumps(doc["value"], ensure_ascii=False))
    notes = _flags(doc).strip()
    if notes:
        tell(f"pttsync: {args.key}: {notes.strip('[]')} (see --json)")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    write = call(args, "delete", key=args.key)
    if args.json:
        emit_json(write)
    else:
        print(f"deleted {write['key']}: {write['status']} (oplog {write['oplog_id'][:16]}…)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    docs: list[dict[str, Any]] = []
    after = args.after
    # The node answers with as many documents as fit in one line; ask on from the last.
    while len(docs) < args.limit:
        want = min(args.limit - len(docs), LIST_PAGE)
        fields: dict[str, Any] = {"prefix": args.prefix, "limit": want, "deleted": args.deleted}
        if after is not None:
            fields["after"] = after
        page = call(args, "list", **fields)
        docs.extend(page["items"])
        if not page["items"] or (not page["more"] and len(page["items"]) < want):
            break
        after = page["items"][-1]["key"]
    if args.json:
        emit_json(docs)
        return 0
    if not docs:
        print("no documents" + (f" under {args.prefix!r}" if args.prefix else ""))
    for doc in docs:
        print(f"{doc['key']}  {short(doc['value'])}{_flags(doc)}")
    return 0
