"""The node messages' direct encoder and length-checked decoder (net/wirecodec.py),
held to the general canonical codec: same bytes out, and nothing accepted that the
strict check would refuse."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core import codec
from pttsync.core.sync.frames import MAX_FRAME_SIZE
from pttsync.core.sync.messages import PROTOCOL_VERSION as V
from pttsync.errors import RemoteProtocolError
from pttsync.net.wire import (
    MAX_HOPS,
    Bye,
    Hello,
    IHave,
    IWant,
    NodeMessage,
    Peers,
    Prune,
    Push,
    Route,
)
from pttsync.net.wirecodec import as_map, decode_any, encode_node_message

TOPIC = b"\x07" * 32
ID = b"\x01" * 32

ids32 = st.binary(min_size=32, max_size=32)
# Records of every head size: under 24 bytes, one-byte and two-byte lengths.
bodies = st.one_of(st.binary(max_size=30), st.binary(min_size=200, max_size=700))
addresses = st.sampled_from(["127.0.0.1:7400", "[::1]:1", "example.org:65535", "é.org:80"])
texts = st.text(st.characters(categories=["L", "N", "P"]) | st.just(" "), max_size=40)

messages: st.SearchStrategy[NodeMessage] = st.one_of(
    st.builds(Push, ids32, st.lists(bodies, min_size=1, max_size=5).map(tuple), st.booleans()),
    st.builds(IHave, ids32, st.lists(ids32, min_size=1, max_size=30).map(tuple)),
    st.builds(IWant, ids32, st.lists(ids32, min_size=1, max_size=30).map(tuple)),
    st.builds(Prune, ids32),
    st.builds(Route, ids32, st.integers(0, MAX_HOPS), st.booleans()),
    st.builds(
        Hello,
        st.one_of(st.just(""), addresses),
        st.lists(ids32, max_size=3).map(tuple),
        texts,
        st.lists(bodies, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(Peers, st.lists(st.tuples(ids32, addresses), max_size=4).map(tuple)),
    st.builds(Bye, texts),
)


@settings(max_examples=400)
@given(messages)
def test_the_direct_encoding_is_the_canonical_one_and_decodes_back(msg: NodeMessage) -> None:
    data = encode_node_message(msg)
    assert data == codec.dumps(as_map(msg))
    assert decode_any(data) == msg


def _accepted(data: bytes) -> NodeMessage | None:
    try:
        msg = decode_any(data)
    except RemoteProtocolError:
        return None
    assert isinstance(msg, NodeMessage)
    return msg


@settings(max_examples=600)
@given(messages, st.data())
def test_a_frame_accepted_is_canonical(msg: NodeMessage, data: st.DataObject) -> None:
    """Whatever a mutated frame decodes to, the frame is that message's canonical
    encoding: the strict general check agrees, and encoding it again gives it back."""
    frame = bytearray(encode_node_message(msg))
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(frame)))
        match data.draw(st.sampled_from(["flip", "insert", "delete", "append"])):
            case "flip" if at < len(frame):
                frame[at] = data.draw(st.integers(0, 255))
            case "insert":
                frame[at:at] = bytes([data.draw(st.integers(0, 255))])
            case "delete" if at < len(frame):
                del frame[at]
            case _:
                frame += data.draw(st.binary(min_size=1, max_size=3))
    got = _accepted(bytes(frame))
    if got is not None:
        assert codec.loads(bytes(frame), max_size=MAX_FRAME_SIZE) == as_map(got)
        assert encode_node_message(got) == bytes(frame)


def _wide_bstr_head(frame: bytes, value: bytes) -> bytes:
    """`frame` with one byte string's head in a longer form than it needs."""
    short = codec.bstr(value)
    assert short in frame
    return frame.replace(short, b"\x59" + len(value).to_bytes(2, "big") + value, 1)


@pytest.mark.parametrize(
    "msg",
    [IHave(TOPIC, (ID,)), IWant(TOPIC, (ID, ID)), Prune(TOPIC), Route(TOPIC, 3, True),
     Push(TOPIC, (b"record",), False), Hello("", (TOPIC,), "agent")],
)  # fmt: skip
def test_other_encodings_of_a_valid_message_are_refused(msg: NodeMessage) -> None:
    good = encode_node_message(msg)
    m = as_map(msg)
    unsorted = cbor2.dumps(dict(reversed(list(m.items()))))  # keys in the wrong order
    t = int(msg.TYPE)
    tagged_type = good.replace(b"\x61t" + codec.uint(t), b"\x61t\xc2\x41" + bytes([t]), 1)
    long_version = good.replace(b"\x61v" + codec.uint(V), b"\x61v\x18" + bytes([V]), 1)
    for bad in (
        good + b"\x00",  # trailing bytes
        _wide_bstr_head(good, TOPIC),
        unsorted,
        tagged_type,  # a bignum that decodes to the same type number
        long_version,
    ):
        assert bad != good
        with pytest.raises(RemoteProtocolError, match="malformed message"):
            decode_any(bad)


def test_a_frame_with_a_wide_head_inside_an_id_list_is_refused() -> None:
    good = encode_node_message(IHave(TOPIC, (ID, b"\x02" * 32)))
    with pytest.raises(RemoteProtocolError, match="canonical"):
        decode_any(_wide_bstr_head(good, b"\x02" * 32))


def test_the_version_is_checked_before_the_shape() -> None:
    bad = codec.dumps({"v": V + 1, "t": 37, "tp": TOPIC, "ids": "not a list"})
    with pytest.raises(RemoteProtocolError, match="protocol version"):
        decode_any(bad)


def test_a_huge_type_number_is_refused_without_printing_it_whole() -> None:
    """A bignum type number (tag 2, thousands of digits) is an unknown type, said
    briefly: not a `ValueError` from converting it to text."""
    huge = 10**6000
    frame = cbor2.dumps({"t": huge, "v": V})
    with pytest.raises(RemoteProtocolError, match="unknown message type <a very large integer>"):
        decode_any(frame)
