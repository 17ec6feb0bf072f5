"""Records as stored on disk: checked when read, quarantined when damaged, scanned on demand.

A byte flipped in a stored record (bit rot, a bad sector, a stray write)
changes its ID or its hash, so decoding it again finds the damage even
without the signatures.  What to do then depends on who reads:

* **A running node** opens its store with quarantine on.  A damaged record
  it reads is logged (a warning), moved to the store's quarantine with the
  reason, and removed with its leaf, as if it had never arrived.  Its
  topic's tree then differs from its peers' at that leaf, so the next sync
  round's descent finds it and a peer's good copy replaces it.  Nothing is
  sent damaged: a peer would refuse it and close the link as a violation.
* **Every other reader** (the CLI's inspect commands) gets a `StoreError`
  that names the record and the fix; it writes nothing.
* **A running node scrubs** (`Scrubber`): a batch of records at a time, on
  a timer, round and round its topics, it reads every stored record, so a
  damaged one is found and healed even if nothing asks for it.
* **`pttsync inspect check`** (`scan`) decodes every stored record with its
  signatures and compares it with its row.

Rows whose columns are of the wrong type are not quarantined: that is a
damaged page or index, not a damaged record, and stays a StoreError.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ...errors import InvalidOplogError, StoreError
from ..oplog import OplogStatus
from ..oplogcodec import decode_oplog
from .protocol import Damage, StoredOplog

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .protocol import Store

log = logging.getLogger(__name__)

_STATUSES = frozenset(int(s) for s in OplogStatus)

SCAN_CHUNK = 1000
"""Records read per query while scanning a topic."""


def check_row(
    oplog_id: object, body: object, status: object, *, signatures: bool = False
) -> StoredOplog | Damage:
    """The stored oplog a row holds, or the damage to its record.

    Raises:
        StoreError: the row itself is corrupt (a column of the wrong type, an
            unknown status): a damaged page, not a damaged record.
    """
    if type(oplog_id) is not bytes or type(status) is not int or status not in _STATUSES:
        raise StoreError(f"a stored oplog row is corrupt: {(oplog_id, status)!r:.200}")
    if type(body) is not bytes:
        return Damage(oplog_id, status, "the record is not a byte string")
    try:
        oplog = decode_oplog(body, signatures=signatures)
    except InvalidOplogError as exc:
        return Damage(oplog_id, status, str(exc))
    if oplog.oplog_id != oplog_id:
        return Damage(oplog_id, status, "the record's ID is not the one it is stored under")
    return StoredOplog(oplog, OplogStatus(status))


class Quarantine:
    """What a store does with damaged records it reads (the module text).

    `keep(topic_id, damage)` moves the damaged rows aside and removes them,
    in one transaction; it is called only when quarantine is on.
    """

    def __init__(self, keep: Callable[[bytes, list[Damage]], None], *, enabled: bool) -> None:
        self._keep = keep
        self.enabled = enabled

    def decode(self, topic_id: bytes, rows: Iterable[tuple[object, ...]]) -> list[StoredOplog]:
        """The stored oplogs of `rows` (oplog_id, body, status); damaged ones are handled.

        Raises:
            StoreError: a damaged record, with quarantine off; a corrupt row.
        """
        out: list[StoredOplog] = []
        damaged: list[Damage] = []
        for oplog_id, body, status in rows:
            result = check_row(oplog_id, body, status)
            if isinstance(result, Damage):
                damaged.append(result)
            else:
                out.append(result)
        if damaged:
            self.handle(topic_id, damaged)
        return out

    def handle(self, topic_id: bytes, damaged: list[Damage]) -> None:
        """Quarantine `damaged`, or raise a StoreError that names the first of them."""
        first = damaged[0]
        if not self.enabled:
            raise StoreError(
                f"stored oplog {first.oplog_id.hex()} is damaged on disk ({first.reason});"
                " `pttsync inspect check` lists every damaged record, and a running node"
                " quarantines them and fetches good copies from its peers"
            )
        for d in damaged:
            log.warning(
                "stored oplog %s of topic %s is damaged on disk (%s): quarantined;"
                " a peer's copy will replace it",
                d.oplog_id.hex(),
                topic_id.hex()[:16],
                d.reason,
            )
        self._keep(topic_id, damaged)


def scan(
    store: Store,
    topic_id: bytes,
    *,
    signatures: bool = True,
    progress: Callable[[int], None] | None = None,
) -> list[Damage]:
    """Every damaged record of a topic: each is decoded (with its signatures) and
    compared with its row.  `progress(records so far)` is called after each chunk.

    Raises:
        StoreError: a row is corrupt beyond its record (see `check_row`).
    """
    damaged: list[Damage] = []
    after = b""
    done = 0
    while True:
        rows = store.raw_records(topic_id, after=after, limit=SCAN_CHUNK)
        for oplog_id, body, status in rows:
            result = check_row(oplog_id, body, status, signatures=signatures)
            if isinstance(result, Damage):
                damaged.append(result)
        if rows:  # check_row refused any row whose ID is not bytes
            after = (result if isinstance(result, Damage) else result.oplog).oplog_id
        done += len(rows)
        if progress is not None:
            progress(done)
        if len(rows) < SCAN_CHUNK:
            return damaged


class Scrubber:
    """Reads one topic's stored records `limit` at a time, in ID order, round and round.

    Reading goes through the store's usual decoding, so a store with quarantine
    on sets a damaged record aside as it is read (`Quarantine`).
    """

    def __init__(self, store: Store, topic_id: bytes) -> None:
        self.store = store
        self.topic_id = topic_id
        self._after = b""
        self.passes = 0  # complete passes over the topic

    def step(self, limit: int) -> int:
        """Read the next `limit` records (fewer at the end of a pass); how many were read."""
        rows = self.store.raw_records(self.topic_id, after=self._after, limit=limit)
        ids = [oid for oid, _, _ in rows if type(oid) is bytes]
        self.store.existing(self.topic_id, ids)
        if len(rows) < limit:
            self._after = b""
            self.passes += 1
        elif ids:
            self._after = ids[-1]
        return len(rows)
