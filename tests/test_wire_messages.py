"""The node's messages (Hello, Push, Peers, Bye, Route): round trips and strict decoding."""

from __future__ import annotations

import pytest

from pttsync.core import codec
from pttsync.core.sync.messages import PROTOCOL_VERSION as V
from pttsync.core.sync.messages import RejectCode, SyncOplogReject
from pttsync.core.sync.msgcodec import encode_message
from pttsync.errors import RemoteProtocolError
from pttsync.net.wire import (
    MAX_CREDENTIALS,
    MAX_PEERS_LISTED,
    MAX_PUSH_OPLOGS,
    MAX_TOPICS,
    Bye,
    Hello,
    Peers,
    Push,
    Route,
    check_address,
)
from pttsync.net.wirecodec import decode_any, encode_node_message

TOPIC = b"\x07" * 32
PEER = b"\x09" * 32


@pytest.mark.parametrize(
    "msg",
    [
        Hello("127.0.0.1:7400", (TOPIC,), "pttsync/0.1", (b"\xa1\x01\x02",)),
        Hello("", (), ""),
        Push(TOPIC, (b"record",), pending=True),
        Push(TOPIC, (b"a", b"b")),
        Peers(((PEER, "[::1]:7400"), (PEER, "example.org:1"))),
        Peers(()),
        Bye("not a member of any topic this node serves"),
        Route(TOPIC, 0, True),
        Route(TOPIC, 16, False),
    ],
)
def test_node_messages_round_trip(msg: object) -> None:
    assert decode_any(encode_node_message(msg)) == msg  # type: ignore[arg-type]


def test_sync_messages_still_decode_through_decode_any() -> None:
    reject = SyncOplogReject(TOPIC, b"\x01" * 16, 3, RejectCode.BUSY, "later")
    assert decode_any(encode_message(reject)) == reject


def _raw(**fields: object) -> bytes:
    base: dict[str, object] = {
        "v": V,
        "t": 32,
        "lis": "",
        "tps": [],
        "ag": "",
        "cr": [],
        "vis": False,
    }
    base.update(fields)
    return codec.dumps({k: v for k, v in base.items() if v is not ...})


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (_raw(t=99), "unknown message type"),
        (_raw(v=V + 1), "protocol version"),
        (_raw(extra=1), "unknown field"),
        (_raw(ag=...), "missing field"),
        (_raw(lis=7), "text"),
        (_raw(lis="no-port"), "HOST:PORT"),
        (_raw(ag="bell\x07"), "printable"),
        (_raw(tps=[b"short"]), "32 bytes"),
        (_raw(tps=[TOPIC] * (MAX_TOPICS + 1)), "over the limit of 64"),
        (_raw(cr=[b"x"] * (MAX_CREDENTIALS + 1)), "over the limit of 64"),
        (_raw(vis=1), "boolean"),
        (_raw(vis=...), "missing field"),
        (
            codec.dumps({"v": V, "t": 33, "tp": TOPIC, "ops": [], "pd": False}),
            "at least one",
        ),
        (
            codec.dumps(
                {
                    "v": V,
                    "t": 33,
                    "tp": TOPIC,
                    "ops": [b"x"] * (MAX_PUSH_OPLOGS + 1),
                    "pd": False,
                }
            ),
            "over the limit of 256",
        ),
        (
            codec.dumps({"v": V, "t": 33, "tp": TOPIC, "ops": [b"x"], "pd": 1}),
            "boolean",
        ),
        (
            codec.dumps({"v": V, "t": 34, "ps": [[PEER, "h:1"]] * (MAX_PEERS_LISTED + 1)}),
            "limit of 64",
        ),
        (codec.dumps({"v": V, "t": 34, "ps": [[PEER]]}), "peer ID, address"),
        (codec.dumps({"v": V, "t": 34, "ps": [[PEER, "h:0"]]}), "HOST:PORT"),
        (codec.dumps({"v": V, "t": 35, "why": "x" * 201}), "characters"),
        (codec.dumps([1, 2]), "map"),
        (b"\xff", "malformed"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_malformed_node_messages_are_protocol_errors(data: bytes, why: str) -> None:
    with pytest.raises(RemoteProtocolError, match=why):
        decode_any(data)


@pytest.mark.parametrize("text", ["127.0.0.1:7400", "[::1]:7400", "host:1", "a.b.c:65535"])
def test_good_addresses(text: str) -> None:
    host, port = check_address(text)
    assert host and 0 < port < 65536


@pytest.mark.parametrize("text", ["7400", "host:", "host:0", "host:65536", ":80", "[]:1", "a b:1"])
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_address(text)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"hop": 17}, "out of range"),
        ({"hop": -1}, "out of range"),
        ({"hop": True}, "integer"),
        ({"msh": 1}, "boolean"),
        ({"tp": b"short"}, "32 bytes"),
        ({"extra": 1}, "unknown field"),
    ],
)
def test_a_bad_route_is_a_protocol_violation(fields: dict[str, object], why: str) -> None:
    base: dict[str, object] = {"v": V, "t": 36, "tp": TOPIC, "hop": 3, "msh": False}
    base.update(fields)
    with pytest.raises(RemoteProtocolError, match=why):
        decode_any(codec.dumps(base))
