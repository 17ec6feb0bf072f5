"""Records as the SQLite store keeps them (recordpack.py): packed, then rebuilt byte for byte.

Every shape a record can take is generated: payloads whose length head is 1,
2, 3 or 5 bytes, with and without a previous ID, with co-signatures, object
IDs of every length, small and large ops and times.  A packed record must
rebuild to the very bytes it came from, and a row damaged in any column must
give back bytes that fail to decode, never an exception.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pttsync.core import codec
from pttsync.core.oplog import MAX_DATA_SIZE, OplogStatus, SignKind, cosign, create_oplog
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.store.recordpack import pack
from pttsync.core.store.recordpack import records as rebuilt
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.topic import new_topic
from pttsync.errors import InvalidOplogError

from .helpers import make_identity

if TYPE_CHECKING:
    from pttsync.core.oplog import Oplog

ALICE, BOB, CAROL = make_identity("alice"), make_identity("bob"), make_identity("carol")
TOPIC_ID = b"T" * 32


@st.composite
def records(draw: st.DrawFn) -> Oplog:
    size = draw(st.sampled_from([0, 1, 20, 23, 24, 255, 256, 1000, 65_535, MAX_DATA_SIZE - 8]))
    payload = codec.dumps(b"x" * max(0, size - 5)) if size else codec.dumps(None)
    t = draw(st.sampled_from([0, 1, 23, 24, 255, 70_000, 2**32, 1_735_689_600 * 10**9]))
    o = create_oplog(
        ALICE,
        topic_id=TOPIC_ID,
        object_id=draw(st.binary(min_size=1, max_size=128)),
        op=draw(st.sampled_from([0, 1, 23, 24, 255, 256, 0xFFFF])),
        create_time=t,
        data=payload,
        prev_id=draw(st.one_of(st.none(), st.binary(min_size=32, max_size=32))),
    )
    if draw(st.booleans()):
        o = cosign(o, BOB, SignKind.MASTER, t + draw(st.integers(0, 2**40)))
    if draw(st.booleans()):
        o = cosign(o, CAROL, SignKind.INTERNAL, t + draw(st.integers(0, 300)))
    return o


def unpack(topic_id: bytes, oid: object, body: object, *rest: object) -> object:
    """The record `records` rebuilds from a row of these columns (status 3)."""
    ((_, record, _),) = rebuilt(topic_id, [(oid, 3, body, *rest)])
    return record


def columns(o: Oplog) -> tuple[bytes, bytes, int, int, bytes, int]:
    return o.oplog_id, o.hash, o.update_time, o.create_time, o.object_id, o.op


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_a_packed_record_rebuilds_to_its_bytes(o: Oplog) -> None:
    record = encode_oplog(o)
    packed = pack(record, o)
    # Nothing the row holds is kept twice: topic, ID, hash and the rest are cut.
    assert len(packed) <= len(record) - 3 * 37
    oid, h, ut, ct, ob, op = columns(o)
    assert unpack(TOPIC_ID, oid, packed, h, ut, ct, ob, op) == record


def test_a_whole_record_is_read_as_it_is() -> None:
    """Rows written before schema 6 hold whole records: they are returned unchanged."""
    o = create_oplog(ALICE, topic_id=TOPIC_ID, object_id=b"d", op=1, create_time=5, value=1)
    record = encode_oplog(o)
    assert unpack(TOPIC_ID, *columns(o)[:1], record, *columns(o)[1:]) == record


ANY = st.one_of(
    st.none(), st.integers(-(2**70), 2**70), st.binary(max_size=80), st.text(max_size=10)
)


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_a_damaged_row_gives_bytes_that_fail_never_an_exception(data: st.DataObject) -> None:
    o = create_oplog(ALICE, topic_id=TOPIC_ID, object_id=b"doc", op=1, create_time=9, value=[1])
    record = encode_oplog(o)
    values: list[object] = [o.oplog_id, pack(record, o), *columns(o)[1:]]
    which = data.draw(st.sets(st.integers(0, len(values) - 1), min_size=1))
    for i in which:
        if i == 1 and data.draw(st.booleans()):  # the body: a byte flipped, or cut short
            body = bytearray(pack(record, o))
            at = data.draw(st.integers(0, len(body) - 1))
            body[at] ^= data.draw(st.integers(1, 255))
            values[i] = bytes(body[: data.draw(st.integers(0, len(body)))])
        else:
            values[i] = data.draw(ANY)
    rebuilt = unpack(TOPIC_ID, *values)
    if rebuilt == record:
        return  # the damage drew the same values back
    # Whatever comes back fails the CRC of the record, and fails to decode.
    assert type(rebuilt) is not bytes or zlib.crc32(rebuilt) != zlib.crc32(record)
    if type(rebuilt) is bytes:  # every field is under the oplog's ID or its hash
        with pytest.raises(InvalidOplogError):
            decode_oplog(rebuilt, signatures=False)


def test_the_store_keeps_records_packed_and_reads_them_whole() -> None:
    """Through SqliteStore: what is written is packed, what is read is the record."""
    store = SqliteStore.memory()
    topic = new_topic(ALICE, name="packed", create_time=1, nonce=b"n" * 16)
    store.add_topic(topic)
    o = create_oplog(
        ALICE, topic_id=topic.topic_id, object_id=b"doc", op=1, create_time=10, value="v"
    )
    store.write_batch(topic.topic_id, [(o, OplogStatus.VALID)])
    (stored,) = store._conn.execute("SELECT length(body) FROM oplogs").fetchone()
    assert stored <= len(encode_oplog(o)) - 3 * 37
    assert store.bodies(topic.topic_id, [o.oplog_id]) == {o.oplog_id: encode_oplog(o)}
    got = store.get(topic.topic_id, o.oplog_id)
    assert got is not None and got.oplog == o
