"""What a store is: the `Store` protocol and the values it reads and writes.

Everything above the store (the lifecycle, sync, the documents, the node)
is written against this protocol and never names an implementation.  Two
implement it side by side: `SqliteStore` (sqlite.py, the durable default)
and `MemoryStore` (memory.py, the simulator's).  Both keep the same
guarantees (docs/pip-11/store.md):

* a batch is all or nothing;
* an oplog ID is in exactly one status at a time, and only valid oplogs
  have a leaf in the topic's Merkle tree;
* the store applies no policy: which copy wins, and whether an oplog is
  valid, are decided above it (HandleOplogs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ...errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Iterator

    from ..merkle import Leaf, MerkleTree
    from ..oplog import Oplog, OplogStatus
    from ..topic import TopicInfo

__all__ = [
    "MAX_FAILED",
    "BatchResult",
    "Damage",
    "FailedOplog",
    "Store",
    "StoredOplog",
    "check_hex_prefix",
    "newest_failed_first",
]


@dataclass(frozen=True, slots=True)
class StoredOplog:
    oplog: Oplog
    status: OplogStatus


@dataclass(frozen=True, slots=True)
class FailedOplog:
    """A record of an oplog that HandleFailedOplogs rolled back and deleted."""

    oplog_id: bytes
    object_id: bytes
    op: int
    creator: bytes
    create_time: int
    failed_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class Damage:
    """A stored record that does not decode to what its row says, and why (integrity.py)."""

    oplog_id: bytes
    status: int
    reason: str


MAX_FAILED = 10_000
"""Failed-oplog records kept per topic; the oldest go first."""


@dataclass(slots=True)
class BatchResult:
    """What a batch did, by oplog ID (each ID listed once)."""

    added: list[bytes] = field(default_factory=list)
    replaced: list[bytes] = field(default_factory=list)
    unchanged: list[bytes] = field(default_factory=list)
    deleted: list[bytes] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """Oplogs by status, with each topic's Merkle tree.  Not for concurrent use."""

    path: str

    @property
    def schema_version(self) -> int: ...

    def copy(self) -> Store:
        """An in-memory copy of this store, every topic and oplog in it."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(self, *exc: object) -> None: ...

    # -- topics ------------------------------------------------------------------

    def add_topic(self, info: TopicInfo) -> None:
        """Add a topic.  UsageError if it is already here."""
        ...

    def topics(self) -> list[TopicInfo]: ...

    def topic(self, topic_id: bytes) -> TopicInfo:
        """A topic's settings.  UsageError if it is not here."""
        ...

    # -- writing -----------------------------------------------------------------

    def write_batch(
        self,
        topic_id: bytes,
        puts: Iterable[tuple[Oplog, OplogStatus]] = (),
        deletes: Iterable[bytes] = (),
        failed: Iterable[FailedOplog] = (),
    ) -> BatchResult:
        """Write oplogs and delete oplog IDs of one topic, all or nothing.

        A put replaces any stored copy of the same oplog ID (in any status);
        the Merkle leaves follow.  Deletes of unknown IDs are ignored.  Each
        `failed` record is kept (the newest MAX_FAILED per topic) and its
        oplog deleted.  batch.plan_batch is the bookkeeping both stores share.

        Raises:
            UsageError: an oplog belongs to another topic, or the topic is unknown.
            StoreError: the write failed.  Either way nothing was written.
        """
        ...

    # -- reading -----------------------------------------------------------------

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None: ...

    def find(self, topic_id: bytes, hex_prefix: str, limit: int = 2) -> list[StoredOplog]:
        """Oplogs whose hex ID starts with `hex_prefix`, by ID (check_hex_prefix)."""
        ...

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        """Oplogs of one status with update time >= `since`, oldest first."""
        ...

    def has_pending(self, topic_id: bytes) -> bool:
        """True if the topic holds any pending or internal-pending oplog."""
        ...

    def count(self, topic_id: bytes, status: OplogStatus | None = None) -> int: ...

    def by_objects(self, topic_id: bytes, object_ids: Iterable[bytes]) -> list[StoredOplog]:
        """Every oplog (any status) acting on these objects."""
        ...

    def by_op_range(self, topic_id: bytes, lo: int, hi: int) -> list[StoredOplog]:
        """Every oplog with lo <= op < hi."""
        ...

    def range_key(self, topic_id: bytes, lo: int, hi: int) -> Hashable | None:
        """A value that two stores share only if `by_op_range` gives both the same
        oplog copies, found without reading them; None if the store has none.

        Copies of one memory store share theirs until one changes that range, so
        replicas opened on them share one governance fold (replica.py) instead of
        reading and folding every member's ROLE oplog each."""
        ...

    def since(self, topic_id: bytes, time: int, chunk: int = 2000) -> Iterator[StoredOplog]:
        """Every oplog (any status) with update time >= `time`, in (time, ID) order."""
        ...

    def object_ids(
        self,
        topic_id: bytes,
        *,
        ops: tuple[int, int],
        after: bytes = b"",
        limit: int = 1000,
        inclusive: bool = False,
    ) -> list[bytes]:
        """Distinct object IDs > `after` (>= if `inclusive`) acted on by ops in [lo, hi)."""
        ...

    def has_failed(self, topic_id: bytes, oplog_id: bytes) -> bool:
        """True if the oplog was rolled back by HandleFailedOplogs (and is still recorded)."""
        ...

    def failed(self, topic_id: bytes, *, limit: int = 1000) -> list[FailedOplog]:
        """The most recently failed oplogs, in newest_failed_first order."""
        ...

    # -- what sync reads and remembers ---------------------------------------------

    def leaves_from(
        self, topic_id: bytes, lo: tuple[int, bytes], end: int, limit: int
    ) -> list[Leaf]:
        """Up to `limit` leaves with key >= `lo` and time < `end`, in key order."""
        ...

    def bodies(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        """The encoded records of the valid oplogs among `oplog_ids`, by ID."""
        ...

    def existing(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, StoredOplog]:
        """The stored copies (any status) of `oplog_ids`, by ID."""
        ...

    def sync_time(self, topic_id: bytes, peer: bytes) -> int:
        """The time up to which `peer` was last confirmed in sync with us (0: never)."""
        ...

    def set_sync_time(self, topic_id: bytes, peer: bytes, time: int) -> None:
        """Move a peer's sync time forward to `time`; it never moves back."""
        ...

    # -- the tree ----------------------------------------------------------------

    def tree(self, topic_id: bytes) -> MerkleTree:
        """The Merkle tree of one topic."""
        ...

    def check(self, topic_id: bytes) -> list[str]:
        """A topic's consistency problems (none is good): leaves, oplogs and tree agree."""
        ...

    # -- integrity (integrity.py) ---------------------------------------------------

    def raw_records(
        self, topic_id: bytes, *, after: bytes = b"", limit: int = 1000
    ) -> list[tuple[object, object, object]]:
        """(oplog ID, encoded record, status) as stored, by ID after `after`, not decoded:
        what `integrity.scan` checks record by record."""
        ...

    def quarantined(self, topic_id: bytes, *, limit: int = 1000) -> list[Damage]:
        """Records found damaged on disk and set aside, by ID (integrity.py)."""
        ...


def check_hex_prefix(text: str) -> str:
    """`text` as a lower-case hex prefix of an oplog ID.  UsageError if it is not one."""
    prefix = text.lower()
    if len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
        raise UsageError(f"{text!r} is not a hex oplog ID prefix")
    return prefix


def newest_failed_first(record: FailedOplog) -> tuple[int, bytes]:
    """The order of failed-oplog records: most recently failed first, then by ID."""
    return (-record.failed_at, record.oplog_id)
