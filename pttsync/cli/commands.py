"""`pttsync init` and `pttsync gen`."""

from __future__ import annotations

import os
import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

from ..core.synthetic import populate
from ..core.timeutil import to_iso
from ..datadir import DataDir, select_topic
from ..signer import ProcessSigner
from .output import Progress, emit_json

if TYPE_CHECKING:
    import argparse


def cmd_init(args: argparse.Namespace) -> int:
    joined = DataDir(args.topic_of).topic(args.topic) if args.topic_of else None
    d, identity, topic = DataDir.init(
        args.data, topic_name=args.name, now=time.time_ns(), nonce=os.urandom(16), topic=joined
    )
    if args.json:
        emit_json(
            {
                "data": str(d.path),
                "peer_id": identity.text,
                "topic_id": topic.topic_id.hex(),
                "topic_name": topic.name,
            }
        )
    else:
        print(f"initialised {d.path}")
        print(f"peer id:  {identity.text}")
        how = f", joined from {args.topic_of}" if joined else ""
        print(f"topic id: {topic.topic_id.hex()}  ({topic.name}{how})")
    return 0


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
