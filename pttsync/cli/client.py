"""Talking to a running node through its control socket; `status`, `peers` and `member`.

Every command that needs a running node (these, documents.py and watch.py)
sends its requests to `DIR/control.sock` (pttsync.net.control) and prints
the answer: plain text for people, JSON with --json.  With no node running
on DIR they fail with a hint on how to start one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..net.controlclient import control_call
from .options import add_command, add_json
from .output import emit_json

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def call(args: argparse.Namespace, op: str, **fields: Any) -> Any:
    """One request to the node on `args.data`, with `args.topic` if the command has one."""
    request: dict[str, Any] = {"op": op, **fields}
    if getattr(args, "topic", None) is not None:
        request["topic"] = args.topic
    return trio.run(control_call, Path(args.data), request)


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "status",
        cmd_status,
        help="the running node's peer ID, address, peers and topics",
        description=(
            "Print the node's peer ID, listen address, number of connected peers, and"
            " per topic its valid and pending oplogs and Merkle digest."
        ),
        topic=False,
    )
    add_json(p)

    p = add_command(
        sub,
        "peers",
        cmd_peers,
        help="the running node's connected peers",
        description="Print a table of the peers the node on DIR is connected to.",
        topic=False,
    )
    add_json(p)

    p = sub.add_parser(
        "member",
        help="add or remove a topic member (needs a master's node)",
        description=(
            "Write a ROLE oplog through the running node: make a peer a member (or a"
            " master), or remove it.  Only a master may; the change becomes valid once"
            " the topic's masters' quorum signs it."
        ),
    )
    msub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = add_command(
        msub,
        "add",
        cmd_member,
        help="make a peer a member (or a master)",
        description="Make PEER_ID a member of the topic, or a master with --master.",
    )
    q.add_argument("peer_id", metavar="PEER_ID", help="the peer's ID (52 base32 characters)")
    q.add_argument("--master", action="store_true", help="make it a master, not just a member")
    add_json(q)
    q = add_command(
        msub,
        "remove",
        cmd_member,
        help="remove a peer from the topic",
        description=(
            "Take PEER_ID's role away: its new writes are refused from now on."
            "  A topic keeps at least one master."
        ),
    )
    q.add_argument("peer_id", metavar="PEER_ID", help="the peer's ID (52 base32 characters)")
    add_json(q)
    q.set_defaults(master=False)


def cmd_status(args: argparse.Namespace) -> int:
    status = call(args, "status")
    if args.json:
        emit_json(status)
        return 0
    peers = status.get("peers") or []
    print(f"peer id:  {status.get('peer_id', '?')}")
    print(f"listen:   {status.get('listen') or 'not listening'}")
    if status.get("restarts"):
        print(f"restarts: {status['restarts']} (by its supervisor)")
    print(f"peers:    {len(peers)} connected")
    for t in status.get("topics") or []:
        valid, pending = t.get("valid", 0), t.get("pending", 0)
        digest = str(t.get("digest") or "")[:16]
        print(
            f"topic {str(t.get('topic_id', '?'))[:16]}…  {t.get('name', '')}:"
            f" {valid:,} valid, {pending:,} pending, digest {digest}…"
        )
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    peers = call(args, "peers")
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
    result = call(args, "member", peer_id=args.peer_id, role=role)
    if args.json:
        emit_json(result)
        return 0
    what = "removed from the topic" if role == "none" else f"made a {role}"
    print(f"{result['peer_id']}: {what} ({result['status']})")
    return 0
