"""`pttsync init`, `pttsync invite` and `pttsync gen`."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

from ..core.lifecycle.governance import Role
from ..core.lifecycle.replica import Replica
from ..core.timeutil import to_iso
from ..core.topic import parse_topic_token, topic_token
from ..datadir import DataDir, select_topic
from ..errors import UsageError
from ..signer import ProcessSigner
from ..synthetic import populate
from .output import Progress, emit_json

if TYPE_CHECKING:
    import argparse

    from ..core.identity import Identity
    from ..core.store import Store
    from ..core.topic import TopicInfo


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
    """Make `peer` a member of `topic` with `source`'s key, if it is a master; its peer ID."""
    master = source.identity()
    with source.open_store() as store:
        replica = Replica(store, topic.topic_id, identity=master)
        if replica.fold.governance.role_at(master.peer_id, now) is not Role.MASTER:
            return None
        replica.set_role(peer, Role.MEMBER, now=now)
    return master.text


def check_master(store: Store, topic: TopicInfo, identity: Identity, now: int) -> None:
    """Raise UsageError unless `identity` is a master of `topic` (gen writes valid history)."""
    gov = Replica(store, topic.topic_id).fold.governance
    if gov.role_at(identity.peer_id, now) is not Role.MASTER:
        raise UsageError(
            "pttsync gen writes valid history, which only a master can: this peer's"
            " writes would need a master's co-signature"
        )


def cmd_gen(args: argparse.Namespace) -> int:
    d = DataDir(args.data)
    identity = d.identity()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    progress = Progress("gen", enabled=not args.quiet and args.count > args.batch)
    # A signer process signs the next batch while this one stores the last;
    # for a single batch there is nothing to overlap, so it is not started.
    parallel = args.sign_workers > 0 and args.count > args.batch
    with (
        d.open_store() as store,
        ProcessSigner(d.key_path, identity) if parallel else nullcontext() as signer,
    ):
        topic = select_topic(store, args.topic)
        check_master(store, topic, identity, time.time_ns())
        started = time.perf_counter()
        result = populate(
            store,
            identity,
            topic.topic_id,
            count=args.count,
            start=args.start,
            end=args.end,
            seed=seed,
            batch_size=args.batch,
            progress=progress,
            sign=signer,
        )
        seconds = time.perf_counter() - started
    rate = args.count / seconds if seconds > 0 else 0.0
    if args.json:
        emit_json(
            {
                "topic_id": topic.topic_id.hex(),
                "count": args.count,
                "added": len(result.added),
                "already_present": len(result.unchanged),
                "from": to_iso(args.start),
                "to": to_iso(args.end),
                "seed": seed,
                "seconds": round(seconds, 3),
                "oplogs_per_second": round(rate, 1),
            }
        )
    else:
        print(
            f"wrote {args.count:,} oplogs to topic {topic.topic_id.hex()[:16]}…"
            f" ({len(result.added):,} new, {len(result.unchanged):,} already present)"
            f" in {seconds:.2f}s, {rate:,.0f}/s; seed {seed}"
        )
    return 0
