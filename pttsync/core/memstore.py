"""The store in plain Python objects: the simulator's store, and a reference for SQLite's.

`MemoryStore` has the interface and the semantics of `Store` (store.py):
statuses kept apart, a put replacing any copy of its oplog ID, leaves only
for valid oplogs, failed records, sync times, and the Merkle tree kept
exact by the very same algorithm (merkle.MerkleTree over a `TreeStorage`).
It just keeps everything in dicts and sorted lists, with no SQL and no
encoding or decoding of records, so one write costs several times less.

What it is not: durable, or bounded by anything but memory.  It is for
simulation (thousands of peers in one process; `pttsync simulate --store
memory`, the default there) and tests.  tests/test_memstore.py runs random
histories against both stores and compares every query.

`copy()` is cheap (containers are copied, records shared: they are
immutable), so a simulation starts a thousand peers from one store.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import UsageError
from .merkle import Changes, Leaf, Level, MerkleTree, Node, merge_changes
from .oplog import Oplog, OplogStatus
from .oplogcodec import encode_oplog
from .store import MAX_FAILED, SCHEMA_VERSION, BatchResult, FailedOplog, Store, StoredOplog

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

    from .store import TopicInfo

_END = 2**63 - 1
_VALID = OplogStatus.VALID


class _Tree:
    """merkle.TreeStorage in memory: leaves and nodes in dicts and sorted lists.

    The leaves are always current.  The nodes above them are brought up to
    date lazily: a batch records which hours changed, and the first read of a
    node runs the tree's own incremental update over every change since the
    last read (so a node read is always exact).  A node that takes a hundred
    pushes between two sync rounds updates each hour's path once, not a
    hundred times.
    """

    def __init__(self) -> None:
        self.topic_id = b""
        self.pending: Changes = {}
        self._flushing = False
        self.leaf_keys: list[tuple[int, bytes]] = []  # sorted (time, oplog ID)
        self.leaf_list: list[Leaf] = []  # the leaves, in the same order
        self.leaf_hash: dict[tuple[int, bytes], bytes] = {}
        self.nodes_by: dict[tuple[int, int], dict[int, Node]] = {}  # (level, depth) -> start
        self.starts: dict[tuple[int, int], list[int]] = {}  # (level, depth) -> sorted starts

    def copy(self) -> _Tree:
        self.flush()
        other = _Tree()
        other.topic_id = self.topic_id
        other.leaf_keys = list(self.leaf_keys)
        other.leaf_list = list(self.leaf_list)
        other.leaf_hash = dict(self.leaf_hash)
        other.nodes_by = {k: dict(v) for k, v in self.nodes_by.items()}
        other.starts = {k: list(v) for k, v in self.starts.items()}
        return other

    def defer(self, changes: Changes) -> None:
        merge_changes(self.pending, changes)

    def flush(self) -> None:
        """Bring the nodes up to date with every leaf change deferred so far."""
        if self.pending and not self._flushing:
            changes, self.pending = self.pending, {}
            self._flushing = True
            try:
                MerkleTree(self.topic_id, self).update_parents(changes)
            finally:
                self._flushing = False

    def get_node(self, level: Level, depth: int, start: int) -> Node | None:
        self.flush()
        found = self.nodes_by.get((level, depth))
        return None if found is None else found.get(start)

    def get_nodes(self, level: Level, depth: int, starts: Sequence[int]) -> dict[int, Node]:
        self.flush()
        found = self.nodes_by.get((level, depth), {})
        return {s: found[s] for s in starts if s in found}

    def put_node(self, node: Node) -> None:
        key = (int(node.level), node.depth)
        nodes = self.nodes_by.setdefault(key, {})
        if node.start not in nodes:
            bisect.insort(self.starts.setdefault(key, []), node.start)
        nodes[node.start] = node

    def put_nodes(self, nodes: Sequence[Node]) -> None:
        for node in nodes:
            self.put_node(node)

    def delete_node(self, level: Level, depth: int, start: int) -> None:
        key = (int(level), depth)
        nodes = self.nodes_by.get(key)
        if nodes is not None and nodes.pop(start, None) is not None:
            starts = self.starts[key]
            del starts[bisect.bisect_left(starts, start)]

    def delete_slices(self, min_depth: int, start: int, end: int) -> None:
        for (level, depth), nodes in self.nodes_by.items():
            if level != Level.SLICE or depth < min_depth:
                continue
            starts = self.starts[(level, depth)]
            lo, hi = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
            for s in starts[lo:hi]:
                del nodes[s]
            del starts[lo:hi]

    def nodes(self, level: Level, depth: int, start: int, end: int) -> list[Node]:
        self.flush()
        key = (int(level), depth)
        starts = self.starts.get(key)
        if not starts:
            return []
        nodes = self.nodes_by[key]
        lo, hi = bisect.bisect_left(starts, start), bisect.bisect_left(starts, end)
        return [nodes[s] for s in starts[lo:hi]]

    def summaries(self, level: Level, start: int, end: int) -> list[tuple[bytes, int]]:
        return [(n.hash, n.leaves) for n in self.nodes(level, 0, start, end)]

    def nodes_between(self, start: int, end: int) -> list[Node]:
        self.flush()
        found: list[Node] = []
        for level, depth in sorted(self.nodes_by):
            if level in (Level.SLICE, Level.HOUR, Level.DAY):
                found += self.nodes(Level(level), depth, start, end)
        return found

    def active_days(self) -> list[int]:
        self.flush()
        day = 24 * 3600 * 10**9
        days = {t - t % day for t, _ in self.leaf_keys}
        for (level, _depth), nodes in self.nodes_by.items():
            if level <= Level.DAY:
                days.update(s - s % day for s in nodes)
        return sorted(days)

    def _span(self, start: int, end: int) -> tuple[int, int]:
        keys = self.leaf_keys
        lo = bisect.bisect_left(keys, (start, b""))
        return lo, bisect.bisect_left(keys, (min(end, _END), b""), lo)

    def leaves(self, start: int, end: int) -> list[Leaf]:
        lo, hi = self._span(start, end)
        return self.leaf_list[lo:hi]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        lo, hi = self._span(start, end)
        return [leaf.hash for leaf in self.leaf_list[lo:hi]]

    def put_leaves(self, leaves: Sequence[Leaf]) -> None:
        for leaf in leaves:
            key = (leaf.time, leaf.oplog_id)
            if key in self.leaf_hash:
                raise UsageError(f"a leaf for oplog {leaf.oplog_id.hex()} is already there")
            i = bisect.bisect_left(self.leaf_keys, key)
            self.leaf_keys.insert(i, key)
            self.leaf_list.insert(i, leaf)
            self.leaf_hash[key] = leaf.hash

    def delete_leaf(self, time: int, oplog_id: bytes) -> bool:
        key = (time, oplog_id)
        if self.leaf_hash.pop(key, None) is None:
            return False
        i = bisect.bisect_left(self.leaf_keys, key)
        del self.leaf_keys[i], self.leaf_list[i]
        return True


@dataclass(slots=True)
class _Topic:
    """One topic's oplogs, indexes and tree."""

    info: TopicInfo
    oplogs: dict[bytes, StoredOplog] = field(default_factory=dict)
    bodies: dict[bytes, bytes] = field(default_factory=dict)  # encoded lazily, by ID
    order: list[tuple[int, bytes]] = field(default_factory=list)  # (update time, ID), sorted
    by_object: dict[bytes, set[bytes]] = field(default_factory=dict)
    objects: list[bytes] = field(default_factory=list)  # sorted distinct object IDs
    object_ops: dict[bytes, dict[int, int]] = field(default_factory=dict)  # op -> count
    by_op: dict[int, set[bytes]] = field(default_factory=dict)
    not_valid: set[bytes] = field(default_factory=set)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # by status value
    failed: dict[bytes, FailedOplog] = field(default_factory=dict)
    sync_times: dict[bytes, int] = field(default_factory=dict)
    tree: _Tree = field(default_factory=_Tree)

    def copy(self) -> _Topic:
        return _Topic(
            self.info,
            dict(self.oplogs),
            dict(self.bodies),
            list(self.order),
            {k: set(v) for k, v in self.by_object.items()},
            list(self.objects),
            {k: dict(v) for k, v in self.object_ops.items()},
            {k: set(v) for k, v in self.by_op.items()},
            set(self.not_valid),
            list(self.counts),
            dict(self.failed),
            dict(self.sync_times),
            self.tree.copy(),
        )

    # -- one oplog in, one oplog out ------------------------------------------------

    def insert(self, stored: StoredOplog) -> None:
        o = stored.oplog
        oid = o.oplog_id
        self.oplogs[oid] = stored
        bisect.insort(self.order, (o.update_time, oid))
        ids = self.by_object.get(o.object_id)
        if ids is None:
            ids = self.by_object[o.object_id] = set()
            bisect.insort(self.objects, o.object_id)
            self.object_ops[o.object_id] = {}
        ids.add(oid)
        ops = self.object_ops[o.object_id]
        ops[o.op] = ops.get(o.op, 0) + 1
        self.by_op.setdefault(o.op, set()).add(oid)
        self.counts[stored.status.value] += 1
        if stored.status is not _VALID:
            self.not_valid.add(oid)

    def remove(self, oid: bytes) -> StoredOplog | None:
        stored = self.oplogs.pop(oid, None)
        if stored is None:
            return None
        o = stored.oplog
        self.bodies.pop(oid, None)
        key = (o.update_time, oid)
        i = bisect.bisect_left(self.order, key)
        del self.order[i]
        ids = self.by_object[o.object_id]
        ids.discard(oid)
        ops = self.object_ops[o.object_id]
        ops[o.op] -= 1
        if not ops[o.op]:
            del ops[o.op]
        if not ids:
            del self.by_object[o.object_id], self.object_ops[o.object_id]
            del self.objects[bisect.bisect_left(self.objects, o.object_id)]
        same_op = self.by_op[o.op]
        same_op.discard(oid)
        if not same_op:
            del self.by_op[o.op]
        self.counts[stored.status.value] -= 1
        self.not_valid.discard(oid)
        return stored

    def body(self, oid: bytes) -> bytes:
        body = self.bodies.get(oid)
        if body is None:
            body = self.bodies[oid] = encode_oplog(self.oplogs[oid].oplog)
        return body


class MemoryStore(Store):
    """A `Store` held in Python objects (see the module text).  Not for concurrent use."""

    def __init__(self) -> None:  # no database: Store's own __init__ is not called
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
        """As Store.write_batch (one batch, all or nothing)."""
        t = self._t(topic_id)
        puts = list(puts)
        for oplog, _ in puts:  # checked before anything changes
            if oplog.topic_id != topic_id:
                raise UsageError(
                    f"oplog {oplog.oplog_id.hex()} belongs to topic {oplog.topic_id.hex()}"
                )
        result = BatchResult()
        added: dict[bytes, Leaf] = {}
        removed: list[Leaf] = []
        new_here: set[bytes] = set()

        def drop(stored: StoredOplog) -> None:
            o = stored.oplog
            if stored.status is _VALID and added.pop(o.oplog_id, None) is None:
                removed.append(Leaf(o.update_time, o.oplog_id, o.hash))

        for oplog, given in puts:
            oid = oplog.oplog_id
            status = given if type(given) is OplogStatus else OplogStatus(given)
            old = t.oplogs.get(oid)
            if old is not None:
                if old.status is status and old.oplog.hash == oplog.hash:
                    if oid not in new_here:
                        result.unchanged.append(oid)
                    continue
                t.remove(oid)
                drop(old)
                if oid not in new_here:
                    result.replaced.append(oid)
            else:
                new_here.add(oid)
                result.added.append(oid)
            t.insert(StoredOplog(oplog, status))
            if status is _VALID:
                added[oid] = Leaf(oplog.update_time, oid, oplog.hash)
        failed = list(failed)
        for record in failed:
            t.failed[record.oplog_id] = record
        if len(t.failed) > MAX_FAILED:
            keep = sorted(t.failed.values(), key=lambda f: (-f.failed_at, f.oplog_id))
            t.failed = {f.oplog_id: f for f in keep[:MAX_FAILED]}
        for oid in [*deletes, *(f.oplog_id for f in failed)]:
            old = t.remove(oid)
            if old is not None:
                drop(old)
                result.deleted.append(oid)
        t.tree.defer(MerkleTree(topic_id, t.tree).apply_leaves(list(added.values()), removed))
        return result

    # -- reading -----------------------------------------------------------------

    def get(self, topic_id: bytes, oplog_id: bytes) -> StoredOplog | None:
        return self._t(topic_id).oplogs.get(oplog_id)

    def find(self, topic_id: bytes, hex_prefix: str, limit: int = 2) -> list[StoredOplog]:
        prefix = hex_prefix.lower()
        if len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
            raise UsageError(f"{hex_prefix!r} is not a hex oplog ID prefix")
        t = self._t(topic_id)
        ids = sorted(k for k in t.oplogs if k.hex().startswith(prefix))
        return [t.oplogs[k] for k in ids[:limit]]

    def oplogs(
        self, topic_id: bytes, status: OplogStatus, *, since: int = 0, limit: int = 1000
    ) -> list[Oplog]:
        t = self._t(topic_id)
        if status is _VALID:
            keys = t.tree.leaf_keys
            i = bisect.bisect_left(keys, (since, b""))
            return [t.oplogs[oid].oplog for _, oid in keys[i : i + max(0, limit)]]
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
            out += [t.oplogs[k] for k in sorted(t.by_object.get(object_id, ()))]
        return out

    def by_op_range(self, topic_id: bytes, lo: int, hi: int) -> list[StoredOplog]:
        t = self._t(topic_id)
        ids = sorted(k for op, ks in t.by_op.items() if lo <= op < hi for k in ks)
        return [t.oplogs[k] for k in ids]

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
        for object_id in t.objects[pick(t.objects, after) :]:
            if any(lo <= op < hi for op in t.object_ops[object_id]):
                out.append(object_id)
                if len(out) >= limit:
                    break
        return out

    def has_failed(self, topic_id: bytes, oplog_id: bytes) -> bool:
        return oplog_id in self._t(topic_id).failed

    def failed(self, topic_id: bytes, *, limit: int = 1000) -> list[FailedOplog]:
        records = sorted(
            self._t(topic_id).failed.values(), key=lambda f: (-f.failed_at, f.oplog_id)
        )
        return records[:limit]

    def leaves_from(
        self, topic_id: bytes, lo: tuple[int, bytes], end: int, limit: int
    ) -> list[Leaf]:
        tree = self._t(topic_id).tree
        i = bisect.bisect_left(tree.leaf_keys, lo)
        out: list[Leaf] = []
        for leaf in tree.leaf_list[i : i + max(0, limit)]:
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

    def check(self, topic_id: bytes) -> list[str]:
        t = self._t(topic_id)
        problems = []
        for oid, stored in t.oplogs.items():
            o = stored.oplog
            if stored.status is _VALID and t.tree.leaf_hash.get((o.update_time, oid)) != o.hash:
                problems.append(f"valid oplog {oid.hex()} has no matching leaf")
        for (time, oid), h in t.tree.leaf_hash.items():
            held = t.oplogs.get(oid)
            if (
                held is None
                or held.status is not _VALID
                or (held.oplog.update_time, held.oplog.hash) != (time, h)
            ):
                problems.append(f"leaf {oid.hex()} has no matching valid oplog")
        return problems + self.tree(topic_id).check()
