"""The fabric's shared tables of encoded and decoded node messages (sim/framememo.py).

What a table gives must be what `encode_any` and `decode_any` give, for any
message and any bytes, a bad frame included; it stays bounded; and a
simulation with the tables gives the very report it gives without them.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import pttsync.sim.fabric as fabric_module
from pttsync.core.sync.messages import RejectCode, SyncOplogReject
from pttsync.core.sync.msgcodec import encode_message
from pttsync.errors import RemoteProtocolError
from pttsync.net.peer import Direction, PeerLink, encode_any
from pttsync.net.wire import AnyMessage, Bye, IHave, IWant, Prune, Push, Route
from pttsync.net.wirecodec import decode_any
from pttsync.sim import SimConfig, simulate
from pttsync.sim.framememo import FrameMemo

TOPIC = bytes(range(32))
_ids = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=20).map(tuple)
_topics = st.binary(min_size=32, max_size=32)
MESSAGES = st.one_of(
    st.builds(IHave, _topics, _ids),
    st.builds(IWant, _topics, _ids),
    st.builds(Prune, _topics),
    st.builds(Route, _topics, st.integers(0, 16), st.booleans()),
    st.builds(Bye, st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=40)),
    st.builds(
        Push,
        _topics,
        st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5).map(tuple),
        st.booleans(),
    ),
)


@given(MESSAGES)
def test_a_table_encodes_and_decodes_as_the_codec_does(msg: AnyMessage) -> None:
    memo = FrameMemo(limit=8)
    frame = memo.encode(msg)
    assert frame == encode_any(msg)
    assert memo.encode(msg) is frame  # an equal message: the very bytes encoded before
    again = bytes(bytearray(frame))  # equal bytes, another object (as another sender's)
    assert again is not frame
    decoded = memo.decode(again)
    assert decoded == decode_any(frame) == msg
    assert memo.decode(frame) is decoded
    assert memo.found == 2 and memo.encoded == 1 and memo.decoded == 1


@given(st.binary(max_size=200))
def test_a_frame_that_does_not_decode_fails_each_time_and_is_not_kept(junk: bytes) -> None:
    memo = FrameMemo(limit=8)
    try:
        expected: AnyMessage | str = decode_any(junk)
    except RemoteProtocolError as exc:
        expected = str(exc)
    if isinstance(expected, str):
        for _ in range(2):
            with pytest.raises(RemoteProtocolError) as caught:
                memo.decode(junk)
            assert str(caught.value) == expected
        assert len(memo) == 0 and memo.found == 0
    else:  # random bytes that happen to be a message
        assert memo.decode(junk) == expected


def test_a_sync_message_is_decoded_each_time_and_not_kept() -> None:
    msg = SyncOplogReject(TOPIC, bytes(16), 2, RejectCode.UNKNOWN_TOPIC, "no such topic")
    frame = encode_message(msg)
    memo = FrameMemo(limit=8)
    first, second = memo.decode(frame), memo.decode(frame)
    assert first == second == msg and first is not second
    assert memo.encode(msg) == frame
    assert len(memo) == 0 and memo.decoded == 2 and memo.encoded == 1


def test_the_tables_stay_within_their_limit() -> None:
    memo = FrameMemo(limit=5)
    frames = [memo.encode(IHave(TOPIC, (bytes([i]) * 32,))) for i in range(20)]
    for frame in frames:
        memo.decode(frame)
    assert len(memo) == 10  # five each way: the oldest forgotten
    assert memo.decode(frames[-1]) is memo.decode(frames[-1])
    assert memo.found == 2
    memo.decode(frames[0])  # forgotten: decoded again
    assert memo.decoded == 21


def test_the_tables_keep_at_most_their_budget_of_bytes() -> None:
    memo = FrameMemo(limit=100, budget=3000)
    sizes = []
    for i in range(40):
        msg = Push(TOPIC, (bytes([i]) * (100 + 20 * i),))
        frame = memo.encode(msg)
        memo.decode(bytes(bytearray(frame)))
        sizes.append(len(frame))
        assert memo.kept_bytes <= 2 * 3000
        assert memo.kept_bytes == 2 * sum(sizes[-(len(memo) // 2) :])  # the newest, both ways
    huge = Push(TOPIC, (b"x" * 5000,))  # over the budget alone: kept by neither table
    frame = memo.encode(huge)
    assert memo.decode(frame) == huge
    assert len(memo) == 0 and memo.kept_bytes == 0
    assert memo.encode(huge) == frame and memo.encoded == 42


def test_a_real_channel_keeps_the_codec() -> None:
    class Plain:
        remote_id = b"\x01" * 32

        async def send_frame(self, payload: bytes) -> None: ...

        async def receive_frame(self) -> bytes | None: ...

        async def aclose(self) -> None: ...

    link = PeerLink(Plain(), direction=Direction.OUTBOUND, address="x:1", local_id=b"\x02" * 32)
    assert link.encode is encode_any and link.decode is decode_any


class _Counting(FrameMemo):
    made: list[FrameMemo] = []  # noqa: RUF012 - the test's record of the tables made

    def __init__(self) -> None:
        super().__init__()
        _Counting.made.append(self)


class _Plain(FrameMemo):
    """No tables: every message encoded and every frame decoded, as a real node does."""

    def encode(self, msg: AnyMessage) -> bytes:
        return encode_any(msg)

    def decode(self, frame: bytes) -> AnyMessage:
        return decode_any(frame)


def test_a_run_gives_the_same_report_with_the_tables_as_without(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = SimConfig(peers=12, writes=24, seed=5, loss=0.02, crashes=1, partitions=((10.0, 14.0),))
    monkeypatch.setattr(fabric_module, "FrameMemo", _Counting)
    _Counting.made.clear()
    shared = simulate(cfg)
    assert shared.ok, shared.summary()
    assert sum(m.found for m in _Counting.made) > sum(m.decoded for m in _Counting.made) > 0
    monkeypatch.setattr(fabric_module, "FrameMemo", _Plain)
    plain = simulate(cfg)
    assert plain.without_wall_time() == shared.without_wall_time()
