"""The store in plain Python objects: the simulator's store, and a reference for SQLite's.

`MemoryStore` implements the `Store` protocol (protocol.py) with the semantics
of `SqliteStore` (sqlite.py):
statuses kept apart, a put replacing any copy of its oplog ID, leaves only
for valid oplogs, failed records, sync times, and the Merkle tree kept
exact by the very same algorithm (merkle.MerkleTree over a `TreeStorage`).
It just keeps everything in dicts and sorted lists, with no SQL and no
encoding or decoding of records, so one write costs several times less.

What it is not: durable, or bounded by anything but memory.  It is for
simulation (thousands of peers in one process; `pttsync simulate --store
memory`, the default there) and tests.  tests/test_memstore.py runs random
histories against both stores and compares every query.

`copy()` is cheap: records are shared (they are immutable), and so is
every container's content at the time of the copy, each side keeping only
its own changes over it (overlay.py, chunks.py).  A simulation starts ten
thousand peers from one template store.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from ...errors import UsageError
from ..memo import remember
from ..merkle import Leaf, MerkleTree
from ..oplog import Oplog, OplogStatus
from ..oplogcodec import encode_oplog
from .batch import Held, plan_batch
from .database import SCHEMA_VERSION
from .memtree import MemoryTree
from .overlay import Overlay, Same, pairs, split
from .pages import OpPages, page_of
from .protocol import (
    MAX_FAILED,
    BatchResult,
    Damage,
    FailedOplog,
    StoredOplog,
    check_hex_prefix,
    newest_failed_first,
)

if TYPE_CHECKING:
    from collections.abc import Hashable, Iterable, Iterator, MutableMapping

    from ..topic import TopicInfo

_END = 2**63 - 1
_VALID = OplogStatus.VALID

SHARED_RECORDS = 1 << 16
"""Valid records whose `StoredOplog` the stores of a process share (by hash, newest kept)."""
_STORED: dict[bytes, StoredOplog] = {}


def _stored(oplog: Oplog, status: OplogStatus) -> StoredOplog:
    """`StoredOplog(oplog, status)`, one object for a valid record in every store of the
    process: a simulation's peers hold the same records (48 bytes an oplog a peer).
    The hash covers the record's ID (its content), signatures and update time."""
    if status is not _VALID:
        return StoredOplog(oplog, status)
    known = _STORED.get(oplog.hash)
    return known or remember(_STORED, oplog.hash, StoredOplog(oplog, status), SHARED_RECORDS)


@dataclass(slots=True)
class _Topic:
    """One topic's oplogs, indexes and tree."""

    info: TopicInfo
    oplogs: MutableMapping[bytes, StoredOplog] = field(default_factory=dict)
    bodies: MutableMapping[bytes, bytes] = field(default_factory=dict)  # encoded lazily, by ID
    # object ID -> its oplogs as one flat (oplog ID, op, oplog ID, op, ...) tuple:
    # immutable, so copies share them until a write replaces one (a thousand
    # simulated peers start from one template), and flat, 16 bytes an oplog.
    by_object: MutableMapping[bytes, tuple[bytes | int, ...]] = field(default_factory=dict)
    not_valid: set[bytes] = field(default_factory=set)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # by status value
    failed: dict[bytes, FailedOplog] = field(default_factory=dict)
    sync_times: dict[bytes, int] = field(default_factory=dict)
    tree: MemoryTree = field(default_factory=MemoryTree)
    pages: OpPages = field(default_factory=OpPages)  # object IDs by op page (pages.py)
    # Sorted views, made on demand (rarely read; sorting on each insert cost more):
    _order: list[tuple[int, bytes]] | None = None  # (update time, ID) of every oplog
    _objects: list[bytes] | None = None  # the distinct object IDs

    @property
    def order(self) -> list[tuple[int, bytes]]:
        if self._order is None:
            self._order = sorted((s.oplog.update_time, k) for k, s in self.oplogs.items())
        return self._order

    @property
    def objects(self) -> list[bytes]:
        if self._objects is None:
            self._objects = sorted(self.by_object)
        return self._objects

    def copy(self) -> _Topic:
        """An independent copy; the two share the big containers' present content."""
        self.oplogs, oplogs = split(self.oplogs)
        self.bodies, bodies = split(self.bodies)
        self.by_object, by_object = split(self.by_object)
        return _Topic(
            self.info,
            oplogs,
            bodies,
            by_object,
            set(self.not_valid),
            list(self.counts),
            dict(self.failed),
            dict(self.sync_times),
            self.tree.copy(),
            self.pages.copy(),
        )

    # -- one oplog in, one oplog out ------------------------------------------------

    def insert(self, stored: StoredOplog) -> None:
        o = stored.oplog
        oid = o.oplog_id
        self.oplogs[oid] = stored
        self._order = None
        flat = self.by_object.get(o.object_id)
        if flat is None:
            flat = ()
            self._objects = None
        if oid not in flat[0::2]:
            self.by_object[o.object_id] = (*flat, oid, o.op)
            if not flat or page_of(o.op) != page_of(cast("int", flat[1])):
                self.pages.add(o.object_id, page_of(o.op))  # (a page it had is kept once)
        self.counts[stored.status] += 1  # an IntEnum: its value (no `.value` property)
        if stored.status is not _VALID:
            self.not_valid.add(oid)

    def remove(self, oid: bytes) -> StoredOplog | None:
        stored = self.oplogs.pop(oid, None)
        if stored is None:
            return None
        o = stored.oplog
        self.bodies.pop(oid, None)
        self._order = None
        flat = self.by_object[o.object_id]
        rest = tuple(
            x for k, op in zip(flat[0::2], flat[1::2], strict=True) if k != oid for x in (k, op)
        )
        if rest:
            self.by_object[o.object_id] = rest
        else:
            del self.by_object[o.object_id]
            self._objects = None
        page = page_of(o.op)
        if not any(page_of(cast("int", op)) == page for op in rest[1::2]):
            self.pages.discard(o.object_id, page)
        self.counts[stored.status] -= 1
        self.not_valid.discard(oid)
        return stored

    def body(self, oid: bytes) -> bytes:
        body = self.bodies.get(oid)
        if body is None:
            body = self.bodies[oid] = encode_oplog(self.oplogs[oid].oplog)
        return body


class MemoryStore:
    """The `Store` held in Python objects (see the module text).  Not for concurrent use."""

    def __init__(self) -> None:
        self.path = ":memory:"
        self._topics: dict[bytes, _Topic] = {}

    @classmethod
    def memory(cls) -> MemoryStore:
        return cls()

    def copy(self) -> MemoryStore:
        other = MemoryStore()
        other._topics = {k: t.copy() for k, t in self._topics.items()}
        return other

    @property
    def schema_version(self) -> int:
        return SCHEMA_VERSION

    def close(self) -> None:
        pass

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- topics ------------------------------------------------------------------

    def add_topic(self, info: TopicInfo) -> None:
        if info.topic_id in self._topics:
            raise UsageError(f"topic {info.topic_id.hex()} is already in this store")
        self._topics[info.topic_id] = _Topic(info)
        self._topics[info.topic_id].tree.topic_id = info.topic_id

    def topics(self) -> list[TopicInfo]:
        return [t.info for t in self._topics.values()]

    def topic(self, topic_id: bytes) -> TopicInfo:
        return self._t(topic_id).info

    def _t(self, topic_id: bytes) -> _Topic:
        t = self._topics.get(topic_id)
        if t is None:
            raise UsageError(f"topic {topic_id.hex()} is not in this store")
        return t

    # -- writing -----------------------------------------------------------------

    def write_batch(
        self,
        topic_id: bytes,
        puts: Iterable[tuple[Oplog, OplogStatus]] = (),
        deletes: Iterable[bytes] = (),
        failed: Iterable[FailedOplog] = (),
    ) -> BatchResult:
        """As the `Store` protocol says (one batch, all or nothing)."""
        t = self._t(topic_id)
        failed = list(failed)
        gone = [*deletes, *(f.oplog_id for f in failed)]
        puts = list(puts)
        oplogs = t.oplogs
        held: dict[bytes, Held] = {}
        for oid in [*(oplog.oplog_id for oplog, _ in puts), *gone]:
            stored = oplogs.get(oid)
            if stored is not None:
                o = stored.oplog
                held[oid] = (stored.status, o.update_time, o.hash)
        plan = plan_batch(topic_id, puts, gone, held)  # before anything changes
        insert, remove = t.insert, t.remove
        for oplog, status in plan.writes:
            if oplog.oplog_id in oplogs:
                remove(oplog.oplog_id)
            insert(_stored(oplog, status))
        for record in failed:
            t.failed[record.oplog_id] = record
        if len(t.failed) > MAX_FAILED:
            keep = sorted(t.failed.values(), key=newest_failed_first)
            t.failed = {f.oplog_id: f for f in keep[:MAX_FAILED]}
        for oid in plan.deletes:
            t.remove(oid)
        changes = MerkleTree(topic_id, t.tree).apply_leaves(plan.add_leaves, plan.remove_leaves)
        t.tree.defer(changes)
        return plan.result

    # -- reading -----------------------------------------------------------------

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None:
        return self._t(topic_id).oplogs.get(oplog_id)

    def find(self, topic_id: bytes, hex_prefix: str, limit: int = 2) -> list[StoredOplog]:
        prefix = check_hex_prefix(hex_prefix)
        t = self._t(topic_id)
        ids = sorted(k for k in t.oplogs if k.hex().startswith(prefix))
        return [t.oplogs[k] for k in ids[:limit]]

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        t = self._t(topic_id)
        if status is _VALID:
            leaves = t.tree.leaf_list.from_key((since, b""), limit)
            return [t.oplogs[leaf.oplog_id].oplog for leaf in leaves]
        chosen = sorted(
            (s.oplog.update_time, k)
            for k in t.not_valid
            if (s := t.oplogs[k]).status is status and s.oplog.update_time >= since
        )
        return [t.oplogs[k].oplog for _, k in chosen[: max(0, limit)]]

    def has_pending(self, topic_id: bytes) -> bool:
        return bool(self._t(topic_id).not_valid)

    def count(self, topic_id: bytes, status: OplogStatus | None = None) -> int:
        t = self._t(topic_id)
        return len(t.oplogs) if status is None else t.counts[OplogStatus(status).value]

    def by_objects(self, topic_id: bytes, object_ids: Iterable[bytes]) -> list[StoredOplog]:
        t = self._t(topic_id)
        out: list[StoredOplog] = []
        for object_id in sorted(set(object_ids)):
            ids = cast("tuple[bytes, ...]", t.by_object.get(object_id, ())[0::2])
            out += [t.oplogs[k] for k in sorted(ids)]
        return out

    def by_op_range(self, topic_id: bytes, lo: int, hi: int) -> list[StoredOplog]:
        t = self._t(topic_id)
        # A scan, not an index: it runs when a replica opens (the governance ops),
        # and an index by op cost a simulated peer 35 bytes an oplog.
        found = sorted((k, s) for k, s in pairs(t.oplogs) if lo <= s.oplog.op < hi)
        return [s for _, s in found]

    def range_key(self, topic_id: bytes, lo: int, hi: int) -> Hashable | None:
        """The shared base the oplogs overlay (the same object: `Same`), and this
        copy's own changes in the range: the copies it holds or hides there."""
        oplogs = self._t(topic_id).oplogs
        if not isinstance(oplogs, Overlay):
            return None
        base = oplogs.base
        own = frozenset(
            (s.oplog.hash, s.status) for s in oplogs.own.values() if lo <= s.oplog.op < hi
        )
        hidden = frozenset(k for k in oplogs.hidden if lo <= base[k].oplog.op < hi)
        return (Same(base), lo, hi, own, hidden)

    def since(self, topic_id: bytes, time: int, chunk: int = 2000) -> Iterator[StoredOplog]:
        t = self._t(topic_id)
        i = bisect.bisect_left(t.order, (time, b""))
        for _, oid in list(t.order[i:]):
            stored = t.oplogs.get(oid)
            if stored is not None:
                yield stored

    def object_ids(
        self,
        topic_id: bytes,
        *,
        ops: tuple[int, int],
        after: bytes = b"",
        limit: int = 1000,
        inclusive: bool = False,
    ) -> list[bytes]:
        t = self._t(topic_id)
        pick = bisect.bisect_left if inclusive else bisect.bisect_right
        out: list[bytes] = []
        lo, hi = ops
        ids = t.pages.within(lo, hi)  # the objects of the one page, if the range is in one
        if ids is None:
            ids = t.objects
        for object_id in ids[pick(ids, after) :]:
            if any(lo <= op < hi for op in cast("tuple[int, ...]", t.by_object[object_id][1::2])):
                out.append(object_id)
                if len(out) >= limit:
                    break
        return out

    def has_failed(self, topic_id: bytes, oplog_id: bytes) -> bool:
        return oplog_id in self._t(topic_id).failed

    def failed(self, topic_id: bytes, *, limit: int = 1000) -> list[FailedOplog]:
        return sorted(self._t(topic_id).failed.values(), key=newest_failed_first)[:limit]

    def leaves_from(
        self, topic_id: bytes, lo: tuple[int, bytes], end: int, limit: int
    ) -> list[Leaf]:
        tree = self._t(topic_id).tree
        out: list[Leaf] = []
        for leaf in tree.leaf_list.from_key(lo, limit):
            if leaf.time >= min(end, _END):
                break
            out.append(leaf)
        return out

    def bodies(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, bytes]:
        t = self._t(topic_id)
        out: dict[bytes, bytes] = {}
        for oid in oplog_ids:
            stored = t.oplogs.get(oid)
            if stored is not None and stored.status is _VALID:
                out[oid] = t.body(oid)
        return out

    def existing(self, topic_id: bytes, oplog_ids: Iterable[bytes]) -> dict[bytes, StoredOplog]:
        oplogs = self._t(topic_id).oplogs
        return {oid: oplogs[oid] for oid in oplog_ids if oid in oplogs}

    def sync_time(self, topic_id: bytes, peer: bytes) -> int:
        return self._t(topic_id).sync_times.get(peer, 0)

    def set_sync_time(self, topic_id: bytes, peer: bytes, time: int) -> None:
        times = self._t(topic_id).sync_times
        times[peer] = max(times.get(peer, time), time)

    # -- the tree ----------------------------------------------------------------

    def tree(self, topic_id: bytes) -> MerkleTree:
        return MerkleTree(topic_id, self._t(topic_id).tree)

    def fingerprint(self, topic_id: bytes) -> int:
        """The sum of the topic's tree leaves' hashes (as integers), kept as they change.

        Two trees have the same fingerprint exactly when they have the same leaves,
        so the same digest (but for a sum of 256-bit hashes colliding), and reading
        it brings no node up to date: the simulator compares a thousand peers' trees
        once a virtual second with it (sim/observe.py)."""
        return self._t(topic_id).tree.fingerprint

    def raw_records(
        self, topic_id: bytes, *, after: bytes = b"", limit: int = 1000
    ) -> list[tuple[object, object, object]]:
        """Records are kept decoded here, so this encodes them (nothing rots in memory)."""
        t = self._t(topic_id)
        ids = sorted(oid for oid in t.oplogs if oid > after)[:limit]
        return [
            (oid, t.bodies.get(oid) or encode_oplog(t.oplogs[oid].oplog), int(t.oplogs[oid].status))
            for oid in ids
        ]

    def quarantined(self, topic_id: bytes, *, limit: int = 1000) -> list[Damage]:
        self._t(topic_id)
        return []

    def check(self, topic_id: bytes) -> list[str]:
        t = self._t(topic_id)
        problems = []
        for oid, stored in t.oplogs.items():
            o = stored.oplog
            if stored.status is _VALID and t.tree.hash_of(o.update_time, oid) != o.hash:
                problems.append(f"valid oplog {oid.hex()} has no matching leaf")
        for leaf in t.tree.leaf_list:
            held = t.oplogs.get(leaf.oplog_id)
            if (
                held is None
                or held.status is not _VALID
                or (held.oplog.update_time, held.oplog.hash) != (leaf.time, leaf.hash)
            ):
                problems.append(f"leaf {leaf.oplog_id.hex()} has no matching valid oplog")
        return problems + self.tree(topic_id).check()
