"""The commands that talk to a running node through its control socket.

`put`, `get`, `delete`, `list`, `status`, `peers`, `member add|remove` and
`watch`.  Each sends requests to `DIR/control.sock` (pttsync.net.control)
and prints the answer: plain text for people, JSON with --json.  With no
node running on DIR they fail with a hint on how to start one.
"""

from __future__ import annotations

import json
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..errors import PttsyncError, UsageError
from ..net.controlclient import control_call, control_stream
from ..net.controlwire import decode_json
from .output import emit_json

if TYPE_CHECKING:
    import argparse

LIST_PAGE = 1000  # documents asked for per request when listing


def _call(args: argparse.Namespace, op: str, **fields: Any) -> Any:
    """One request to the node on `args.data`, with `args.topic` if the command has one."""
    request: dict[str, Any] = {"op": op, **fields}
    if getattr(args, "topic", None) is not None:
        request["topic"] = args.topic
    return trio.run(control_call, Path(args.data), request)


def _short(value: Any, width: int = 60) -> str:
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
    write = _call(args, "put", key=args.key, value=value)
    if args.json:
        emit_json(write)
    else:
        print(f"put {write['key']}: {write['status']} (oplog {write['oplog_id'][:16]}…)")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    doc = _call(args, "get", key=args.key)
    if doc is None:
        print(f"pttsync: not found: {args.key}", file=sys.stderr)
        return 1
    if args.json:
        emit_json(doc)
        return 0 if doc["exists"] else 1
    if not doc["exists"]:
        print(
            f"pttsync: not found: {args.key} (deleted by {doc['version']['creator'][:12]}…"
            f" at {doc['version']['create_time']})",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(doc["value"], ensure_ascii=False))
    notes = _flags(doc).strip()
    if notes:
        print(f"pttsync: {args.key}: {notes.strip('[]')} (see --json)", file=sys.stderr)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    write = _call(args, "delete", key=args.key)
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
        page = _call(args, "list", **fields)
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
        print(f"{doc['key']}  {_short(doc['value'])}{_flags(doc)}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    status = _call(args, "status")
    if args.json:
        emit_json(status)
        return 0
    peers = status.get("peers") or []
    print(f"peer id:  {status.get('peer_id', '?')}")
    print(f"listen:   {status.get('listen') or 'not listening'}")
    print(f"peers:    {len(peers)} connected")
    for t in status.get("topics") or []:
        valid, pending = t.get("valid", 0), t.get("pending", 0)
        digest = str(t.get("digest") or "")[:16]
        print(
            f"topic {str(t.get('topic_id', '?'))[:16]}…  {t.get('name', '')}:"
            f" {valid:,} valid, {pending:,} pending, digest {digest}…"
        )
    return 0


def _cell(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_cell(v) for v in value) or "-"
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def cmd_peers(args: argparse.Namespace) -> int:
    peers = _call(args, "peers")
    if args.json:
        emit_json(peers)
        return 0
    if not peers:
        print("no connected peers")
        return 0
    # The columns people read; --json has every field.
    header = ("PEER", "DIRECTION", "LISTEN", "CONNECTED", "SENT", "RECEIVED")
    rows = [
        (
            str(p.get("peer_id", ""))[:16] + "…",
            str(p.get("direction", "")),
            str(p.get("listen") or p.get("address") or "-"),
            f"{float(p.get('connected_s', 0)):.0f} s",
            f"{int(p.get('bytes_sent', 0)):,} B",
            f"{int(p.get('bytes_received', 0)):,} B",
        )
        for p in peers
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_member(args: argparse.Namespace) -> int:
    role = "none" if args.action == "remove" else "master" if args.master else "member"
    result = _call(args, "member", peer_id=args.peer_id, role=role)
    if args.json:
        emit_json(result)
        return 0
    what = "removed from the topic" if role == "none" else f"made a {role}"
    print(f"{result['peer_id']}: {what} ({result['status']})")
    return 0


def _event_line(event: dict[str, Any]) -> str:
    state = event.get("state") or {}
    line = f"{event.get('kind', '?'):<11} {event.get('key', '?')}"
    if state.get("exists"):
        line += f" = {_short(state.get('value'))}"
    if event.get("local"):
        line += "  (this peer)"
    if state.get("pending"):
        line += "  [pending]"
    if event.get("reason"):
        line += f": {event['reason']}"
    return line


async def _watch(args: argparse.Namespace) -> None:
    request: dict[str, Any] = {"op": "watch"}
    if args.topic is not None:
        request["topic"] = args.topic
    async with aclosing(control_stream(Path(args.data), request)) as events:
        if not args.quiet:
            print("watching (Ctrl-C to stop)", file=sys.stderr, flush=True)
        async for event in events:
            if args.json:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            else:
                print(_event_line(event), flush=True)


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        trio.run(_watch, args)
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch ends
    raise PttsyncError(f"the node on {args.data} stopped")
