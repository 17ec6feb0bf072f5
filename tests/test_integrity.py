"""Integrity on disk (core/store/integrity.py): damaged records found, set aside and healed.

Bytes are flipped in stored records the way bit rot does it: in the row's
body, behind the store's back.  Every single-byte change must be found (by
the scan, by a read, by the scrubber); a store with quarantine on sets the
record aside and a sync round brings a good copy back; one without it says
what is wrong and changes nothing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.cli.main import main
from pttsync.core.oplog import OplogStatus, compute_hash
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store.integrity import Scrubber, check_row, scan
from pttsync.core.store.protocol import Damage
from pttsync.core.store.sqlite import SqliteStore
from pttsync.datadir import DataDir
from pttsync.errors import StoreError
from pttsync.synthetic import populate

from .synchelpers import ADMIT, NOW, TID, TOPIC, digest, gen, ids, member_write, sync

if TYPE_CHECKING:
    from collections.abc import Callable

    from pttsync.core.oplog import Oplog

START, END = NOW - 400 * 24 * 3600 * 10**9, NOW - 3600 * 10**9
RECORDS = gen(40, START, END, seed=7)


def healthy(*, quarantine: bool = False, records: list[Oplog] = RECORDS) -> SqliteStore:
    store = SqliteStore.memory(quarantine=quarantine)
    store.add_topic(TOPIC)
    store.write_batch(TID, [(o, OplogStatus.VALID) for o in records])
    return store


def flip(store: SqliteStore, oplog_id: bytes, at: int, xor: int = 0x01) -> bytes:
    """Change one byte of a stored record in place, as bit rot would; the new body."""
    (body,) = store._conn.execute(
        "SELECT body FROM oplogs WHERE oplog_id=?", (oplog_id,)
    ).fetchone()
    damaged = bytearray(body)
    damaged[at % len(damaged)] ^= xor
    store._conn.execute("UPDATE oplogs SET body=? WHERE oplog_id=?", (bytes(damaged), oplog_id))
    return bytes(damaged)


# -- finding damage ------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, len(RECORDS) - 1), st.integers(0, 10_000), st.integers(1, 255))
def test_property_every_changed_byte_of_a_record_is_found(which: int, at: int, xor: int) -> None:
    with healthy() as store:
        victim = RECORDS[which].oplog_id
        flip(store, victim, at, xor)
        for signatures in (False, True):
            found = scan(store, TID, signatures=signatures)
            assert [d.oplog_id for d in found] == [victim]
            assert found[0].status == OplogStatus.VALID
        with pytest.raises(StoreError, match=f"stored oplog {victim.hex()} is damaged on disk"):
            store.get(TID, victim)
        assert store.count(TID) == len(RECORDS)  # without quarantine nothing changes


def test_a_scan_of_a_healthy_store_finds_nothing_and_reports_progress() -> None:
    seen: list[int] = []
    with healthy() as store:
        assert scan(store, TID, progress=seen.append) == []
    assert seen[-1] == len(RECORDS)


def test_rows_are_checked_against_their_record() -> None:
    o, other = RECORDS[0], RECORDS[1]
    body = encode_oplog(o)
    assert check_row(o.oplog_id, body, 3).oplog == o  # type: ignore[union-attr]
    assert check_row(other.oplog_id, body, 3) == Damage(
        other.oplog_id, 3, "the record's ID is not the one it is stored under"
    )
    assert check_row(o.oplog_id, 12, 3) == Damage(o.oplog_id, 3, "the record is not a byte string")
    for row in [(o.oplog_id, body, 9), ("id", body, 3), (o.oplog_id, body, "3")]:
        with pytest.raises(StoreError, match="oplog row is corrupt"):
            check_row(*row)


def test_a_forged_signature_with_a_matching_hash_is_found_only_with_signatures() -> None:
    # Not bit rot but a record rewritten with care: its ID and hash agree, its signature
    # does not.  The quick scan cannot see it; the full one (inspect check's default) does.
    o = RECORDS[0]
    forged = replace(o, creator_sig=bytes(64))
    forged = replace(
        forged,
        hash=compute_hash(o.oplog_id, bytes(64), o.master_sigs, o.internal_sigs, o.update_time),
    )
    with healthy() as store:
        store._conn.execute(
            "UPDATE oplogs SET body=?, hash=? WHERE oplog_id=?",
            (encode_oplog(forged), forged.hash, o.oplog_id),
        )
        store._conn.execute("UPDATE leaves SET hash=? WHERE oplog_id=?", (forged.hash, o.oplog_id))
        assert scan(store, TID, signatures=False) == []
        (found,) = scan(store, TID)
        assert found.oplog_id == o.oplog_id and "signature" in found.reason


# -- the CRC-32 stored with each record (schema 5) ---------------------------------------


def test_a_record_whose_crc_matches_is_sent_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sending checks each record's CRC-32 (~1 us) instead of decoding it (~50 us); a
    record without one (written before schema 5), or whose CRC disagrees, is decoded."""
    ids = [o.oplog_id for o in RECORDS]
    with healthy() as store:
        want = {o.oplog_id: encode_oplog(o) for o in RECORDS}
        decoded: list[bytes] = []
        real = check_row

        def counting(oplog_id: object, body: object, status: object, **kw: bool) -> object:
            decoded.append(oplog_id)  # type: ignore[arg-type]
            return real(oplog_id, body, status, **kw)

        monkeypatch.setattr("pttsync.core.store.integrity.check_row", counting)
        assert store.bodies(TID, ids) == want and decoded == []
        old, wrong = RECORDS[1].oplog_id, RECORDS[2].oplog_id
        store._conn.execute("UPDATE oplogs SET crc=NULL WHERE oplog_id=?", (old,))
        store._conn.execute("UPDATE oplogs SET crc=crc+1 WHERE oplog_id=?", (wrong,))
        assert store.bodies(TID, ids) == want  # both still good: decoded, then sent
        assert sorted(decoded) == sorted([old, wrong])


# -- quarantine ------------------------------------------------------------------------


def test_with_quarantine_a_damaged_record_is_set_aside_logged_and_never_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    victim = RECORDS[5].oplog_id
    with healthy(quarantine=True) as store:
        before = digest(store)
        flip(store, victim, 40)
        with caplog.at_level(logging.WARNING):
            bodies = store.bodies(TID, [o.oplog_id for o in RECORDS])
        assert victim not in bodies and len(bodies) == len(RECORDS) - 1
        assert f"stored oplog {victim.hex()}" in caplog.text and "quarantined" in caplog.text
        (set_aside,) = store.quarantined(TID)
        assert set_aside.oplog_id == victim and set_aside.status == OplogStatus.VALID
        # Gone with its leaf: the store is consistent, and its tree differs at that leaf.
        assert store.get(TID, victim) is None
        assert store.check(TID) == [] and scan(store, TID) == []
        assert digest(store) != before
        # The damaged bytes are kept for whoever wants to look.
        (kept,) = store._conn.execute("SELECT body FROM quarantine").fetchone()
        assert kept != encode_oplog(RECORDS[5]) and len(kept) == len(encode_oplog(RECORDS[5]))


@pytest.mark.parametrize("read", ["get", "since", "existing", "by_objects", "oplogs", "find"])
def test_every_read_quarantines_what_it_finds_damaged(read: str) -> None:
    victim = RECORDS[3]
    with healthy(quarantine=True) as store:
        flip(store, victim.oplog_id, 7)
        reads: dict[str, Callable[[], object]] = {
            "get": lambda: store.get(TID, victim.oplog_id),
            "since": lambda: list(store.since(TID, 0)),
            "existing": lambda: store.existing(TID, [victim.oplog_id]),
            "by_objects": lambda: store.by_objects(TID, [victim.object_id]),
            "oplogs": lambda: store.oplogs(TID, OplogStatus.VALID, limit=1000),
            "find": lambda: store.find(TID, victim.oplog_id.hex()),
        }
        got = reads[read]()
        assert repr(victim.oplog_id) not in repr(got)
        assert [d.oplog_id for d in store.quarantined(TID)] == [victim.oplog_id]
        assert store.check(TID) == []


def test_a_damaged_pending_record_is_quarantined_too() -> None:
    pending = member_write(END, "p")
    with healthy(quarantine=True, records=[ADMIT, *RECORDS]) as store:
        store.write_batch(TID, [(pending, OplogStatus.PENDING)])
        flip(store, pending.oplog_id, 3)
        assert store.oplogs(TID, OplogStatus.PENDING) == []
        (d,) = store.quarantined(TID)
        assert d.status == OplogStatus.PENDING


def test_the_scrubber_finds_damage_nothing_asked_for_and_sync_heals_it() -> None:
    victims = [RECORDS[i].oplog_id for i in (2, 17, 31)]
    with healthy(quarantine=True) as store, healthy() as peer:
        for i, v in enumerate(victims):
            flip(store, v, 11 * i + 5)
        scrubber = Scrubber(store, TID)
        read = [scrubber.step(16) for _ in range(3)]
        assert read == [16, 16, len(RECORDS) - 32]  # damaged rows are read, then set aside
        assert scrubber.passes == 1
        assert sorted(d.oplog_id for d in store.quarantined(TID)) == sorted(victims)
        assert digest(store) != digest(peer)
        report = sync(store, peer)
        assert report.converged and report.rejected == 0
        assert digest(store) == digest(peer) and ids(store) == ids(peer)
        assert scan(store, TID) == [] and store.check(TID) == []


def test_without_healing_a_damaged_record_is_sent_to_no_one() -> None:
    # The peer that lacks the record asks for it; a store with quarantine on never sends
    # the damaged copy (a peer would refuse it as a protocol violation), and once set
    # aside, neither side has it.
    victim = RECORDS[9]
    with healthy(quarantine=True) as store, healthy(records=RECORDS[:9] + RECORDS[10:]) as peer:
        flip(store, victim.oplog_id, 60)
        report = sync(store, peer)
        assert report.rejected == 0
        assert victim.oplog_id not in ids(peer) and victim.oplog_id not in ids(store)
        assert digest(store) == digest(peer)


# -- the CLI -------------------------------------------------------------------------------


@pytest.fixture
def datadir(tmp_path: Path) -> DataDir:
    d, identity, _ = DataDir.init(tmp_path / "d", topic_name="main", now=NOW, nonce=b"n" * 16)
    with d.open_store() as store:
        tid = store.topics()[0].topic_id
        populate(store, identity, tid, count=30, start=START, end=END, seed=3)
    return d


def damage_one(d: DataDir) -> bytes:
    with d.open_store() as store:
        assert isinstance(store, SqliteStore)
        tid = store.topics()[0].topic_id
        victim = sorted(ids(store, tid))[4]
        flip(store, victim, 20)
    return victim


def test_inspect_check_lists_damaged_records_and_exits_1(
    datadir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "check", "--data", str(datadir.path)]) == 0
    assert "31 records verified (IDs, hashes and signatures)" in capsys.readouterr().out
    victim = damage_one(datadir)
    assert main(["inspect", "check", "--data", str(datadir.path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged: oplog {victim.hex()} (valid): " in out
    assert "1 of 31 records are damaged on disk" in out
    assert main(["inspect", "check", "--data", str(datadir.path), "--no-signatures", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["records"] == 31 and report["signatures"] is False
    assert [d["oplog_id"] for d in report["damaged"]] == [victim.hex()]
    assert report["problems"] == [] and report["quarantined"] == []


def test_inspect_oplog_on_a_damaged_record_says_so_and_changes_nothing(
    datadir: DataDir, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = damage_one(datadir)
    assert main(["inspect", "oplog", "--data", str(datadir.path), victim.hex()]) != 0
    err = capsys.readouterr().err
    assert "is damaged on disk" in err and "Traceback" not in err
    assert main(["inspect", "check", "--data", str(datadir.path), "--json"]) == 1
    assert len(json.loads(capsys.readouterr().out)["damaged"]) == 1
