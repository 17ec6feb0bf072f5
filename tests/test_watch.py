"""pttsync.watch: the trio async iterator over a DocumentStore's changes.

Every async test runs on pytest-trio's autojump clock under a 5 s deadline, so a
watcher that hangs fails at once instead of stalling the run.  All times given to
the store are explicit nanosecond integers.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import pttsync
from pttsync import ChangeKind, WriteStatus
from pttsync.watching import MAX_BUFFER

from .test_docstore import ALICE, EXPIRY, T0, Peer, S, founder, sync, with_members


def brief(changes: list[pttsync.Change]) -> list[tuple[str, str, bool]]:
    return [(c.kind.value, c.key, c.local) for c in changes]


async def test_a_watcher_gets_every_kind_of_change_in_commit_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The watched peer is a member (ALICE), so its writes are pending until the master
    (M1, on its own store) co-signs them in a sync; a writer task drives it all."""
    with trio.fail_after(5):
        master, (alice,) = with_members(ALICE)
        sync(alice, master, T0 + 2)
        reference: list[pttsync.Change] = []  # what a plain subscriber sees, synchronously
        alice.docs.subscribe(reference.append)
        got: list[pttsync.Change] = []
        done = trio.Event()

        async def read(changes: pttsync.Watch) -> None:
            async for change in changes:
                got.append(change)

        async def step(action: object) -> None:
            """After each write, let the reader catch up: it streams, it does not batch."""
            await trio.testing.wait_all_tasks_blocked()
            assert got == reference, action

        async def write(peer: Peer) -> None:
            master.docs.put("x", "v0", now=T0 + 10)
            sync(peer, master, T0 + 11)  # PUT x (not ours)
            await step("put x")
            y = peer.docs.put("y", 1, now=T0 + 12)  # PUT y (ours, pending)
            await step("put y")
            sync(peer, master, T0 + 13)  # CONFIRMED y
            await step("confirm y")
            master.docs.delete("x", now=T0 + 14)
            sync(peer, master, T0 + 15)  # DELETE x
            await step("delete x")
            master.docs.put("z", "m", now=T0 + 16)
            z = peer.docs.put("z", "a", now=T0 + 17)  # PUT z (ours, pending)
            await step("put z")
            sync(peer, master, T0 + 18)  # CONFIRMED z, and now a CONFLICT with M1's z
            await step("conflict z")
            w = peer.docs.put("w", "draft", now=T0 + 20 * S)  # PUT w (ours, pending)
            pttsync.handle_failed(peer.replica, T0 + 20 * S + EXPIRY + 1)  # FAILED w
            await step("fail w")
            assert peer.docs.write_status(y.oplog_id) is WriteStatus.CONFIRMED
            assert peer.docs.write_status(z.oplog_id) is WriteStatus.CONFIRMED
            assert peer.docs.write_status(w.oplog_id) is WriteStatus.FAILED
            done.set()

        async with trio.open_nursery() as nursery:
            with pttsync.watch(alice.docs) as changes:
                nursery.start_soon(read, changes)
                nursery.start_soon(write, alice)
                await done.wait()
            # Leaving the block ends the reader's loop; the nursery waits for it.
        assert brief(got) == [
            ("put", "x", False),
            ("put", "y", True),
            ("confirmed", "y", True),
            ("delete", "x", False),
            ("put", "z", True),
            ("confirmed", "z", True),
            ("conflict", "z", False),
            ("put", "w", True),
            ("failed", "w", True),
        ]
        assert got == reference  # the same Change objects, in the same order
        assert changes.delivered == len(got) and not changes.overflowed
        conflict = got[6].state
        assert conflict is not None and conflict.in_conflict and conflict.value == "a"
        assert [v.value for v in conflict.conflicts] == ["m"]
        assert got[4].state is not None and got[4].state.pending
        assert got[5].state is not None and not got[5].state.pending
        assert got[-1].state is None and got[-1].reason.startswith("expired")


async def test_iteration_ends_after_the_block_once_the_buffer_is_drained(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(5):
        p = founder()
        with pttsync.watch(p.docs) as changes:
            p.docs.put("a", 1, now=T0 + 10)
            p.docs.put("b", 2, now=T0 + 11)
            p.docs.delete("a", now=T0 + 12)
        p.docs.put("c", 3, now=T0 + 13)  # after the block: not delivered
        assert [(c.kind.value, c.key) async for c in changes] == [
            ("put", "a"),
            ("put", "b"),
            ("delete", "a"),
        ]
        with pytest.raises(StopAsyncIteration):  # and it stays ended
            await changes.__anext__()
        assert changes.delivered == 3 and not changes.overflowed

        # A reader already waiting when the block is left wakes up and ends.
        got: list[pttsync.Change] = []
        ended = trio.Event()

        async def read(w: pttsync.Watch) -> None:
            async for change in w:
                got.append(change)
            ended.set()

        async with trio.open_nursery() as nursery:
            with pttsync.watch(p.docs) as waiting:
                nursery.start_soon(read, waiting)
                await trio.testing.wait_all_tasks_blocked()  # parked in receive
                p.docs.put("d", 4, now=T0 + 14)
                await trio.testing.wait_all_tasks_blocked()
                assert [c.key for c in got] == ["d"] and not ended.is_set()
            await ended.wait()
        assert [c.key for c in got] == ["d"]


async def test_a_slow_watcher_overflows_without_blocking_the_writes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(5):
        p = founder()
        fast_got: list[pttsync.Change] = []

        async def read(w: pttsync.Watch) -> None:
            async for change in w:
                fast_got.append(change)

        async with trio.open_nursery() as nursery:
            with (
                pttsync.watch(p.docs, buffer=2) as slow,
                pttsync.watch(p.docs, buffer=1) as fast,
            ):
                nursery.start_soon(read, fast)
                await trio.testing.wait_all_tasks_blocked()
                writes = []
                for i in range(5):
                    # A plain call: it cannot wait for a watcher, and it does not fail.
                    writes.append(p.docs.put(f"k{i}", i, now=T0 + 10 + i))
                    await trio.testing.wait_all_tasks_blocked()  # the fast one keeps up
                assert all(w.status is WriteStatus.CONFIRMED for w in writes)
                assert [s.value for s in p.docs.items()] == [0, 1, 2, 3, 4]
                assert slow.overflowed and not fast.overflowed

                # The slow watcher still gets what it buffered, then the error.
                first = [await slow.__anext__() for _ in range(2)]
                assert [(c.kind, c.key) for c in first] == [
                    (ChangeKind.PUT, "k0"),
                    (ChangeKind.PUT, "k1"),
                ]
                with pytest.raises(pttsync.WatchOverflowError):
                    await slow.__anext__()
                with pytest.raises(pttsync.WatchOverflowError):  # and again, not a silent end
                    await slow.__anext__()
                assert slow.delivered == 2
                p.docs.put("k5", 5, now=T0 + 20)  # later writes are unaffected too
                await trio.testing.wait_all_tasks_blocked()

        assert [(c.kind, c.key, c.oplog_id) for c in fast_got[:5]] == [
            (ChangeKind.PUT, f"k{i}", w.oplog_id) for i, w in enumerate(writes)
        ]
        assert [c.key for c in fast_got] == [f"k{i}" for i in range(6)]

        # Watching again after an overflow works: re-read, then watch.
        with pttsync.watch(p.docs, buffer=1) as again:
            p.docs.delete("k0", now=T0 + 30)
        assert [(c.kind, c.key) async for c in again] == [(ChangeKind.DELETE, "k0")]


@pytest.mark.parametrize("buffer", [0, -1, MAX_BUFFER + 1, True, 2.0])
def test_a_buffer_outside_its_range_is_refused(buffer: object) -> None:
    p = founder()
    bad: Any = buffer
    with pytest.raises(pttsync.UsageError, match="buffer"), pttsync.watch(p.docs, buffer=bad):
        pytest.fail("the block must not run")
    p.docs.put("k", 1, now=T0 + 10)
    assert p.events[-1].key == "k"  # the founder's own log still works
    assert p.docs._subscribers == [p.events.append]  # the refused watch never subscribed
