"""Synthetic oplogs for demos, tests and benchmarks (`pttsync gen`).

Each oplog is a real, signed document write (op PUT) by the given identity,
with its create time (and so its update time and leaf time) drawn
uniformly from [start, end) by a seeded generator: independently, or (with
`in_order`, as `pttsync gen` writes) in increasing order, one in each of
`count` equal slices of the range, as a log written over time is.  In order,
a batch touches the few hours it spans rather than most of the tree, and its
leaves are appended: at 100k over a year, about 900 hours a batch of 10,000
instead of about 5,000.  The same identity,
topic, range and seed always give the same oplogs, so a run can be
reproduced exactly, and writing the same seed twice adds nothing the second
time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import TYPE_CHECKING

from .core.oplog import Draft, OplogStatus, draft_oplog, finish_oplog
from .core.store import BatchResult, Store
from .core.timeutil import check_time
from .errors import UsageError

if TYPE_CHECKING:
    from .core.identity import Identity

# The document store's PUT (core/docop.py); its payload is {"v": value}.
OP_PUT = 1
DEFAULT_BATCH = 10_000
MAX_BATCH = 200_000  # one transaction holds the batch in memory: about 1 KB an oplog
_WORDS = [
    "sync",
    "merkle",
    "oplog",
    "peer",
    "topic",
    "hour",
    "day",
    "month",
    "year",
    "leaf",
    "hash",
    "sign",
    "trio",
    "anti",
    "entropy",
    "gossip",
    "master",
    "member",
    "device",
    "pending",
    "valid",
    "expire",
    "rollback",
    "conflict",
]


def synthetic_drafts(
    creator: bytes,
    topic_id: bytes,
    count: int,
    start: int,
    end: int,
    seed: int,
    *,
    in_order: bool = False,
) -> Iterator[Draft]:
    """Yield `count` unsigned drafts with create times uniform in [start, end)."""
    if count < 0:
        raise UsageError("count must not be negative")
    if end <= start:
        raise UsageError("the time range is empty: --to must be after --from")
    check_time(start)
    check_time(end - 1)
    rng = random.Random(seed)
    keys = max(count // 4, 1)
    span = end - start
    for i in range(count):
        yield draft_oplog(
            creator,
            topic_id=topic_id,
            object_id=b"doc-%06d" % rng.randrange(keys),
            op=OP_PUT,
            value={
                "v": {"seq": i, "seed": seed, "text": " ".join(rng.choices(_WORDS, k=3 + i % 8))}
            },
            create_time=_time(rng, start, span, i, count, in_order),
        )


def _time(rng: random.Random, start: int, span: int, i: int, count: int, in_order: bool) -> int:
    """The i-th create time: anywhere in the span, or in the i-th of `count` slices of it."""
    if not in_order:
        return start + rng.randrange(span)
    lo, hi = start + span * i // count, start + span * (i + 1) // count
    return lo + rng.randrange(max(hi - lo, 1))


SignBatch = Callable[[list[bytes]], "Future[list[bytes]]"]


def sign_inline(identity: Identity) -> SignBatch:
    """A `SignBatch` that signs at once, in this thread."""

    def sign(messages: list[bytes]) -> Future[list[bytes]]:
        done: Future[list[bytes]] = Future()
        done.set_result([identity.sign(m) for m in messages])
        return done

    return sign


def populate(
    store: Store,
    identity: Identity,
    topic_id: bytes,
    *,
    count: int,
    start: int,
    end: int,
    seed: int,
    batch_size: int = DEFAULT_BATCH,
    progress: Callable[[int, int], None] | None = None,
    sign: SignBatch | None = None,
    in_order: bool = False,
) -> BatchResult:
    """Write `count` synthetic valid oplogs, one transaction per batch.

    `sign(messages)` returns a future of the creator signatures (by
    `identity`) of a batch's messages.  The default signs inline.  A `sign`
    that works elsewhere (`pttsync.signer.ProcessSigner`) lets the next batch
    be signed while this one is finished and stored; the oplogs are the same
    either way.  `progress(done, count)` is called after every committed batch.
    `in_order`: create times increase (synthetic_drafts).
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise UsageError(f"batch size must be between 1 and {MAX_BATCH:,}")
    store.topic(topic_id)  # fail before any work if the topic is unknown
    sign = sign or sign_inline(identity)
    drafts = synthetic_drafts(
        identity.peer_id, topic_id, count, start, end, seed, in_order=in_order
    )
    total = BatchResult()
    done = 0

    def submit() -> tuple[list[Draft], Future[list[bytes]]] | None:
        batch = list(itertools.islice(drafts, batch_size))
        return (batch, sign([d.message for d in batch])) if batch else None

    pending = submit()
    while pending is not None:
        batch, signatures = pending
        pending = submit()  # drafted here while `sign` works on the previous batch
        puts = [
            (finish_oplog(d, s), OplogStatus.VALID)
            for d, s in zip(batch, signatures.result(), strict=True)
        ]
        result = store.write_batch(topic_id, puts)
        total.added.extend(result.added)
        total.unchanged.extend(result.unchanged)
        total.replaced.extend(result.replaced)
        done += len(batch)
        if progress is not None:
            progress(done, count)
    return total
