"""Regression tests for bugs found in review (each test names the defect it pins)."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pttsync.cli import main
from pttsync.core import codec
from pttsync.core.identity import Identity, parse_peer_id
from pttsync.core.oplog import (
    MAX_MASTER_SIGS,
    OplogStatus,
    SignKind,
    cosign,
    create_oplog,
    verify_oplog,
    with_signatures,
)
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import TopicInfo
from pttsync.datadir import DataDir
from pttsync.errors import (
    IdentityError,
    OversizeError,
    PttsyncError,
    StoreError,
    UsageError,
)
from pttsync.signer import ProcessSigner

from .helpers import make_identity, make_oplog

T = parse_iso("2025-01-01")


def test_rfc8949_key_order_for_mixed_keys() -> None:
    """cbor2's canonical mode sorts keys length-first (RFC 7049); RFC 8949 is bytewise."""
    assert codec.dumps({"a": 1, 1000: 2}).hex() == "a21903e802616101"
    assert codec.is_canonical(bytes.fromhex("a21903e802616101"), max_size=100)
    assert not codec.is_canonical(bytes.fromhex("a26161011903e802"), max_size=100)
    assert codec.dumps({-1: 0, 24: 0}) == bytes.fromhex("a21818002000")


@pytest.mark.parametrize(
    "text", ["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00", "2025-01-01T00:00:00.\u0661Z"]
)
def test_parse_iso_never_leaks_other_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_iso(text)


def test_parse_iso_accepts_lowercase_separators() -> None:
    assert parse_iso("2025-01-01t10:00z") == parse_iso("2025-01-01T10:00Z")


def test_unknown_key_algorithm_is_an_identity_error(tmp_path: Path) -> None:
    der = Identity.generate()._key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert b"\x06\x03\x2b\x65\x70" in der  # the Ed25519 OID, 1.3.101.112
    odd = der.replace(b"\x06\x03\x2b\x65\x70", b"\x06\x03\x2b\x65\x7f")
    path = tmp_path / "identity.key"
    path.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\n"
        + __import__("base64").encodebytes(odd)
        + b"-----END PRIVATE KEY-----\n"
    )
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError):
        Identity.load(path)


def test_key_save_ignores_stale_temporary_files(tmp_path: Path) -> None:
    stale = tmp_path / "identity.key.tmp"
    stale.write_bytes(b"old")
    os.chmod(stale, 0o644)
    elsewhere = tmp_path / "elsewhere"
    (tmp_path / ".identity.key.link").symlink_to(elsewhere)
    me = Identity.generate()
    me.save(tmp_path / "identity.key")
    assert (tmp_path / "identity.key").stat().st_mode & 0o777 == 0o600
    assert Identity.load(tmp_path / "identity.key").peer_id == me.peer_id
    assert not elsewhere.exists()
    leftovers = {p.name for p in tmp_path.iterdir()}
    assert leftovers == {"identity.key", "identity.key.tmp", ".identity.key.link"}


def test_a_dead_signer_process_is_a_pttsync_error(tmp_path: Path) -> None:
    me = Identity.generate()
    me.save(tmp_path / "k")
    with ProcessSigner(tmp_path / "k", me) as sign:
        assert len(sign([b"a"]).result(timeout=60)[0]) == 64
        for pid in list(sign._pool._processes or {}):
            os.kill(pid, signal.SIGKILL)
        with pytest.raises(PttsyncError, match="signer process"):
            sign([b"b"]).result(timeout=60)


def test_a_signer_whose_start_a_signal_cut_short_closes_and_leaves_no_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during `pttsync gen`'s first signature (CI saw it, exit 1 for 143): the
    pool had spawned its worker when the KeyboardInterrupt came, in the start of the
    thread that manages it, and `close` failed ("cannot join thread before it is
    started") and left the worker behind."""
    from concurrent.futures import process as pool_module  # noqa: PLC0415

    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    me = Identity.generate()
    me.save(tmp_path / "k")
    sign = ProcessSigner(tmp_path / "k", me)
    monkeypatch.setattr(pool_module._ExecutorManagerThread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sign([b"a"])
    workers = list((sign._pool._processes or {}).values())
    assert workers  # the worker was spawned before the thread's start
    sign.close()  # no RuntimeError
    assert all(not w.is_alive() for w in workers)


def test_damaged_store_reads_are_store_errors(tmp_path: Path, topic: TopicInfo) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path, create=True) as s:
        s.add_topic(topic)
        s._conn.execute("DROP TABLE nodes")
    with Store.open(path) as s, pytest.raises(StoreError, match="no such table"):
        s.tree(topic.topic_id).digest()


def test_corrupt_pages_are_store_errors(tmp_path: Path, alice: Identity, topic: TopicInfo) -> None:
    path = tmp_path / "s.sqlite3"
    with Store.open(path, create=True) as s:
        s.add_topic(topic)
        ops = [make_oplog(alice, topic, T + i, key=f"c{i}") for i in range(300)]
        s.write_batch(topic.topic_id, [(o, OplogStatus.VALID) for o in ops])
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(path.read_bytes())
    junk = random.Random(0)
    # Pages 1-7 hold the schema and each table's root; damage the data pages after them.
    for page in range(8, len(raw) // 4096):
        raw[page * 4096 + 8 : page * 4096 + 4000] = junk.randbytes(3992)
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError), Store.open(path) as s:
        s.check(topic.topic_id)


def test_inspect_on_a_damaged_store_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "peer"
    assert main(["init", "--data", str(d)]) == 0
    assert (
        main(
            ["gen", "--data", str(d), "--count", "20", "--from", "2025-01-01", "--to", "2025-02-01"]
        )
        == 0
    )
    with Store.open(d / "store.sqlite3") as s:
        s._conn.execute("DROP TABLE nodes")
    capsys.readouterr()
    assert main(["inspect", "check", "--data", str(d)]) == 1
    err = capsys.readouterr().err
    assert "no such table" in err and "Traceback" not in err


def test_signature_limits_hold_when_signing_and_verifying(
    alice: Identity, topic: TopicInfo
) -> None:
    o = make_oplog(alice, topic, T)
    signers = [make_identity(f"m{i}") for i in range(MAX_MASTER_SIGS + 1)]
    for s in signers[:MAX_MASTER_SIGS]:
        o = cosign(o, s, SignKind.MASTER, T + 1)
    assert decode_oplog(encode_oplog(o)) == o
    with pytest.raises(UsageError, match="maximum"):
        cosign(o, signers[-1], SignKind.MASTER, T + 1)
    extra = cosign(make_oplog(alice, topic, T), signers[-1], SignKind.MASTER, T + 1)
    too_many = tuple(sorted((*o.master_sigs, *extra.master_sigs), key=lambda s: s.signer))
    with pytest.raises(OversizeError):
        verify_oplog(with_signatures(o, master_sigs=too_many, internal_sigs=()))


def test_find_with_odd_length_prefixes(alice: Identity, topic: TopicInfo, store: Store) -> None:
    ops = [make_oplog(alice, topic, T + i, key=f"f{i}") for i in range(40)]
    store.write_batch(topic.topic_id, [(o, OplogStatus.VALID) for o in ops])
    for o in ops:
        for n in (1, 5, 7):
            found = store.find(topic.topic_id, o.oplog_id.hex()[:n], limit=100)
            assert o in [f.oplog for f in found]
            assert all(f.oplog.oplog_id.hex().startswith(o.oplog_id.hex()[:n]) for f in found)
    with pytest.raises(UsageError):
        store.find(topic.topic_id, "xyz")


def test_null_is_a_valid_payload(alice: Identity, topic: TopicInfo) -> None:
    o = create_oplog(
        alice, topic_id=topic.topic_id, object_id=b"k", op=1, value=None, create_time=T
    )
    assert o.data == b"\xf6" and o.decoded_data() is None


def test_batches_accept_iterators_and_report_each_id_once(
    alice: Identity, bob: Identity, topic: TopicInfo, store: Store
) -> None:
    o = make_oplog(alice, topic, T)
    later = cosign(o, bob, SignKind.MASTER, T + 5)
    result = store.write_batch(
        topic.topic_id, iter([(o, OplogStatus.VALID), (later, OplogStatus.VALID)])
    )
    assert result.added == [o.oplog_id] and result.replaced == []
    assert store.count(topic.topic_id) == 1


def test_peer_ids_have_one_text_form() -> None:
    """The last base32 character carries 1 data bit and 4 zero padding bits."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    text = Identity.generate().text
    assert parse_peer_id(text)
    padded = text[:-1] + alphabet[alphabet.index(text[-1]) | 1]
    with pytest.raises(UsageError, match="non-canonical"):
        parse_peer_id(padded)


def test_init_leaves_nothing_behind_when_the_store_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> Store:
        raise StoreError("disk full")

    monkeypatch.setattr(Store, "open", fail)
    with pytest.raises(StoreError):
        DataDir.init(tmp_path / "p", topic_name="t", now=T, nonce=b"n" * 16)
    assert list((tmp_path / "p").iterdir()) == []
    monkeypatch.undo()
    DataDir.init(tmp_path / "p", topic_name="t", now=T, nonce=b"n" * 16)


def test_json_output_is_valid_json_for_any_payload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "peer"
    main(["init", "--data", str(d)])
    dd = DataDir(d)
    with dd.open_store() as s:
        topic = s.topics()[0]
        o = create_oplog(
            dd.identity(),
            topic_id=topic.topic_id,
            object_id=b"nan",
            op=1,
            value=[float("nan"), float("inf")],
            create_time=T,
        )
        s.write_batch(topic.topic_id, [(o, OplogStatus.VALID)])
    capsys.readouterr()
    assert main(["inspect", "oplog", "--data", str(d), o.oplog_id.hex(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["data"] == ["nan", "inf"]
