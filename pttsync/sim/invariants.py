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
from typing import TYPE_CHECKING, Any, Protocol

from ..core.docop import key_to_object
from ..core.documents.derive import derive
from ..core.documents.docstore import DocumentStore
from ..core.lifecycle.handle import OplogHandler
from ..core.lifecycle.replica import Replica
from ..core.oplog import OplogStatus
from ..core.store.sqlite import SqliteStore
from . import totals

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ..core.documents.derive import DocState, Resolver
    from ..core.oplog import Oplog
    from ..core.store import Store
    from .peers import Peer
    from .world import World

OK = "ok"
Losers = tuple[bytes, ...]
NOWHERE = (0, 0, False)  # a write's facts where it never arrived: valid on, held on, failed
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


@dataclass(slots=True)
class Facts:
    """What the invariants read of the peers one process ran (in a split run, parts.py,
    the second process sends its own; unsplit, they are read in place)."""

    digests: dict[int, bytes]
    pending: dict[int, int]
    writes: dict[bytes, tuple[int, int, bool]]  # oplog ID -> valid on, held on, failed on any
    oplogs: dict[bytes, list[Oplog]]  # a digest of its peers -> its first holder's valid oplogs


class Elsewhere(Protocol):
    """The second process of a split run, as the first one's checks ask it."""

    @property
    def facts(self) -> Facts: ...

    def ask_documents(
        self, want: list[tuple[object, ...]], conflicts: dict[str, Losers], sampled: set[int]
    ) -> None:
        """Have it compare its peers' documents (`compare_documents`), while this
        process compares its own."""
        ...

    def documents(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What it found when asked: (differ, hidden)."""
        ...


def check(
    world: World,
    live: list[Peer],
    *,
    max_doc_reads: int = MAX_DOC_READS,
    elsewhere: Elsewhere | None = None,
    facts: Facts | None = None,
) -> Verdict:
    """Every invariant of a finished run over its `live` peers (in a split run: all of
    them, those the second process ran read through `elsewhere`).  `facts`: this
    process's peers', if read already (`facts_of`)."""
    v = Verdict()
    here = live if elsewhere is None else [p for p in live if p.node is not None]
    if facts is None:
        facts = facts_of(world, here, world.tracks, oplogs=False)
    digests, pending = dict(facts.digests), dict(facts.pending)
    if elsewhere is not None:
        digests.update(elsewhere.facts.digests)
        pending.update(elsewhere.facts.pending)
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
    writes = {oid: facts.writes.get(oid, NOWHERE) for oid in world.tracks}
    if elsewhere is not None:  # where each write is, on the second process's peers too
        there = elsewhere.facts.writes
        for oid, (v0, h0, f0) in writes.items():
            v1, h1, f1 = there.get(oid, NOWHERE)
            writes[oid] = (v0 + v1, h0 + h1, f0 or f1)
    _check_writes(world, len(live), writes, v)
    oracle = _oracle(world, here, digests, elsewhere)
    _check_documents(world, live, here, oracle, v, max_doc_reads, elsewhere)
    over = {name: b for name, b in world.bounds.items() if b.limit and b.used > b.limit}
    v.results["bounds"] = OK if not over else "; ".join(
        f"{name} reached {b.used} (limit {b.limit}) on peer{b.peer}" for name, b in over.items()
    )  # fmt: skip
    violations, bugs = totals.violations(world), totals.internal_errors(world)
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


def facts_of(world: World, here: list[Peer], ids: Iterable[bytes], *, oplogs: bool) -> Facts:
    """The invariants' facts of the peers `here`: digests, pending counts, where each
    write of `ids` is held and valid (and, if held on none of them, whether one
    recorded it as failed), and with `oplogs` each distinct digest's valid oplogs."""
    topic_id = world.topic.topic_id
    digests = {p.index: p.store.tree(topic_id).digest() for p in here}
    pending = {p.index: world_pending(p.store, topic_id) for p in here}
    ids = list(ids)
    valid_on = dict.fromkeys(ids, 0)
    held_on = dict.fromkeys(ids, 0)
    for peer in here:
        for oid, stored in peer.store.existing(topic_id, ids).items():
            held_on[oid] += 1
            if stored.status is OplogStatus.VALID:
                valid_on[oid] += 1
    writes = {}
    for oid in ids:
        failed = held_on[oid] == 0 and any(p.store.has_failed(topic_id, oid) for p in here)
        writes[oid] = (valid_on[oid], held_on[oid], failed)
    valid: dict[bytes, list[Oplog]] = {}
    if oplogs:
        valid = {d: list(found) for d, found in _valid_by_digest(world, here, digests)}
    return Facts(digests, pending, writes, valid)


def _valid_by_digest(
    world: World, here: list[Peer], digests: dict[int, bytes]
) -> Iterator[tuple[bytes, Iterator[Oplog]]]:
    """Each distinct digest of the peers `here`, with its first holder's valid oplogs
    (same digest, same valid oplogs)."""
    topic_id = world.topic.topic_id
    seen: set[bytes] = set()
    for peer in here:
        digest = digests[peer.index]
        if digest not in seen:
            seen.add(digest)
            stored = peer.store.since(topic_id, 0)
            yield digest, (s.oplog for s in stored if s.status is OplogStatus.VALID)


def _check_writes(
    world: World, live: int, writes: dict[bytes, tuple[int, int, bool]], v: Verdict
) -> None:
    lost = []
    for oid, (valid_on, held_on, failed) in writes.items():
        if valid_on == live:
            continue
        if held_on == 0 and failed:
            v.expired_rolled_back += 1
            continue
        if held_on == 0 and oid in world.orphans:
            v.orphaned_writes += 1
            continue
        lost.append(oid)
    v.lost_writes = len(lost)
    if not lost:
        v.results["acknowledged_writes"] = OK
        return
    v.results["acknowledged_writes"] = (
        f"{len(lost)} of {len(writes)} acknowledged writes are neither valid on every live peer"
        " nor rolled back everywhere"
    )
    v.details["acknowledged_writes"] = [
        {
            **totals.describe_write(world, oid),
            "valid_now_on": writes[oid][0],
            "held_now_on": writes[oid][1],
        }
        for oid in lost[:EXAMPLES]
    ]


def _oracle(
    world: World, here: list[Peer], digests: dict[int, bytes], elsewhere: Elsewhere | None
) -> DocumentStore:
    """A replica holding the union of the live peers' valid oplogs, loaded in one batch."""
    topic_id = world.topic.topic_id
    union: dict[bytes, Any] = {}
    seen: set[bytes] = set()
    there = elsewhere.facts.oplogs.items() if elsewhere is not None else ()
    for digest, oplogs in [*_valid_by_digest(world, here, digests), *there]:
        if digest not in seen:  # the second process's digests this one's peers lack
            seen.add(digest)
            for oplog in oplogs:
                union.setdefault(oplog.oplog_id, oplog)
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
    world: World,
    live: list[Peer],
    here: list[Peer],
    oracle: DocumentStore,
    v: Verdict,
    max_doc_reads: int,
    elsewhere: Elsewhere | None,
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
    if elsewhere is not None:  # both processes compare at once
        elsewhere.ask_documents(want, conflicts, sampled)
    differ, hidden = compare_documents(world, here, want, conflicts, sampled)
    if elsewhere is not None:
        there = elsewhere.documents()
        differ = sorted(differ + there[0], key=_by_peer)
        hidden = sorted(hidden + there[1], key=_by_peer)
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


def compare_documents(
    world: World,
    here: list[Peer],
    want: list[tuple[object, ...]],
    conflicts: dict[str, Losers],
    sampled: set[int],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The peers `here` whose documents differ from the oracle's (`want`: those in
    `sampled`) and those that do not list each of its `conflicts` (every one)."""
    differ: list[dict[str, Any]] = []
    hidden: list[dict[str, Any]] = []
    topic_id = world.topic.topic_id
    memo = _Memo()
    for peer in here:  # every peer for the conflicts; the sample for whole documents
        if peer.index in sampled:
            docs = DocumentStore(Replica(peer.store, topic_id), deriver=memo.derive)
            got = documents(docs)
            docs.close()
            if [summary(s) for s in got] != want:
                mine = {s.key: summary(s) for s in got}
                theirs = {str(w[0]): w for w in want}
                keys = sorted(
                    k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k)
                )
                differ.append(
                    {"peer": peer.name, "documents_differing": len(keys), "keys": keys[:5]}
                )
        missing = [
            k for k, losers in conflicts.items() if _losers(peer.store, topic_id, k, memo) != losers
        ]
        if missing:
            hidden.append(
                {"peer": peer.name, "conflicts_not_shown": len(missing), "keys": missing[:5]}
            )
    return differ, hidden


def _by_peer(detail: dict[str, Any]) -> int:
    return int(str(detail["peer"])[4:])


class _Memo:
    """`derive`, each distinct input derived once: the peers hold the very same record
    objects (setup.py), so a document most peers hold alike (a hot key's hundred
    versions, derived twice a peer) is derived once, not once a peer.  The input is
    known by its records' identities, which are unique while the stores hold them:
    for one comparison (and each input is kept, so that no identity is reused)."""

    def __init__(self) -> None:
        self._known: dict[tuple[object, ...], tuple[object, DocState | None]] = {}

    def derive(
        self,
        key: str,
        oplogs: Iterable[tuple[Oplog, OplogStatus]],
        resolver: Resolver | None = None,
    ) -> DocState | None:
        oplogs = list(oplogs)
        ident = (key, resolver, *[(id(o), s) for o, s in oplogs])
        known = self._known.get(ident)
        if known is None:
            known = self._known[ident] = (oplogs, derive(key, oplogs, resolver))
        return known[1]


def _losers(store: Store, topic_id: bytes, key: str, memo: _Memo) -> tuple[bytes, ...]:
    """The losing versions a peer lists for a document (derived as its DocumentStore does)."""
    stored = store.by_objects(topic_id, [key_to_object(key)])
    state = memo.derive(key, [(s.oplog, s.status) for s in stored])
    return () if state is None else tuple(c.oplog_id for c in state.conflicts)
