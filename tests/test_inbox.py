"""Reading one frame ahead and verifying its records on worker threads (pttsync/net/inbox.py).

These run on trio's real clock (worker threads and a MockClock do not mix),
each under a deadline; the last one is two nodes syncing with it on (it is
off by default: docs/pip-11/network.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing

from pttsync.cli.run import make_peers
from pttsync.core.oplogcodec import decode_cache, decode_known, decode_oplog, encode_oplog
from pttsync.core.sync.messages import SyncOplogNewOplogsAck
from pttsync.core.sync.msgcodec import encode_message
from pttsync.datadir import DataDir
from pttsync.errors import ConnectionLostError
from pttsync.net.changes import wait_until
from pttsync.net.config import NodeConfig
from pttsync.net.inbox import MIN_PARALLEL, Inbox, Verifier, records_of
from pttsync.net.serve import open_node
from pttsync.net.wire import Push
from pttsync.net.wirecodec import encode_node_message
from pttsync.synthetic import populate

from .prochelpers import short_root
from .synchelpers import NOW, TID, gen

if TYPE_CHECKING:
    from pathlib import Path

RECORDS = gen(96, NOW - 10**15, NOW - 10**12, seed=21)
ROUND = b"r" * 16


def fresh(n: int, seed: int) -> list[bytes]:
    """Encodings not yet verified in this process (new objects, new bytes)."""
    return [encode_oplog(o) for o in gen(n, NOW - 10**15, NOW - 10**12, seed=seed)]


def test_the_records_of_a_frame_are_found_whatever_carries_them() -> None:
    bodies = tuple(encode_oplog(o) for o in RECORDS[:5])
    ack = SyncOplogNewOplogsAck(TID, ROUND, 3, bodies, None, True)
    assert records_of(encode_message(ack)) == bodies
    assert records_of(encode_node_message(Push(TID, bodies, False))) == bodies
    assert records_of(b"\xff\x00 not a message") == ()


async def test_verified_records_are_found_by_their_bytes_and_bad_ones_left_to_the_core() -> None:
    bodies = fresh(64, seed=22)
    tampered = bytearray(bodies[7])
    tampered[-3] ^= 0x40
    bodies[7] = bytes(tampered)
    verifier = Verifier(threads=2)
    with trio.fail_after(30):
        await verifier.verify(tuple(bodies))
    assert verifier.verified == 63
    assert all(decode_known(b) is not None for i, b in enumerate(bodies) if i != 7)
    assert decode_known(bodies[7]) is None  # the core decodes it, and refuses it
    # What the inbox filed is what the core decodes (in a fresh table, so it really does).
    good = bodies[3]
    with decode_cache(1):
        decoded = decode_oplog(good)
    assert decode_known(good) == decoded


async def test_a_few_records_are_left_to_the_core() -> None:
    bodies = fresh(MIN_PARALLEL - 1, seed=23)
    verifier = Verifier(threads=2)
    await verifier.verify(tuple(bodies))
    assert verifier.verified == 0 and all(decode_known(b) is None for b in bodies)


class FakeLink:
    """Frames to hand out, then an error (or the peer's close)."""

    def __init__(self, frames: list[bytes | None], end: Exception | None) -> None:
        self.frames = frames
        self.end = end
        self.read = 0

    async def receive_frame(self) -> bytes | None:
        await trio.lowlevel.checkpoint()
        if self.read < len(self.frames):
            self.read += 1
            return self.frames[self.read - 1]
        assert self.end is not None
        raise self.end


async def test_frames_come_out_in_order_verified_then_the_links_error() -> None:
    batches = [fresh(40, seed=30 + k) for k in range(3)]
    frames: list[bytes | None] = [
        encode_message(SyncOplogNewOplogsAck(TID, ROUND, k, tuple(b), None, True))
        for k, b in enumerate(batches)
    ]
    link = FakeLink(frames, ConnectionLostError("reset by peer"))
    inbox = Inbox(link, Verifier(threads=2))  # type: ignore[arg-type]
    got: list[bytes | None] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.run)
            for _ in frames:
                frame = await inbox.next()
                got.append(frame)
                # Verified before the conversation sees it.
                assert frame is not None
                assert all(decode_known(b) is not None for b in records_of(frame))
            with pytest.raises(ConnectionLostError, match="reset by peer"):
                await inbox.next()
    assert got == frames


async def test_the_reader_stops_after_the_peer_closes_and_reads_at_most_ahead() -> None:
    frames: list[bytes | None] = [b"one", b"two", None]
    link = FakeLink(frames, None)
    inbox = Inbox(link, Verifier(threads=1))  # type: ignore[arg-type]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.run)
            await trio.testing.wait_all_tasks_blocked()
            assert link.read <= 2  # one frame waiting in the channel, one being handed over
            assert [await inbox.next() for _ in frames] == frames


async def test_two_nodes_with_verify_ahead_sync_over_loopback(tmp_path: Path) -> None:
    """The node's own use: a first sync with the inbox on, over real TCP and Noise."""
    with short_root(tmp_path) as root:
        dirs = [d.path for d in make_peers(root, 2)]
        master = DataDir(dirs[0])
        with master.open_store() as store:
            tid = store.topics()[0].topic_id
            populate(store, master.identity(), tid, count=600, start=NOW - 10**15,
                     end=NOW - 10**12, seed=40)  # fmt: skip
        cfg_a = NodeConfig(listen="127.0.0.1:0", verify_ahead=True, sync_interval=0.5)
        with trio.fail_after(60):
            async with open_node(dirs[0], config=cfg_a) as a:
                join = (a.listen_address or "",)
                cfg = NodeConfig(
                    listen="127.0.0.1:0", join=join, verify_ahead=True, sync_interval=0.5
                )
                async with open_node(dirs[1], config=cfg) as b:
                    await wait_until([a, b], lambda: a.digests() == b.digests())
                    verifier = b.connections.verifier
                    assert verifier is not None and verifier.verified > 0
                    assert b.topic().counts()["valid"] == 602  # the genesis and the admission
