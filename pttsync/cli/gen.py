"""`pttsync gen`: synthetic signed oplogs, for demos and benchmarks."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

from ..core.lifecycle.governance import Role
from ..core.lifecycle.replica import Replica
from ..core.timeutil import to_iso
from ..datadir import DataDir, select_topic
from ..errors import UsageError
from ..signer import ProcessSigner
from ..synthetic import DEFAULT_BATCH, MAX_BATCH, populate
from .options import add_command, add_json, bounded, count, iso
from .output import Progress, emit_json

if TYPE_CHECKING:
    import argparse

    from ..core.identity import Identity
    from ..core.store import Store
    from ..core.topic import TopicInfo
    from .options import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "gen",
        cmd_gen,
        help="write synthetic signed oplogs (demos, benchmarks)",
        description=(
            "Write COUNT synthetic signed, valid oplogs with update times spread uniformly"
            " over [FROM, TO), in increasing order, as a log written over time.  The same"
            " key, range and seed always give the same oplogs."
        ),
    )
    p.add_argument(
        "--count", type=count, required=True, metavar="N", help="how many oplogs to write"
    )
    p.add_argument(
        "--from",
        dest="start",
        type=iso,
        required=True,
        metavar="ISO",
        help="earliest update time, e.g. 2025-01-01 (UTC unless an offset is given)",
    )
    p.add_argument(
        "--to",
        dest="end",
        type=iso,
        required=True,
        metavar="ISO",
        help="update times are before this, e.g. 2026-01-01",
    )
    p.add_argument(
        "--seed", type=int, metavar="N", help="random seed (default: a random one, printed)"
    )
    p.add_argument(
        "--batch",
        type=bounded(1, MAX_BATCH),
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"oplogs per transaction (1..{MAX_BATCH:,}, default: %(default)s)",
    )
    p.add_argument(
        "--sign-workers",
        type=int,
        choices=[0, 1],
        default=1,
        help="1 (default): sign in a worker process, overlapped with storing; 0: sign inline",
    )
    add_json(p)


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
        d.writer(
            "stop it first: gen writes the store directly (`pttsync put` writes through a"
            " running node)"
        ) as store,
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
            in_order=True,
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
            f"wrote {args.count:,} oplogs to topic {topic.topic_id.hex()}"
            f" ({len(result.added):,} new, {len(result.unchanged):,} already present)"
            f" in {seconds:.2f}s, {rate:,.0f}/s; seed {seed}"
        )
    return 0
