"""`pttsync sync --local A B`: sync two data directories in one process."""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

from ..datadir import DataDir, select_topic
from ..errors import UsageError
from ..localsync import RoundReport, sync_local
from .options import add_command, add_json, add_topic, count, iso
from .output import LiveLine, emit_json

if TYPE_CHECKING:
    from .options import Subparsers


def _rounds(text: str) -> int:
    value = count(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "sync",
        cmd_sync,
        help="sync two local data directories through the PIP-11 session code",
        description=(
            "Run PIP-11 sync rounds between two data directories in this process (A"
            " requests, B answers), through the same session code and wire format the"
            " network uses, until both trees agree.  Prints round trips, bytes each way,"
            " oplogs sent and received, and both digests.  Exits 1 if they do not converge."
        ),
        data=False,
        topic=False,
    )
    p.add_argument(
        "--local", nargs=2, required=True, metavar=("A", "B"), help="the two data directories"
    )
    add_topic(p)
    p.add_argument(
        "--max-rounds",
        type=_rounds,
        default=8,
        metavar="N",
        help="give up after this many rounds (1..1000, default: %(default)s)",
    )
    p.add_argument(
        "--now", type=iso, metavar="ISO", help="the time both sides use (default: the clock)"
    )
    add_json(p)


def cmd_sync(args: argparse.Namespace) -> int:
    dir_a, dir_b = DataDir(args.local[0]), DataDir(args.local[1])
    if dir_a.path.resolve() == dir_b.path.resolve():
        raise UsageError("A and B are the same data directory")
    id_a, id_b = dir_a.identity(), dir_b.identity()
    now = args.now if args.now is not None else time.time_ns()
    with ExitStack() as stack:
        fix = (
            "stop it first: sync --local writes both stores directly (running nodes sync"
            " over the network: `pttsync run --join`)"
        )
        store_a = stack.enter_context(dir_a.writer(fix))
        store_b = stack.enter_context(dir_b.writer(fix))
        topic = select_topic(store_a, args.topic)
        if topic.topic_id not in {t.topic_id for t in store_b.topics()}:
            raise UsageError(
                f"{dir_b.path} does not hold topic {topic.topic_id.hex()}"
                f" (make it with: pttsync init --data DIR --topic-of {dir_a.path})"
            )
        started = time.perf_counter()
        line = stack.enter_context(LiveLine(after=0.5))

        def progress(n: int, rr: RoundReport) -> None:
            moved = rr.oplogs_sent + rr.oplogs_received
            size = (rr.bytes_sent + rr.bytes_received) / 1e6
            line.show(
                f"sync: round {n}, {rr.round_trips} round trip(s), {moved:,} oplogs moved,"
                f" {size:,.1f} MB"
            )

        report = sync_local(
            store_a,
            store_b,
            topic.topic_id,
            peer_a=id_a.peer_id,
            peer_b=id_b.peer_id,
            now=now,
            max_rounds=args.max_rounds,
            progress=progress,
        )
        seconds = time.perf_counter() - started
        line.close()
        counts = (store_a.count(topic.topic_id), store_b.count(topic.topic_id))
    result = report.as_json()
    result.update(
        topic_id=topic.topic_id.hex(),
        seconds=round(seconds, 3),
        oplogs_a=counts[0],
        oplogs_b=counts[1],
    )
    if args.json:
        emit_json(result)
    else:
        state = "converged" if report.converged else "NOT converged"
        print(
            f"{state} in {result['rounds']} round(s), {result['round_trips']} round trip(s),"
            f" {seconds:.2f}s"
        )
        print(
            f"A -> B: {result['bytes_a_to_b']:,} bytes, {result['oplogs_sent']:,} oplogs"
            f" | B -> A: {result['bytes_b_to_a']:,} bytes, {result['oplogs_received']:,} oplogs"
        )
        print(f"A: {counts[0]:,} oplogs, digest {report.digest_a}")
        print(f"B: {counts[1]:,} oplogs, digest {report.digest_b}")
        if report.rejected:
            print(f"{report.rejected} invalid oplog(s) were refused")
    return 0 if report.converged else 1
