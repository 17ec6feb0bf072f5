"""The secure channel: Noise XX handshake, identity binding, encrypted frames, failures."""

from __future__ import annotations

import functools
import os
import random
from typing import Any

import cbor2
import pytest
import trio
import trio.testing

from pttsync.core import codec
from pttsync.core.identity import Identity
from pttsync.core.sync.frames import MAX_FRAME_SIZE, encode_frame
from pttsync.errors import (
    ConnectionLostError,
    HandshakeError,
    PttsyncError,
    RemoteProtocolError,
    UsageError,
)
from pttsync.net import transport
from pttsync.net.transport import (
    HANDSHAKE_TIMEOUT,
    MAX_CHUNK,
    MAX_NOISE_MESSAGE,
    SecureChannel,
    secure_handshake,
)

from .helpers import make_identity

CONTEXT = b"pttsync-noise-static-key:"
Outcome = SecureChannel | PttsyncError


@pytest.fixture
def carol() -> Identity:
    return make_identity("carol")


@pytest.fixture
def mallory() -> Identity:
    return make_identity("mallory")


async def handshake_both(
    a_stream: trio.abc.Stream,
    b_stream: trio.abc.Stream,
    a_identity: Identity,
    b_identity: Identity,
    *,
    a_kw: dict[str, Any] | None = None,
    b_kw: dict[str, Any] | None = None,
) -> tuple[Outcome, Outcome]:
    """Run both sides (a initiates); each side's channel, or the error it raised."""
    out: dict[str, Outcome] = {}

    async def side(
        name: str, stream: trio.abc.Stream, identity: Identity, kw: dict[str, Any]
    ) -> None:
        try:
            out[name] = await secure_handshake(stream, identity, initiator=name == "a", **kw)
        except PttsyncError as exc:
            out[name] = exc

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(side, "a", a_stream, a_identity, a_kw or {})
            nursery.start_soon(side, "b", b_stream, b_identity, b_kw or {})
    return out["a"], out["b"]


async def connect(
    a_identity: Identity, b_identity: Identity, **kw: Any
) -> tuple[SecureChannel, SecureChannel]:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(a_stream, b_stream, a_identity, b_identity, a_kw=kw, b_kw=kw)
    assert isinstance(a, SecureChannel), a
    assert isinstance(b, SecureChannel), b
    return a, b


async def receive(channel: SecureChannel) -> bytes | None:
    with trio.fail_after(5):
        return await channel.receive_frame()


# -- the happy path ------------------------------------------------------------


async def test_handshake_binds_both_identities(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    assert a.remote_id == bob.peer_id
    assert b.remote_id == alice.peer_id
    assert a.initiator
    assert not b.initiator
    assert a.bytes_sent == b.bytes_received > 0
    assert b.bytes_sent == a.bytes_received > 0


async def test_expect_matching_peer(alice: Identity, bob: Identity) -> None:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(
        a_stream,
        b_stream,
        alice,
        bob,
        a_kw={"expect": bob.peer_id},
        b_kw={"expect": alice.peer_id},
    )
    assert isinstance(a, SecureChannel)
    assert isinstance(b, SecureChannel)
    assert a.remote_id == bob.peer_id


@pytest.mark.parametrize(
    "size", [0, 1, 1000, MAX_CHUNK - 4, MAX_CHUNK, MAX_CHUNK + 1, MAX_FRAME_SIZE]
)
async def test_frames_both_ways(alice: Identity, bob: Identity, size: int) -> None:
    a, b = await connect(alice, bob)
    payload = random.Random(size).randbytes(size)
    with trio.fail_after(5):
        await a.send_frame(payload)
        await b.send_frame(payload[::-1])
        assert await b.receive_frame() == payload
        assert await a.receive_frame() == payload[::-1]
    assert a.bytes_sent == b.bytes_received
    assert b.bytes_sent == a.bytes_received


async def test_noise_overhead_counted(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    before = a.bytes_sent
    await a.send_frame(b"")
    assert a.bytes_sent - before == 2 + 16 + 4  # length prefix, tag, frame header
    before = a.bytes_sent
    await a.send_frame(bytes(MAX_FRAME_SIZE))
    messages = -(-(MAX_FRAME_SIZE + 4) // MAX_CHUNK)
    assert a.bytes_sent - before == MAX_FRAME_SIZE + 4 + messages * (2 + 16)
    assert await receive(b) == b""
    assert await receive(b) == bytes(MAX_FRAME_SIZE)
    assert b.bytes_received == a.bytes_sent


async def test_many_frames_in_a_row(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    frames = [str(i).encode() * (i % 7) for i in range(500)]
    with trio.fail_after(10):
        for frame in frames:
            await a.send_frame(frame)
        for frame in frames:
            assert await b.receive_frame() == frame


async def test_concurrent_senders_keep_frames_whole_and_ordered(
    alice: Identity, bob: Identity
) -> None:
    a, b = await connect(alice, bob)
    sizes = [0, 5, MAX_CHUNK + 7, 3 * MAX_CHUNK, 100, MAX_FRAME_SIZE - 2]
    senders = 4
    sent: dict[int, list[bytes]] = {tag: [] for tag in range(senders)}

    async def sender(tag: int) -> None:
        rng = random.Random(tag)
        for i, size in enumerate(sizes * 2):
            payload = bytes([tag, i]) + rng.randbytes(size)
            sent[tag].append(payload)
            await a.send_frame(payload)
            await trio.lowlevel.checkpoint()

    got: dict[int, list[bytes]] = {tag: [] for tag in range(senders)}
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for tag in range(senders):
                nursery.start_soon(sender, tag)
            for _ in range(senders * len(sizes) * 2):
                frame = await b.receive_frame()
                assert frame is not None
                got[frame[0]].append(frame)
    assert got == sent


# -- frame limits ----------------------------------------------------------------


async def test_sender_refuses_oversize_frame(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    with pytest.raises(UsageError):
        await a.send_frame(bytes(MAX_FRAME_SIZE + 1))
    await a.send_frame(b"still fine")  # a refused frame does not break the channel
    assert await receive(b) == b"still fine"


async def test_sender_refuses_frame_over_channel_limit(alice: Identity, bob: Identity) -> None:
    a, _ = await connect(alice, bob, max_frame=100)
    with pytest.raises(UsageError, match="limit of 100"):
        await a.send_frame(bytes(101))


async def test_receiver_refuses_announced_oversize_frame(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    # Bypass send_frame: announce a frame one byte over the limit, send no payload.
    await a._send_plaintext((MAX_FRAME_SIZE + 1).to_bytes(4, "big"))
    with pytest.raises(RemoteProtocolError, match="over the limit"):
        await receive(b)
    with pytest.raises(RemoteProtocolError, match="failed earlier"):
        await receive(b)


async def test_receiver_limit_is_its_own(alice: Identity, bob: Identity) -> None:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(a_stream, b_stream, alice, bob, b_kw={"max_frame": 1000})
    assert isinstance(a, SecureChannel)
    assert isinstance(b, SecureChannel)
    await a.send_frame(bytes(1000))
    await a.send_frame(bytes(1001))
    assert await receive(b) == bytes(1000)
    with pytest.raises(RemoteProtocolError, match="1001-byte frame"):
        await receive(b)


# -- identity binding --------------------------------------------------------------


async def test_expect_mismatch(alice: Identity, bob: Identity, carol: Identity) -> None:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(a_stream, b_stream, alice, bob, a_kw={"expect": carol.peer_id})
    assert isinstance(a, HandshakeError)
    assert "expected peer" in str(a)
    assert isinstance(b, HandshakeError)  # alice hung up on bob mid-handshake
    assert "closed the connection" in str(b)


async def test_expect_mismatch_on_responder(
    alice: Identity, bob: Identity, carol: Identity
) -> None:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(a_stream, b_stream, alice, bob, b_kw={"expect": carol.peer_id})
    assert isinstance(b, HandshakeError)
    assert "expected peer" in str(b)
    # The initiator is done after its last message: it learns of the refusal as an EOF.
    assert isinstance(a, SecureChannel)
    assert await receive(a) is None


async def test_bad_expect_is_a_usage_error(alice: Identity) -> None:
    stream, _ = trio.testing.memory_stream_pair()
    with pytest.raises(UsageError):
        await secure_handshake(stream, alice, initiator=True, expect=b"short")
    with pytest.raises(UsageError):
        await secure_handshake(stream, alice, initiator=True, max_frame=-1)


async def test_connecting_to_ourselves_is_refused(alice: Identity) -> None:
    a_stream, b_stream = trio.testing.memory_stream_pair()
    a, b = await handshake_both(a_stream, b_stream, alice, alice)
    assert isinstance(a, HandshakeError)
    assert "our own peer ID" in str(a)
    assert isinstance(b, HandshakeError)


def _forged(kind: str, liar: Identity, victim: Identity, static_public: bytes) -> bytes:
    good_sig = liar.sign(CONTEXT + static_public)
    match kind:
        case "victim id, own signature":
            return codec.dumps({"v": 1, "id": victim.peer_id, "sig": good_sig})
        case "signature over another static key":
            return codec.dumps({"v": 1, "id": liar.peer_id, "sig": liar.sign(CONTEXT + bytes(32))})
        case "signature without context":
            return codec.dumps({"v": 1, "id": liar.peer_id, "sig": liar.sign(static_public)})
        case "version 2":
            return codec.dumps({"v": 2, "id": liar.peer_id, "sig": good_sig})
        case "extra field":
            return codec.dumps({"v": 1, "id": liar.peer_id, "sig": good_sig, "x": 1})
        case "missing field":
            return codec.dumps({"v": 1, "id": liar.peer_id})
        case "short id":
            return codec.dumps({"v": 1, "id": liar.peer_id[:31], "sig": good_sig})
        case "non-canonical":
            return cbor2.dumps({"sig": good_sig, "v": 1, "id": liar.peer_id})
        case "not a map":
            return codec.dumps([1, liar.peer_id, good_sig])
        case "empty":
            return b""
    raise AssertionError(kind)


FORGERIES = [
    "victim id, own signature",
    "signature over another static key",
    "signature without context",
    "version 2",
    "extra field",
    "missing field",
    "short id",
    "non-canonical",
    "not a map",
    "empty",
]


@pytest.mark.parametrize("kind", FORGERIES)
@pytest.mark.parametrize("liar_initiates", [True, False])
async def test_bad_identity_payload_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    alice: Identity,
    mallory: Identity,
    carol: Identity,
    kind: str,
    liar_initiates: bool,
) -> None:
    real = transport._identity_payload

    def payload(identity: Identity, static_public: bytes) -> bytes:
        if identity is mallory:
            return _forged(kind, mallory, carol, static_public)
        return real(identity, static_public)

    monkeypatch.setattr(transport, "_identity_payload", payload)
    a_stream, b_stream = trio.testing.memory_stream_pair()
    if liar_initiates:
        liar, honest = await handshake_both(a_stream, b_stream, mallory, alice)
    else:
        honest, liar = await handshake_both(a_stream, b_stream, alice, mallory)
    assert isinstance(honest, HandshakeError), honest
    if "signature" in kind:
        assert "does not verify" in str(honest)
    if liar_initiates:  # mallory finished first, then alice hung up
        assert isinstance(liar, SecureChannel)
        assert await receive(liar) is None
    else:
        assert isinstance(liar, HandshakeError)


async def test_honest_payload_builder_round_trips(alice: Identity, bob: Identity) -> None:
    static = os.urandom(32)
    payload = transport._identity_payload(alice, static)
    assert transport._check_identity_payload(payload, static, bob, alice.peer_id) == alice.peer_id
    with pytest.raises(HandshakeError, match="does not verify"):
        transport._check_identity_payload(payload, bytes(32), bob, None)


# -- garbage, stalls, broken streams -----------------------------------------------


VALID_E = b"\x09" + bytes(31)  # the X25519 base point: a well-formed ephemeral key


@pytest.mark.parametrize(
    ("garbage", "eof"),
    [
        (b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n", False),
        (b"\x00\x00", False),
        (b"\x00\x1f" + bytes(31), False),
        (b"\x00\x21" + bytes(33), False),
        (b"\x00\x20" + bytes(32), False),  # a low-order ephemeral key
        (b"\x00\x20" + VALID_E + b"\x00\x60" + bytes(96), False),  # then a garbage message 3
        (b"\x00\x20" + VALID_E, True),  # then EOF
        (b"\x00\x20" + VALID_E + b"\x00\x60" + bytes(10), True),  # then EOF mid-message
    ],
)
async def test_garbage_to_responder(alice: Identity, garbage: bytes, eof: bool) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(garbage)
    if eof:
        await theirs.send_eof()
    with trio.fail_after(1), pytest.raises(HandshakeError) as info:  # well before the timeout
        await secure_handshake(ours, alice, initiator=False)
    assert "timed out" not in str(info.value)
    with pytest.raises(trio.ClosedResourceError):  # a failed handshake closes the stream
        await ours.send_all(b"x")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\xff\xff",
        b"\x00\x80" + bytes(range(128)),
        b"\x00\x20" + bytes(32),
        b"\x00\x60" + VALID_E + bytes(64),
    ],
)
async def test_garbage_to_initiator(alice: Identity, garbage: bytes) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.send_all(garbage)
    with trio.fail_after(1), pytest.raises(HandshakeError) as info:
        await secure_handshake(ours, alice, initiator=True)
    assert "timed out" not in str(info.value)


async def test_eof_before_handshake(alice: Identity) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.aclose()
    with trio.fail_after(1), pytest.raises(HandshakeError, match="closed the connection"):
        await secure_handshake(ours, alice, initiator=False)


async def test_broken_stream_during_handshake(alice: Identity) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    await theirs.aclose()
    with trio.fail_after(1), pytest.raises(ConnectionLostError):
        await secure_handshake(ours, alice, initiator=True)  # the first send breaks


@pytest.mark.parametrize("initiator", [True, False])
async def test_stalled_handshake_times_out(
    autojump_clock: trio.testing.MockClock, alice: Identity, initiator: bool
) -> None:
    ours, _theirs = trio.testing.memory_stream_pair()  # the peer never speaks
    start = trio.current_time()
    with (
        trio.fail_after(HANDSHAKE_TIMEOUT + 5),
        pytest.raises(HandshakeError, match=f"timed out after {HANDSHAKE_TIMEOUT:g} s"),
    ):
        await secure_handshake(ours, alice, initiator=initiator)
    assert trio.current_time() - start == pytest.approx(HANDSHAKE_TIMEOUT)


async def test_peer_stalling_midway_times_out(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity
) -> None:
    """Bob answers message 1, then never sends message 3: custom timeout honoured."""
    ours, theirs = trio.testing.memory_stream_pair()
    start = trio.current_time()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            # A raw initiator that sends message 1 (a valid ephemeral key) and stops.
            nursery.start_soon(theirs.send_all, b"\x00\x20" + VALID_E)
            with pytest.raises(HandshakeError, match=r"timed out after 2\.5 s"):
                await secure_handshake(ours, bob, initiator=False, timeout=2.5)
    assert trio.current_time() - start == pytest.approx(2.5)


# -- tampering, via a relay that flips one byte ----------------------------------


class Tamper:
    def __init__(self) -> None:
        self.flip_at: int | None = None


async def _pump(
    src: trio.abc.ReceiveStream, dst: trio.abc.HalfCloseableStream, tamper: Tamper | None
) -> None:
    pos = 0
    while data := await src.receive_some():
        at = tamper.flip_at if tamper is not None else None
        if at is not None and pos <= at < pos + len(data):
            changed = bytearray(data)
            changed[at - pos] ^= 0x01
            data = bytes(changed)
        pos += len(data)
        await dst.send_all(data)
    await dst.send_eof()


async def _tampered_handshake(
    nursery: trio.Nursery, alice: Identity, bob: Identity, tamper: Tamper
) -> tuple[Outcome, Outcome]:
    """Alice initiates to Bob through a relay that may flip a byte from Alice."""
    a_end, relay_a = trio.testing.memory_stream_pair()
    relay_b, b_end = trio.testing.memory_stream_pair()
    nursery.start_soon(_pump, relay_a, relay_b, tamper)
    nursery.start_soon(_pump, relay_b, relay_a, None)
    return await handshake_both(a_end, b_end, alice, bob)


async def test_tampered_ciphertext_is_refused(alice: Identity, bob: Identity) -> None:
    tamper = Tamper()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            a, b = await _tampered_handshake(nursery, alice, bob, tamper)
            assert isinstance(a, SecureChannel)
            assert isinstance(b, SecureChannel)
            await a.send_frame(b"first")
            assert await b.receive_frame() == b"first"
            tamper.flip_at = a.bytes_sent + 2 + 3  # inside the next message's ciphertext
            await a.send_frame(b"second")
            with pytest.raises(RemoteProtocolError, match="failed authentication"):
                await b.receive_frame()
            nursery.cancel_scope.cancel()


async def test_tampered_handshake_is_refused(alice: Identity, bob: Identity) -> None:
    tamper = Tamper()
    tamper.flip_at = 34 + 2 + 10  # inside message 3 (message 1 is 2 + 32 bytes)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            a, b = await _tampered_handshake(nursery, alice, bob, tamper)
            assert isinstance(b, HandshakeError)
            assert "bad noise handshake message" in str(b)
            assert isinstance(a, SecureChannel)
            nursery.cancel_scope.cancel()


# -- ends and breakage after the handshake ------------------------------------------


async def test_clean_eof(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    await a.send_frame(b"last words")
    await a.aclose()
    await a.aclose()  # idempotent
    assert await receive(b) == b"last words"
    assert await receive(b) is None
    assert await receive(b) is None


async def test_eof_mid_frame(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    await a._send_plaintext(encode_frame(b"abcdefgh")[:7])
    await a.aclose()
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        await receive(b)


async def test_eof_mid_frame_header(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    await a._send_plaintext(b"\x00\x00")
    await a.aclose()
    with pytest.raises(RemoteProtocolError, match="middle of a frame"):
        await receive(b)


async def test_eof_mid_noise_message(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    await a._wire.stream.send_all(b"\x00\x40" + bytes(10))
    await a.aclose()
    with pytest.raises(RemoteProtocolError, match="middle of a noise message"):
        await receive(b)


@pytest.mark.parametrize(
    "raw",
    [b"\x00\x00", b"\x00\x10" + bytes(16)],  # an empty message; a tag with no plaintext
)
async def test_empty_transport_message(alice: Identity, bob: Identity, raw: bytes) -> None:
    a, b = await connect(alice, bob)
    if raw != b"\x00\x00":
        raw = b"\x00\x10" + a._noise.encrypt(b"")
    await a._wire.stream.send_all(raw)
    with pytest.raises(RemoteProtocolError, match="empty"):
        await receive(b)


async def test_closed_channel_raises_connection_lost(alice: Identity, bob: Identity) -> None:
    a, _b = await connect(alice, bob)
    await a.aclose()
    with pytest.raises(ConnectionLostError):
        await a.send_frame(b"x")
    with pytest.raises(ConnectionLostError):
        await a.receive_frame()


async def test_peer_gone_raises_connection_lost(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    await b.aclose()
    with pytest.raises(ConnectionLostError):
        await a.send_frame(b"x")


async def test_async_with_closes(alice: Identity, bob: Identity) -> None:
    a, b = await connect(alice, bob)
    async with a:
        await a.send_frame(b"x")
    assert await receive(b) == b"x"
    assert await receive(b) is None


async def test_one_receiver_at_a_time(alice: Identity, bob: Identity) -> None:
    _a, b = await connect(alice, bob)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(b.receive_frame)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await b.receive_frame()
            nursery.cancel_scope.cancel()


async def test_cancelled_receive_loses_nothing(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity
) -> None:
    a, b = await connect(alice, bob)
    frame = encode_frame(b"x" * (MAX_CHUNK + 100))
    await a._send_plaintext(frame[:10])
    with trio.move_on_after(1) as scope:
        await b.receive_frame()
    assert scope.cancelled_caught
    # A wire message cut in two, with a cancelled receive in between.
    rest = a._noise.encrypt(frame[10:MAX_CHUNK])
    wire = len(rest).to_bytes(2, "big") + rest
    await a._wire.stream.send_all(wire[:1000])
    with trio.move_on_after(1) as scope:
        await b.receive_frame()
    assert scope.cancelled_caught
    await a._wire.stream.send_all(wire[1000:])
    await a._send_plaintext(frame[MAX_CHUNK:])
    assert await receive(b) == b"x" * (MAX_CHUNK + 100)


async def test_cancelled_send_breaks_sending(
    autojump_clock: trio.testing.MockClock, alice: Identity, bob: Identity
) -> None:
    a_stream, b_stream = trio.testing.lockstep_stream_pair()  # send_all waits for the reader
    a, b = await handshake_both(a_stream, b_stream, alice, bob)
    assert isinstance(a, SecureChannel)
    assert isinstance(b, SecureChannel)
    with trio.move_on_after(1) as scope:
        await a.send_frame(b"nobody reads this")
    assert scope.cancelled_caught
    with pytest.raises(ConnectionLostError, match="earlier send"):
        await a.send_frame(b"x")


# -- real TCP --------------------------------------------------------------------------


async def test_tcp_loopback(alice: Identity, bob: Identity) -> None:
    big = random.Random(1).randbytes(MAX_FRAME_SIZE)

    async def handler(stream: trio.SocketStream) -> None:
        async with await secure_handshake(
            stream, bob, initiator=False, expect=alice.peer_id
        ) as channel:
            assert channel.remote_id == alice.peer_id
            await channel.send_frame(b"welcome")
            while (frame := await channel.receive_frame()) is not None:
                await channel.send_frame(frame[::-1])

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
            )
            port = listeners[0].socket.getsockname()[1]
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with await secure_handshake(
                stream, alice, initiator=True, expect=bob.peer_id
            ) as channel:
                assert channel.remote_id == bob.peer_id
                assert await channel.receive_frame() == b"welcome"
                for payload in [b"", b"hello", bytes(range(256)) * 300, big]:
                    await channel.send_frame(payload)
                    assert await channel.receive_frame() == payload[::-1]
            nursery.cancel_scope.cancel()


def test_constants() -> None:
    assert transport.NOISE_PROTOCOL == b"Noise_XX_25519_ChaChaPoly_SHA256"
    assert transport.PROLOGUE == b"pttsync/noise/1"
    assert MAX_NOISE_MESSAGE == 65535
    assert MAX_CHUNK == MAX_NOISE_MESSAGE - 16
