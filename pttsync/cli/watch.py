"""`pttsync watch`: the running node's document changes, one line each, until Ctrl-C."""

from __future__ import annotations

import json
import sys
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..errors import PttsyncError
from ..net.controlclient import control_stream
from .documents import short
from .options import add_command, add_json

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "watch",
        cmd_watch,
        help="print the running node's document changes as they happen",
        description=(
            "Print one line per document change (put, delete, conflict, confirmed,"
            " failed, rolled_back) until Ctrl-C; with --json, one JSON object per line."
        ),
    )
    add_json(p)


def _event_line(event: dict[str, Any]) -> str:
    state = event.get("state") or {}
    line = f"{event.get('kind', '?'):<11} {event.get('key', '?')}"
    if state.get("exists"):
        line += f" = {short(state.get('value'))}"
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
