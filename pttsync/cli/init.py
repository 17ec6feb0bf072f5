"""`pttsync init` and `pttsync invite`: a new peer's data directory, and its topic's token."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..core.identity import peer_id_text
from ..core.lifecycle.governance import Role
from ..core.lifecycle.replica import Replica
from ..core.topic import parse_topic_token, topic_token
from ..datadir import DataDir
from ..errors import BusyError, UsageError
from .options import add_command, add_json
from .output import emit_json
from .triorun import run_trio

if TYPE_CHECKING:
    import argparse

    from ..core.topic import TopicInfo
    from .options import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "init",
        cmd_init,
        help="make an identity and a new topic in a data directory",
        description="Make a new Ed25519 identity and a new topic in DIR, and print their IDs.",
        topic=False,
    )
    p.add_argument("--name", default="main", help="the new topic's name (default: main)")
    p.add_argument(
        "--topic-of",
        metavar="DIR",
        help="join the topic of another local data directory instead of making a new one",
    )
    p.add_argument(
        "--topic", metavar="ID", help="with --topic-of: which of DIR's topics (default: its first)"
    )
    p.add_argument(
        "--invite",
        metavar="TOKEN",
        help="join the topic a token names (from: pttsync invite, on a peer of that topic)",
    )
    add_json(p)

    p = add_command(
        sub,
        "invite",
        cmd_invite,
        help="print a token naming this peer's topic, for a new peer to join",
        description=(
            "Print a token that names a topic (ptt1...).  On the new machine, run"
            " `pttsync init --data DIR --invite TOKEN`, give its peer ID to a master, who"
            " runs `pttsync member add --data DIR PEER_ID`, then start the new peer with"
            " `pttsync run --data DIR --listen HOST:PORT --join MASTER_HOST:PORT`."
            "  The token holds no secret: only a master's admission lets a peer in."
        ),
    )
    add_json(p)


def cmd_invite(args: argparse.Namespace) -> int:
    topic = DataDir(args.data).topic(args.topic)
    token = topic_token(topic)
    if args.json:
        emit_json({"topic_id": topic.topic_id.hex(), "name": topic.name, "token": token})
    else:
        print(token)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    if args.invite and args.topic_of:
        raise UsageError("give --invite or --topic-of, not both")
    if args.topic is not None and not args.topic_of:
        raise UsageError("--topic picks one of the topics of --topic-of DIR: give --topic-of too")
    joined = DataDir(args.topic_of).topic(args.topic) if args.topic_of else None
    if args.invite:
        joined = parse_topic_token(args.invite)
    now = time.time_ns()
    d, identity, topic = DataDir.init(
        args.data, topic_name=args.name, now=now, nonce=os.urandom(16), topic=joined
    )
    admitted = (
        admit(DataDir(args.topic_of), topic, identity.peer_id, now) if args.topic_of else None
    )
    if args.json:
        emit_json(
            {
                "data": str(d.path),
                "peer_id": identity.text,
                "topic_id": topic.topic_id.hex(),
                "topic_name": topic.name,
                "admitted_by": admitted,
            }
        )
    else:
        print(f"initialised {d.path}")
        print(f"peer id:  {identity.text}")
        how = f", joined from {args.topic_of or 'an invitation'}" if joined else ""
        print(f"topic id: {topic.topic_id.hex()}  ({topic.name}{how})")
        if joined and admitted:
            print(f"member:   admitted by {admitted} (a ROLE oplog in {args.topic_of})")
        elif args.invite:
            print("member:   not yet: a master runs `pttsync member add --data DIR <peer id>`")
        elif joined:
            print(f"member:   not admitted: the peer of {args.topic_of} is not a master")
    return 0


def admit(source: DataDir, topic: TopicInfo, peer: bytes, now: int) -> str | None:
    """Make `peer` a member of `topic` with `source`'s key, if it is a master; its peer ID.

    If a node runs on `source`, the node does it (through its control socket), so that
    it knows the new member at once: the store is never written behind its back.
    """
    master = source.identity()
    try:
        with source.writer("") as store:
            replica = Replica(store, topic.topic_id, identity=master)
            if replica.fold.governance.role_at(master.peer_id, now) is not Role.MASTER:
                return None
            replica.set_role(peer, Role.MEMBER, now=now)
    except BusyError:
        return _admit_through_node(source, topic, peer, master.text)
    return master.text


def _admit_through_node(source: DataDir, topic: TopicInfo, peer: bytes, master: str) -> str | None:

    from ..net.controlclient import control_call  # noqa: PLC0415

    async def ask() -> str | None:
        status = await control_call(source.path, {"op": "status"})
        topics = status.get("topics") or []
        mine = [t for t in topics if t.get("topic_id") == topic.topic_id.hex()]
        if not mine or mine[0].get("role") != "master":
            return None
        request = {"op": "member", "peer_id": peer_id_text(peer), "role": "member"}
        await control_call(source.path, {**request, "topic": topic.topic_id.hex()})
        return master

    result: str | None = run_trio(ask)
    return result
