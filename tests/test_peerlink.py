"""PeerLink's sends: the writer's queue, and the shortcut past it for channels that never wait."""

from __future__ import annotations

import trio
import trio.testing
from trio.testing import MockClock

from pttsync.errors import ConnectionLostError
from pttsync.net.peer import Direction, PeerLink
from pttsync.net.wire import Bye


class Channel:
    """A channel that takes frames at once while `instant`, else makes the writer wait."""

    def __init__(self) -> None:
        self.remote_id = b"r" * 32
        self.sent: list[bytes] = []
        self.instant = True
        self.gate = trio.Event()
        self.broken = False
        self.grew = trio.Event()

    def _add(self, payload: bytes) -> None:
        self.sent.append(payload)
        self.grew.set()

    async def wait_for(self, n: int) -> None:
        while len(self.sent) < n:
            self.grew = trio.Event()
            await self.grew.wait()

    def send_frame_nowait(self, payload: bytes) -> bool:
        if self.broken:
            raise ConnectionLostError("reset")
        if not self.instant:
            return False
        self._add(payload)
        return True

    async def send_frame(self, payload: bytes) -> None:
        await self.gate.wait()
        self._add(payload)

    async def receive_frame(self) -> bytes | None:
        await trio.sleep_forever()

    async def aclose(self) -> None:
        pass


def link(channel: Channel) -> PeerLink:
    return PeerLink(channel, direction=Direction.OUTBOUND, address="x:1", local_id=b"l" * 32)


async def test_frames_keep_their_order_across_the_shortcut(autojump_clock: MockClock) -> None:
    ch = Channel()
    ln = link(ch)
    with trio.fail_after(5):
        await _ordered(ch, ln)


async def _ordered(ch: Channel, ln: PeerLink) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ln.run_writer)
        assert ln.try_send(Bye("1"))  # straight to the channel
        ch.instant = False
        assert ln.try_send(Bye("2"))  # the channel would wait: queued for the writer
        ch.instant = True
        assert ln.try_send(Bye("3"))  # queued too: "2" must go first
        await ln.send(Bye("4"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(ch.sent) == 1  # the writer still waits on "2"
        ch.gate.set()
        await ch.wait_for(4)
        assert [b"1" in f for f in ch.sent] == [True, False, False, False]
        assert ch.sent == sorted(ch.sent, key=lambda f: f[-1])  # 1, 2, 3, 4
        await trio.testing.wait_all_tasks_blocked()  # the writer is done with "4"
        assert ln.try_send(Bye("5")) and ch.sent[-1].endswith(b"5")  # queue empty: shortcut
        assert ln.stats.messages_sent == 5
        nursery.cancel_scope.cancel()


async def test_a_failed_shortcut_closes_the_link(autojump_clock: MockClock) -> None:
    ch = Channel()
    ln = link(ch)
    ch.broken = True
    assert not ln.try_send(Bye("x"))
    assert ln.closed and ln.close_reason == "send failed"
