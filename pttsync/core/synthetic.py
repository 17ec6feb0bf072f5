"""Synthetic oplogs for demos, tests and benchmarks (`pttsync gen`).

Each oplog is a real, signed document write (op PUT) by the given identity,
with its create time (and so its update time and leaf time) drawn
uniformly from [start, end) by a seeded generator.  The same identity,
topic, range and seed always give the same oplogs, so a run can be
reproduced exactly.  Writing the same seed twice adds nothing the second
time.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from ..errors import UsageError
from . import codec
from .identity import Identity
from .oplog import Oplog, OplogStatus, create_oplog
from .store import BatchResult, Store
from .timeutil import check_time

# The document store's op codes arrive with the lifecycle work; PUT is 1 there too.
OP_PUT = 1
DEFAULT_BATCH = 5000
_WORDS = (
    "sync merkle oplog peer topic hour day month year leaf hash sign trio anti entropy "
    "gossip master member device pending valid expire rollback conflict"
).split()


def synthetic_oplogs(
    identity: Identity, topic_id: bytes, count: int, start: int, end: int, seed: int
) -> Iterator[Oplog]:
    """Yield `count` signed oplogs with create times uniform in [start, end)."""
    if count < 0:
        raise UsageError("count must not be negative")
    check_time(start)
    check_time(end - 1)
    if end <= start:
        raise UsageError("the time range is empty: --to must be after --from")
    rng = random.Random(seed)
    for i in range(count):
        t = rng.randrange(start, end)
        key = f"doc-{rng.randrange(max(count // 4, 1)):06d}"
        text = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(3, 12)))
        yield create_oplog(
            identity,
            topic_id=topic_id,
            object_id=key.encode(),
            op=OP_PUT,
            data=codec.dumps({"seq": i, "seed": seed, "text": text}),
            create_time=t,
        )


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
) -> BatchResult:
    """Write `count` synthetic valid oplogs, one transaction per batch.

    `progress(done, count)` is called after every committed batch.
    """
    if batch_size < 1:
        raise UsageError("batch size must be at least 1")
    total = BatchResult()
    batch: list[tuple[Oplog, OplogStatus]] = []
    done = 0

    def flush() -> None:
        nonlocal done
        result = store.write_batch(topic_id, batch)
        total.added += result.added
        total.unchanged += result.unchanged
        total.replaced += result.replaced
        done += len(batch)
        batch.clear()
        if progress is not None:
            progress(done, count)

    for oplog in synthetic_oplogs(identity, topic_id, count, start, end, seed):
        batch.append((oplog, OplogStatus.VALID))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return total
