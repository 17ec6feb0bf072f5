"""A record as the SQLite store keeps it: without the fields its row already holds.

A record (oplogcodec.py) carries its topic ID, oplog ID, hash, update time,
create time, object ID and op.  The oplogs row holds each of them in a
column (the topic as its small key), so storing them again in the record
cost ~150 of its ~340 bytes.  `pack` keeps the rest; `records` rebuilds the
very same bytes from what is kept and the columns, by splicing, without
decoding anything (docs/pip-11/store.md, "Bytes on disk").

What is kept is the record's entries, in this order:

    pv | d | v cr cs | is ms

`pv` comes first because its length (null, or a 32-byte ID) shows in its
first bytes; `d`'s length is in its head, and `v cr cs` has a fixed length
(format version 1).  So every cut is found from fixed places, never by
searching bytes a signer chose.

A valid oplog's hash is its Merkle leaf's, so its row holds an empty one
(`HASH` reads it from the leaf): 33 more bytes an oplog.

A whole record (its first byte is the head of a 14-entry map) is kept as it
is: rows written before schema 6, and any record `pack` cannot cut.  A row
that is damaged (a column of the wrong type, a cut that does not fit) gives
back its bytes as stored, which then fail to decode: the CRC-32 and the
record checks see the damage, and nothing here raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import codec
from ..oplog import Keys

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ..oplog import Oplog

HASH = (
    "coalesce(nullif(hash, x''), (SELECT l.hash FROM leaves l WHERE l.topic=oplogs.topic"
    " AND l.time=oplogs.update_time AND l.oplog_id=oplogs.oplog_id))"
)
"""An oplog's hash: a valid oplog's is its leaf's, and its row holds an empty one."""

RECORD = f"oplog_id, status, body, {HASH}, update_time, create_time, object_id, op"
"""The columns a stored record is read from, in the order `records` takes them."""

_MAP14 = codec.head(5, 14)[0]
_WHOLE = bytes((_MAP14,))
_VCRCS = 3 + 37 + 69  # v (version 1), cr (32 bytes), cs (64 bytes): their entries
_HEAD = 3 + 34  # an entry holding a 32-byte string under a two-letter key
_NULL_PV = Keys.PV + codec.NULL
_ID_PV = Keys.PV + codec.head(2, 32)
_ONE = Keys.V + codec.uint(1)


def _head(n: int) -> int:
    """The length of a canonical CBOR head whose argument is `n`."""
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 2**32 else 9


def pack(record: bytes, oplog: Oplog) -> bytes:
    """What the store keeps of `record`, the canonical encoding of `oplog`."""
    data, object_id = oplog.data, oplog.object_id
    d_end = 3 + _head(len(data)) + len(data)  # the map's head, "d", the string
    h_end = d_end + 2 + 34
    v_end = h_end + _VCRCS
    id_end = v_end + 3 + _head(oplog.create_time) + _HEAD
    ob = 3 + _head(len(object_id)) + len(object_id)
    op = 3 + _head(oplog.op)
    pv = 4 if oplog.prev_id is None else 37
    lists_end = len(record) - (ob + op + pv + _HEAD + 3 + _head(oplog.update_time))
    fits = (
        record[0] == _MAP14
        and record[d_end : d_end + 2] == Keys.H
        and record[h_end : h_end + 3] == _ONE
        and record[v_end : v_end + 3] == Keys.CT
        and record[id_end - _HEAD : id_end - _HEAD + 3] == Keys.ID
        and record[lists_end : lists_end + 3] == Keys.OB
    )
    if not fits:  # not a record of the form this module knows: kept whole
        return record
    pv_at = lists_end + ob + op
    return b"".join(
        (record[pv_at : pv_at + pv], record[1:d_end], record[h_end:v_end], record[id_end:lists_end])
    )


def _unpack(tp: bytes, row: tuple[object, ...]) -> object:
    """The whole record a `RECORD` row holds; the body as stored if the row cannot give
    one.  `tp` is the topic's entry and the ut key, made once for all the rows."""
    oid, _, body, h, ut, ct, ob, op = row[:8]
    if type(body) is not bytes or body[:1] == _WHOLE:
        return body
    if not (type(oid) is type(h) is type(ob) is bytes and type(ut) is type(ct) is type(op) is int):
        return body  # a column of the wrong type: damage, seen when the record fails
    try:
        p = 4 if body[:4] == _NULL_PV else 37
        if (p == 37 and body[:5] != _ID_PV) or body[p : p + 2] != Keys.D:
            return body
        ai = body[p + 2] & 31
        if ai < 24:
            d_end = p + 3 + ai
        elif ai <= 26:
            width = 1 << (ai - 24)  # 1, 2 or 4 bytes of length
            d_end = p + 3 + width + int.from_bytes(body[p + 3 : p + 3 + width], "big")
        else:
            return body
        v_end = d_end + _VCRCS
        if len(body) < v_end:
            return body
        return b"".join(
            (
                _WHOLE, body[p:d_end],
                Keys.H, codec.bstr(h), body[d_end:v_end],
                Keys.CT, codec.uint(ct), Keys.ID, codec.bstr(oid), body[v_end:],
                Keys.OB, codec.bstr(ob), Keys.OP, codec.uint(op), body[:p],
                tp, codec.uint(ut),
            )
        )  # fmt: skip
    except (ValueError, IndexError):  # a negative number, bytes cut short
        return body


def records(
    topic_id: bytes, rows: Iterable[tuple[object, ...]]
) -> list[tuple[object, object, object]]:
    """(oplog ID, whole record, status) of rows read as `RECORD` (extra columns ignored)."""
    tp = Keys.TP + codec.bstr(topic_id) + Keys.UT
    return [(row[0], _unpack(tp, row), row[1]) for row in rows]
