"""One `DecoderTarget` per decoder: how to call it on one input, and what it may raise.

| target       | decoder                                         | documented errors            |
|--------------|-------------------------------------------------|------------------------------|
| frames       | FrameReader (then decode_any on every frame)    | RemoteProtocolError          |
| messages     | msgcodec.decode_message                         | RemoteProtocolError          |
| wire         | wire.decode_any (node and sync messages)        | RemoteProtocolError          |
| oplog        | decode_oplog(signatures=True)                   | the InvalidOplogErrors below |
| oplog-stored | decode_oplog(signatures=False), as store reads  | the InvalidOplogErrors below |
| token        | topic.parse_topic_token                         | UsageError                   |
| control      | controlwire.parse_request and its field readers | UsageError                   |
| keyfile      | Identity.load                                   | IdentityError                |
| store        | SqliteStore.open, then check() and every read   | StoreError, UsageError (*)   |

The oplog errors are decode_oplog's: MalformedOplogError, OversizeError,
TimestampError, IntegrityError, SignatureError.  Where a decoder promises
more than not crashing, the target checks it too (an `OracleError` if not):
a decoded message or record encodes back to exactly its input (strict,
canonical decoding), a parsed token names the same topic again, the frame
reader returns exactly the frames the stream holds.

(*) UsageError is what a store documents for a topic it does not hold: a
corrupt index may fail to find by its ID a topic the store just listed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from pttsync.core.identity import Identity
from pttsync.core.merkle import Level, MerkleNode
from pttsync.core.oplog import OplogStatus
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.sync.frames import HEADER_SIZE, MAX_FRAME_SIZE, FrameReader
from pttsync.core.sync.msgcodec import decode_message, encode_message
from pttsync.core.timeutil import MAX_TIME
from pttsync.core.topic import parse_topic_token, topic_token
from pttsync.errors import (
    IdentityError,
    IntegrityError,
    MalformedOplogError,
    OversizeError,
    RemoteProtocolError,
    SignatureError,
    StoreError,
    TimestampError,
    UsageError,
)
from pttsync.net.controlwire import FIELDS, optional_field, parse_request, text_field
from pttsync.net.wire import NodeMessage
from pttsync.net.wirecodec import decode_any, encode_node_message

from . import cbormutate, corpus, formats, seeds
from .engine import DecoderTarget, OracleError, plain
from .mutate import havoc, light, pem, splice

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

OPLOG_ERRORS = (MalformedOplogError, OversizeError, TimestampError, IntegrityError, SignatureError)
CHUNKS = (1, 2, 3, 4, 5, 7, 64, 1000, 1 << 20)


def frames(data: bytes) -> None:
    """Feed a stream in pieces (sizes derived from the bytes, so an input replays alone)."""
    reader = FrameReader()
    pick = zlib.crc32(data)
    fed = used = 0
    while fed < len(data):
        size = CHUNKS[pick % len(CHUNKS)]
        pick = pick // len(CHUNKS) or zlib.crc32(data[fed : fed + 8])
        reader.feed(data[fed : fed + size])
        fed = min(len(data), fed + size)
        while (payload := reader.next_frame()) is not None:
            header = data[used : used + HEADER_SIZE]
            body = data[used + HEADER_SIZE : used + HEADER_SIZE + len(payload)]
            if len(payload) > MAX_FRAME_SIZE or int.from_bytes(header, "big") != len(payload):
                raise OracleError(f"frame of {len(payload)} bytes under header {header.hex()}")
            if body != payload:
                raise OracleError("a frame's payload is not the stream's bytes")
            used += HEADER_SIZE + len(payload)
            decode_any(payload)
        if reader.buffered != fed - used or reader.at_boundary() != (fed == used):
            raise OracleError(f"buffered {reader.buffered}, expected {fed - used}")


def messages(data: bytes) -> None:
    msg = decode_message(data)
    if encode_message(msg) != data:
        raise OracleError(f"{type(msg).__name__} decoded from non-canonical bytes")


def wire(data: bytes) -> None:
    msg = decode_any(data)
    again = encode_node_message(msg) if isinstance(msg, NodeMessage) else encode_message(msg)
    if again != data:
        raise OracleError(f"{type(msg).__name__} decoded from non-canonical bytes")


def oplog(data: bytes) -> None:
    if encode_oplog(decode_oplog(data)) != data:
        raise OracleError("a record decoded from non-canonical bytes")


def oplog_stored(data: bytes) -> None:
    if encode_oplog(decode_oplog(data, signatures=False)) != data:
        raise OracleError("a record decoded from non-canonical bytes")


def token(data: bytes) -> None:
    info = parse_topic_token(data.decode("utf-8", "surrogateescape"))
    if parse_topic_token(topic_token(info)) != info:
        raise OracleError("a token's topic does not survive its own token")


TEXT_FIELDS = frozenset({"key", "topic", "prefix", "after", "peer_id", "role"})


def control(data: bytes) -> None:
    """Parse a request line, then read each of its fields as the control server does."""
    request = parse_request(data)
    for name in FIELDS[request["op"]]:
        if name in TEXT_FIELDS:
            text_field(request, name, required=name in ("key", "peer_id", "role"))
        elif name == "limit":
            optional_field(request, name, int)
        elif name == "deleted":
            optional_field(request, name, bool)


@contextlib.contextmanager
def _tmpdir() -> Iterator[Path]:
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="pttsync-fuzz-", dir=base) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def keyfile_session() -> Iterator[Callable[[bytes], object]]:
    with _tmpdir() as tmp:
        path = tmp / "identity.key"

        def load(data: bytes) -> Identity:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return Identity.load(path)

        yield load


def read_everything(store: SqliteStore) -> None:
    """check() and every read of the Store protocol, on every topic the store lists."""
    for info in store.topics():
        tid = info.topic_id
        store.topic(tid)
        store.check(tid)
        for status in OplogStatus:
            store.oplogs(tid, status)
            store.count(tid, status)
        store.count(tid)
        store.has_pending(tid)
        stored = list(store.since(tid, 0, chunk=16))
        ids = [s.oplog.oplog_id for s in stored[:8]]
        store.get(tid, ids[0] if ids else b"\x00" * 32)
        store.existing(tid, ids)
        store.bodies(tid, ids)
        store.find(tid, "a")
        store.by_op_range(tid, 0, 0x10000)
        store.by_objects(tid, store.object_ids(tid, ops=(0, 0x10000), limit=20))
        store.failed(tid)
        store.has_failed(tid, b"\x00" * 32)
        store.sync_time(tid, corpus.MASTER2.peer_id)
        store.leaves_from(tid, (0, b""), MAX_TIME + 1, 64)
        tree = store.tree(tid)
        tree.digest()
        tree.tree_list(corpus.NOW)
        for level in (Level.HOUR, Level.DAY, Level.MONTH, Level.YEAR):
            tree.node_at(level, corpus.T0)
        # Down the tree from its years, as a sync receiver descends (a bounded walk).
        todo: list[MerkleNode] = tree.tree_list(MAX_TIME)
        for _ in range(64):
            if not todo:
                break
            todo += [n for n in tree.children(todo.pop()) if isinstance(n, MerkleNode)]


@contextlib.contextmanager
def store_session() -> Iterator[Callable[[bytes], object]]:
    with _tmpdir() as tmp:
        path = tmp / "store.sqlite3"

        def open_and_read(data: bytes) -> None:
            for extra in ("-wal", "-shm", "-journal"):
                Path(str(path) + extra).unlink(missing_ok=True)
            path.write_bytes(data)
            with SqliteStore.open(path) as store:
                read_everything(store)

        yield open_and_read


# Weighed by repetition: byte havoc, single edits, item edits, value edits (the most), splices.
# fmt: off
CBOR = (havoc, havoc, light, light, cbormutate.item_edit, cbormutate.item_edit,
        cbormutate.value_edit, cbormutate.value_edit, cbormutate.value_edit, splice)
ERRORS = (RemoteProtocolError,)
STORE_ERRORS = (StoreError, UsageError)  # UsageError: a topic the store lists, not found by ID

TARGETS: dict[str, DecoderTarget] = {t.name: t for t in (
    DecoderTarget("frames", ERRORS, corpus.frame_streams,
                  (havoc, light, splice, formats.frame_edit, formats.frame_edit),
                  lambda: plain(frames)),
    DecoderTarget("messages", ERRORS, corpus.message_seeds, CBOR, lambda: plain(messages)),
    DecoderTarget("wire", ERRORS, corpus.node_message_seeds, CBOR, lambda: plain(wire)),
    DecoderTarget("oplog", OPLOG_ERRORS, corpus.records, (*CBOR, formats.reseal, formats.reseal),
                  lambda: plain(oplog)),
    DecoderTarget("oplog-stored", OPLOG_ERRORS, corpus.records,
                  (*CBOR, formats.reseal, formats.reseal), lambda: plain(oplog_stored)),
    DecoderTarget("token", (UsageError,), seeds.token_seeds,
                  (havoc, light, formats.token_edit, formats.token_edit, formats.token_edit),
                  lambda: plain(token)),
    DecoderTarget("control", (UsageError,), seeds.control_seeds,
                  (havoc, light, splice, formats.json_edit, formats.json_edit),
                  lambda: plain(control)),
    DecoderTarget("keyfile", (IdentityError,), seeds.key_file_seeds,
                  (havoc, light, pem, pem, pem), keyfile_session),
    DecoderTarget("store", STORE_ERRORS, corpus.store_files,
                  (formats.store_edit, formats.store_edit, formats.store_edit, light),
                  store_session),
)}
# fmt: on
