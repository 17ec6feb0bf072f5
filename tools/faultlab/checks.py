"""The invariants at the end of a fault run, read from the stopped peers' stores.

The simulator's invariants (pttsync/sim/invariants.py), on real processes:

* `digests`: every peer holds the same tree;
* `acknowledged`: every acknowledged write is valid on every peer, or valid
  on none (rolled back where it was held, expired and recorded as failed,
  and absent where it never arrived: pending writes travel only towards a
  master); one acknowledged as valid is valid everywhere;
* `conflicts`: every document shows the same heads, winner and conflicts on
  every peer (a conflict is visible everywhere, never dropped);
* `stores`: every store verifies (each record decoded with its signatures
  and compared with its row; leaves and tree consistent).

Each maps to "ok" or to what failed.  `lost` lists acknowledged writes that
are valid somewhere (or were acknowledged as valid) but not everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pttsync.core.documents.docstore import MAX_LIST, DocumentStore
from pttsync.core.lifecycle.replica import Replica
from pttsync.core.oplog import OplogStatus
from pttsync.core.store.integrity import scan
from pttsync.datadir import DataDir

if TYPE_CHECKING:
    from pathlib import Path

    from .cluster import Ack


@dataclass
class Verdict:
    invariants: dict[str, str] = field(default_factory=dict)
    lost: list[dict[str, Any]] = field(default_factory=list)
    valid: int = 0  # acknowledged writes valid everywhere
    rolled_back: int = 0  # acknowledged writes rolled back everywhere
    quarantined: int = 0

    @property
    def ok(self) -> bool:
        return all(v == "ok" for v in self.invariants.values())


def _docs(store: Any, tid: bytes) -> dict[str, tuple[Any, ...]]:
    docs = DocumentStore(Replica(store, tid))
    try:
        out = {}
        for state in docs.items(limit=MAX_LIST, deleted=True):
            out[state.key] = (state.exists, repr(state.value), state.heads, state.conflicts)
        return out
    finally:
        docs.close()


def check(dirs: list[Path], history: list[Ack]) -> Verdict:
    v = Verdict()
    digests, docs, fates, problems = [], [], [], []
    for d in dirs:
        with DataDir(d).open_store() as store:
            tid = store.topics()[0].topic_id
            digests.append(store.tree(tid).digest().hex())
            docs.append(_docs(store, tid))
            bad = [f"{d.name}: damaged {x.oplog_id.hex()[:16]}" for x in scan(store, tid)]
            problems += bad + [f"{d.name}: {p}" for p in store.check(tid)]
            v.quarantined += len(store.quarantined(tid))
            fate = {}
            for ack in history:
                oid = bytes.fromhex(ack.oplog_id)
                stored = store.get(tid, oid)
                if stored is not None and stored.status is OplogStatus.VALID:
                    fate[ack.oplog_id] = "valid"
                elif store.has_failed(tid, oid):
                    fate[ack.oplog_id] = "rolled back"
                elif stored is not None:
                    fate[ack.oplog_id] = "pending"
                else:
                    fate[ack.oplog_id] = "missing"
            fates.append(fate)
    v.invariants["digests"] = (
        "ok" if len(set(digests)) == 1 else f"{len(set(digests))} different digests"
    )
    odd = []
    for ack in history:
        seen = [f[ack.oplog_id] for f in fates]
        if set(seen) == {"valid"}:
            v.valid += 1
            continue
        if set(seen) <= {"rolled back", "missing"} and ack.status != "confirmed":
            v.rolled_back += 1
            continue
        odd.append(f"{ack.key}={ack.value} ({ack.status} at peer {ack.peer}): {seen}")
        if "valid" in seen or ack.status == "confirmed":
            v.lost.append({"peer": ack.peer, "key": ack.key, "value": ack.value,
                           "oplog_id": ack.oplog_id, "fates": seen})  # fmt: skip
    v.invariants["acknowledged"] = "ok" if not odd else f"{len(odd)} writes: {odd[:3]}"
    differ = sorted({k for d in docs for k in d if any(o.get(k) != d.get(k) for o in docs)})
    v.invariants["conflicts"] = "ok" if not differ else f"documents differ: {differ[:5]}"
    v.invariants["stores"] = "ok" if not problems else "; ".join(problems[:5])
    return v
