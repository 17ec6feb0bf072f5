"""Talking to a running node through its control socket; `status`, `peers` and `member`.

Every command that needs a running node (these, documents.py and watch.py)
sends its requests to `DIR/control.sock` (pttsync.net.control) and prints
the answer: plain text for people, JSON with --json.  With no node running
on DIR they fail with a hint on how to start one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..net.controlclient import control_call
from .options import add_command, add_json
from .output import emit_json, short_hash, table_lines
from .triorun import run_trio

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers


def call(args: argparse.Namespace, op: str, **fields: Any) -> Any:
    """One request to the node on `args.data`, with `args.topic` if the command has one."""
    request: dict[str, Any] = {"op": op, **fields}
    if getattr(args, "topic", None) is not None:
        request["topic"] = args.topic
    return run_trio(control_call, Path(args.data), request)


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
        help="the running node's peers: connected, known, refused",
        description=(
            "Print the peers the node on DIR is connected to; then the addresses it knows"
            " but is not connected to, each with its failures, last error and next try;"
            " then the peers its door refused in the last hour, with their full peer IDs"
            " (a master admits one with `pttsync member add`) and why."
        ),
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
    print(
        f"peers:    {len(peers)} connected, {status.get('known_not_connected', 0)} known not"
        f" connected ({status.get('failing', 0)} failing),"
        f" {status.get('refused_last_hour', 0)} refused in the last hour"
    )
    visits = status.get("visits") or {}
    if visits.get("made") or visits.get("taken"):
        line = f"visits:   {visits.get('made', 0)} made, {visits.get('taken', 0)} taken"
        if visits.get("displaced"):
            line += f" ({visits['displaced']} displaced by newer ones)"
        print(line)
    for t in status.get("topics") or []:
        valid, pending = t.get("valid", 0), t.get("pending", 0)
        digest = short_hash(str(t.get("digest") or "-"))
        print(
            f"topic {t.get('topic_id', '?')}  {t.get('name', '')}:"
            f" {valid:,} valid, {pending:,} pending, digest {digest}"
        )
    return 0


def cmd_peers(args: argparse.Namespace) -> int:
    view = call(args, "peer_view")
    if args.json:
        emit_json(view)
        return 0
    connected, known, refused = view["connected"], view["known"], view["refused"]
    # The columns people read; --json has every field.
    print(f"connected ({len(connected)})")
    _table(
        ("PEER", "DIRECTION", "LISTEN", "CONNECTED", "SENT", "RECEIVED"),
        [
            (
                str(p.get("peer_id", "")),
                str(p.get("direction", "")),
                str(p.get("listen") or p.get("address") or "-"),
                f"{float(p.get('connected_s', 0)):.0f} s",
                f"{int(p.get('bytes_sent', 0)):,} B",
                f"{int(p.get('bytes_received', 0)):,} B",
            )
            for p in connected
        ],
    )
    print(f"\nknown, not connected ({len(known)})")
    _table(
        ("ADDRESS", "PEER", "FAILURES", "NEXT TRY", "LAST ERROR"),
        [
            (
                str(k["address"]) + (" (--join)" if k.get("join") else ""),
                str(k["peer_id"]) if k.get("peer_id") else "-",
                str(k.get("failures", 0)),
                "-" if k.get("next_try_in_s") is None else f"in {k['next_try_in_s']:.0f} s",
                _error(k),
            )
            for k in known
        ],
    )
    print(f"\nrefused at the door in the last hour ({len(refused)})")
    _table(
        ("PEER ID", "FROM", "TIMES", "LAST", "REASON"),
        [
            (
                str(r["peer_id"]),
                str(r.get("address") or "-"),
                str(r.get("times", 1)),
                f"{float(r.get('last_ago_s', 0)):.0f} s ago",
                str(r.get("reason", "")),
            )
            for r in refused
        ],
    )
    if refused:
        print(f"(a master admits one with: pttsync member add --data {args.data} PEER_ID)")
    return 0


def _error(known: dict[str, Any]) -> str:
    if not known.get("last_error"):
        return "-"
    return f"{known['last_error']} ({float(known.get('last_error_ago_s') or 0):.0f} s ago)"


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    if not rows:
        print("  none")
        return
    for line in table_lines(header, rows):
        print("  " + line)


def cmd_member(args: argparse.Namespace) -> int:
    role = "none" if args.action == "remove" else "master" if args.master else "member"
    result = call(args, "member", peer_id=args.peer_id, role=role)
    if args.json:
        emit_json(result)
        return 0
    what = "removed from the topic" if role == "none" else f"made a {role}"
    print(f"{result['peer_id']}: {what} ({result['status']})")
    return 0
