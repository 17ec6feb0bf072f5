"""The invariants a finished simulation must satisfy, checked one by one.

Each check returns "ok" or a one-line statement of what is wrong, and may
add details (which write, which peers) for the failure trace:

* converged: every live peer held one digest and nothing pending, within
  `max_wait` virtual seconds after the plan's last event;
* digests_equal: the live peers' Merkle digests are identical now;
* documents_equal: the live peers show identical documents (key, version,
  value, conflict losers) and the same as an oracle replica holding the
  union of their valid oplogs, loaded in one batch (so the documents
  cannot depend on the order oplogs arrived in);
* acknowledged_writes: every write a node acknowledged is valid on every
  live peer, or was rolled back everywhere (gone from every live peer, and
  recorded as failed where it expired).  A write whose every holder left
  the network for good before it spread further is not lost by the
  protocol (pttsync acknowledges a write once it is durable where it was
  made); such writes are counted apart, as orphaned, and must be on no
  live peer or on all;
* conflicts_visible: every conflict of the oracle is listed, with the same
  losing versions, by every live peer (all of them, sampled or not);
* bounds: no peer's bounded structure was ever seen over its limit;
* no_false_violations: no honest peer closed another for a protocol
  violation (the fault model loses and delays, it never corrupts).

Comparing whole documents reads every document of every peer; on big runs
the peers checked are a seeded sample (`max_doc_reads` documents read in all);
the report says how many were checked (`documents.peers_checked`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.docop import key_to_object
from ..core.documents.derive import derive
from ..core.documents.docstore import DocumentStore
from ..core.lifecycle.handle import OplogHandler
from ..core.lifecycle.replica import Replica
from ..core.oplog import OplogStatus
from ..core.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from ..core.documents.derive import DocState
    from ..core.store import Store
    from .peers import Peer
    from .world import World

OK = "ok"
MAX_DOC_READS = 50_000
PAGE = 10_000
EXAMPLES = 5


@dataclass(slots=True)
class Verdict:
    """The invariants' results, and what the report and the trace need from them."""

    results: dict[str, str] = field(default_factory=dict)
    details: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    lost_writes: int = 0
    orphaned_writes: int = 0
    expired_rolled_back: int = 0
    conflicts: int = 0
    documents: int = 0
    peers_checked: int = 0

    @property
    def ok(self) -> bool:
        return all(v == OK for v in self.results.values())


def check(world: World, live: list[Peer], *, max_doc_reads: int = MAX_DOC_READS) -> Verdict:
    """Every invariant of a finished run over its `live` peers."""
    v = Verdict()
    topic_id = world.topic.topic_id
    digests = {p.index: p.store.tree(topic_id).digest() for p in live}
    pending = {p.index: world_pending(p.store, topic_id) for p in live}
    distinct = set(digests.values())
    if world.converged_at is not None:
        v.results["converged"] = OK
    else:
        v.results["converged"] = (
            f"not converged {world.cfg.max_wait:g} s after the last event: {len(distinct)}"
            f" distinct digests over {len(live)} live peers, {sum(pending.values())} oplogs"
            " still pending"
        )
    if len(distinct) <= 1:
        v.results["digests_equal"] = OK
    else:
        groups: dict[bytes, list[int]] = {}
        for i, d in sorted(digests.items()):
            groups.setdefault(d, []).append(i)
        sizes = sorted((len(g) for g in groups.values()), reverse=True)
        v.results["digests_equal"] = f"{len(distinct)} distinct digests (peers per digest {sizes})"
        v.details["digests_equal"] = [
            {"digest": d.hex()[:16], "peers": [f"peer{i}" for i in g[:10]], "count": len(g)}
            for d, g in groups.items()
        ]
    _check_writes(world, live, v)
    oracle = _oracle(world, live, digests)
    _check_documents(world, live, oracle, v, max_doc_reads)
    over = {name: b for name, b in world.bounds.items() if b.limit and b.used > b.limit}
    v.results["bounds"] = OK if not over else "; ".join(
        f"{name} reached {b.used} (limit {b.limit}) on peer{b.peer}" for name, b in over.items()
    )  # fmt: skip
    violations, bugs = world.violations(), world.internal_errors()
    v.results["no_false_violations"] = (
        f"{bugs} connections closed by an internal error (a bug of ours; see the log)"
        if bugs
        else OK
        if violations == 0
        else f"{violations} connections closed as protocol violations"
    )
    return v


def world_pending(store: Store, topic_id: bytes) -> int:
    return store.count(topic_id, OplogStatus.PENDING) + store.count(
        topic_id, OplogStatus.INTERNAL_PENDING
    )


def _check_writes(world: World, live: list[Peer], v: Verdict) -> None:
    topic_id = world.topic.topic_id
    ids = list(world.tracks)
    valid_on = dict.fromkeys(ids, 0)
    held_on = dict.fromkeys(ids, 0)
    for peer in live:
        for oid, stored in peer.store.existing(topic_id, ids).items():
            held_on[oid] += 1
            if stored.status is OplogStatus.VALID:
                valid_on[oid] += 1
    lost = []
    for oid in ids:
        if valid_on[oid] == len(live):
            continue
        if held_on[oid] == 0 and any(p.store.has_failed(topic_id, oid) for p in live):
            v.expired_rolled_back += 1
            continue
        if held_on[oid] == 0 and oid in world.orphans:
            v.orphaned_writes += 1
            continue
        lost.append(oid)
    v.lost_writes = len(lost)
    if not lost:
        v.results["acknowledged_writes"] = OK
        return
    v.results["acknowledged_writes"] = (
        f"{len(lost)} of {len(ids)} acknowledged writes are neither valid on every live peer"
        " nor rolled back everywhere"
    )
    v.details["acknowledged_writes"] = [
        {**world.describe_write(oid), "valid_now_on": valid_on[oid], "held_now_on": held_on[oid]}
        for oid in lost[:EXAMPLES]
    ]


def _oracle(world: World, live: list[Peer], digests: dict[int, bytes]) -> DocumentStore:
    """A replica holding the union of the live peers' valid oplogs, loaded in one batch."""
    topic_id = world.topic.topic_id
    union: dict[bytes, Any] = {}
    seen: set[bytes] = set()
    for peer in live:
        if digests[peer.index] in seen:
            continue  # same digest, same valid oplogs
        seen.add(digests[peer.index])
        for stored in peer.store.since(topic_id, 0):
            if stored.status is OplogStatus.VALID:
                union.setdefault(stored.oplog.oplog_id, stored.oplog)
    store = SqliteStore.memory()
    store.add_topic(world.topic.info)
    replica = Replica(store, topic_id)
    OplogHandler(store, topic_id, replica=replica).handle_decoded(list(union.values()))
    return DocumentStore(replica)


def documents(docs: DocumentStore) -> list[DocState]:
    out: list[DocState] = []
    after = ""
    while True:
        page = docs.items(after=after, limit=PAGE, deleted=True)
        out += page
        if len(page) < PAGE:
            return out
        after = page[-1].key


def summary(state: DocState) -> tuple[object, ...]:
    """What must be equal on every peer: key, version, value, losers (pending aside)."""
    if state.pending:  # a peer's own pending write shows on top: compare the valid state
        return (state.key, tuple(h.oplog_id for h in state.heads))
    return (
        state.key,
        state.exists,
        state.version.oplog_id,
        repr(state.value),
        tuple(c.oplog_id for c in state.conflicts),
    )


def _check_documents(
    world: World, live: list[Peer], oracle: DocumentStore, v: Verdict, max_doc_reads: int
) -> None:
    expected = documents(oracle)
    want = [summary(s) for s in expected]
    conflicts = {s.key: tuple(c.oplog_id for c in s.conflicts) for s in expected if s.in_conflict}
    v.documents, v.conflicts = len(expected), len(conflicts)
    budget = max(1, max_doc_reads // max(1, len(expected)))
    checked = live
    if len(live) > budget:
        rng = random.Random(f"pttsync-sim/{world.cfg.seed}/doc-sample")
        checked = sorted(rng.sample(live, max(2, budget)), key=lambda p: p.index)
    sampled = {p.index for p in checked}
    v.peers_checked = len(checked)
    differ: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    topic_id = world.topic.topic_id
    for peer in live:  # every peer for the conflicts; the sample for whole documents
        if peer.index in sampled:
            docs = DocumentStore(Replica(peer.store, topic_id))
            got = documents(docs)
            docs.close()
            if [summary(s) for s in got] != want:
                mine = {s.key: summary(s) for s in got}
                theirs = {s.key: summary(s) for s in expected}
                keys = sorted(
                    k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)
                )
                differ.append(
                    {"peer": peer.name, "documents_differing": len(keys), "keys": keys[:5]}
                )
        missing = [
            k for k, losers in conflicts.items() if _losers(peer.store, topic_id, k) != losers
        ]
        if missing:
            hidden.append(
                {"peer": peer.name, "conflicts_not_shown": len(missing), "keys": missing[:5]}
            )
    of = f"{len(differ)} of {len(checked)} peers checked"
    v.results["documents_equal"] = (
        OK if not differ else f"{of} show other documents than the oracle"
    )
    of = f"{len(hidden)} of {len(live)} peers"
    v.results["conflicts_visible"] = OK if not hidden else f"{of} do not show every conflict"
    if differ:
        v.details["documents_equal"] = differ[:EXAMPLES]
    if hidden:
        v.details["conflicts_visible"] = hidden[:EXAMPLES]


def _losers(store: Store, topic_id: bytes, key: str) -> tuple[bytes, ...]:
    """The losing versions a peer lists for a document (derived as its DocumentStore does)."""
    stored = store.by_objects(topic_id, [key_to_object(key)])
    state = derive(key, [(s.oplog, s.status) for s in stored])
    return () if state is None else tuple(c.oplog_id for c in state.conflicts)
