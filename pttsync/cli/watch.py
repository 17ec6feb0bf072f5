"""`pttsync watch`: the running node's document changes, one line each, until Ctrl-C."""

from __future__ import annotations

import json
import logging
import signal
import threading
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..errors import PttsyncError
from ..net.controlclient import control_call, control_stream
from .documents import short
from .options import add_command, add_json
from .output import tell

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


async def _follow(args: argparse.Namespace) -> None:
    request: dict[str, Any] = {"op": "watch"}
    if args.topic is not None:
        request["topic"] = args.topic
    # The stream connects at its first event; ask the node something first, so that
    # "watching" is said only with a node to watch (and no node is said at once).
    await control_call(Path(args.data), {"op": "status"})
    async with aclosing(control_stream(Path(args.data), request)) as events:
        tell("watching (Ctrl-C to stop)", level=logging.INFO)
        async for event in events:
            if args.json:
                print(json.dumps(event, separators=(",", ":")), flush=True)
            else:
                print(_event_line(event), flush=True)


async def _watch(args: argparse.Namespace) -> bool:
    """Follow the node's changes; True if SIGTERM ended the watch, False if the node did.

    SIGTERM is taken here, inside trio, so that `pttsync watch &` in a script (where
    SIGINT is ignored) ends cleanly on `kill` too."""
    terminated = False
    async with trio.open_nursery() as nursery:
        if threading.current_thread() is threading.main_thread():

            async def until_sigterm() -> None:
                nonlocal terminated
                with trio.open_signal_receiver(signal.SIGTERM) as signals:
                    async for _ in signals:
                        terminated = True
                        nursery.cancel_scope.cancel()

            nursery.start_soon(until_sigterm)
        await _follow(args)
        nursery.cancel_scope.cancel()
    return terminated


def cmd_watch(args: argparse.Namespace) -> int:
    try:
        if trio.run(_watch, args):
            return 0  # SIGTERM, like Ctrl-C, is how a watch ends
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how a watch ends
    raise PttsyncError(f"the node on {args.data} stopped")
