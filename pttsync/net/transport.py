"""The secure channel: Noise XX over any trio stream, bound to the peers' Ed25519 IDs.

Every connection starts with a Noise_XX_25519_ChaChaPoly_SHA256 handshake
(the `noiseprotocol` package does all the cryptography; nothing here is a
cipher construction of its own) and then carries encrypted frames.

Wire format.  Every Noise message, handshake or transport, travels as a
2-byte big-endian length and then that many bytes (at most 65535, the Noise
limit, tag included).  A length of 0 is a protocol violation, as is a
handshake message over 1 KiB (real ones are about 200 bytes) or a first
message that is not exactly the initiator's 32-byte ephemeral key.  The
prologue is PROLOGUE, so a peer speaking another protocol fails the handshake.

Identity binding (as libp2p-noise does it).  Each side makes a fresh X25519
static key for every handshake and proves it speaks for its peer ID: the
responder's message 2 and the initiator's message 3 carry, encrypted, the
canonical CBOR map

    {"v": 1, "id": <32-byte Ed25519 peer ID>,
     "sig": sign(b"pttsync-noise-static-key:" + <its X25519 static public key>)}

The receiver checks the map strictly, then the signature against the static
key *Noise* recorded for the remote (so a proof cannot be replayed over
another key), refuses its own ID, and checks the ID against `expect` if one
was given.  `SecureChannel.remote_id` is that proven ID.

After the handshake the application's frames (pttsync.core.frames: a 4-byte
length, then the payload) form one plaintext byte stream, cut into chunks of
at most MAX_NOISE_MESSAGE - 16 bytes, each sent as one Noise transport
message.  An empty transport message, a message that fails authentication
and a frame header over `max_frame` are protocol violations.  A reader holds
at most one Noise message and one frame.  The end of the stream is not
authenticated (the sync protocol never takes an EOF as a promise of anything):
an EOF on a frame boundary is a clean close, anywhere else a violation.

Errors: a failed handshake raises HandshakeError, a violation afterwards
RemoteProtocolError, and a stream that breaks or is closed under us
(trio.BrokenResourceError, trio.ClosedResourceError), during the handshake
too, raises ConnectionLostError: nobody's fault we can tell.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection  # type: ignore[import-untyped]
from noise.exceptions import NoiseInvalidMessage  # type: ignore[import-untyped]

from ..core import codec
from ..core.identity import PEER_ID_SIZE, SIGNATURE_SIZE, peer_id_text, verify_signature
from ..core.sync.frames import MAX_FRAME_SIZE, FrameReader, encode_frame
from ..errors import (
    ConnectionLostError,
    HandshakeError,
    HandshakeTimeoutError,
    RemoteProtocolError,
    SelfConnectionError,
    UsageError,
)

if TYPE_CHECKING:
    from ..core.identity import Identity

log = logging.getLogger(__name__)

NOISE_PROTOCOL = b"Noise_XX_25519_ChaChaPoly_SHA256"
PROLOGUE = b"pttsync/noise/1"
HANDSHAKE_TIMEOUT = 10.0
"""Seconds a peer has to complete the handshake."""
MAX_NOISE_MESSAGE = 65535
"""The Noise spec's limit on one message, the 16-byte tag included."""

TAG_SIZE = 16
MAX_CHUNK = MAX_NOISE_MESSAGE - TAG_SIZE
"""The most plaintext one transport message carries."""

_LENGTH_SIZE = 2
_DH_SIZE = 32
_MAX_HANDSHAKE_MESSAGE = 1024
_PAYLOAD_VERSION = 1
_PAYLOAD_KEYS = frozenset({"v", "id", "sig"})
_SIGNATURE_CONTEXT = b"pttsync-noise-static-key:"


class _Wire:
    """Length-prefixed Noise messages on a stream, with byte counts.

    A partly received message is kept across calls, so a cancelled receive
    loses nothing.
    """

    __slots__ = ("_buf", "received", "sent", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.sent = 0
        self.received = 0
        self._buf = bytearray()

    async def send(self, message: bytes) -> None:
        data = len(message).to_bytes(_LENGTH_SIZE, "big") + message
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise ConnectionLostError(
                f"the connection broke while sending: {_describe(exc)}"
            ) from exc
        self.sent += len(data)

    async def receive(self, limit: int) -> bytes | None:
        """The next message, or None at an EOF between messages."""
        buf = self._buf
        while True:
            if len(buf) >= _LENGTH_SIZE:
                size = int.from_bytes(buf[:_LENGTH_SIZE], "big")
                if size == 0:
                    raise RemoteProtocolError("the peer sent an empty noise message")
                if size > limit:
                    raise RemoteProtocolError(
                        f"the peer announced a {size}-byte noise message, over the limit of {limit}"
                    )
                want = _LENGTH_SIZE + size - len(buf)
                if want == 0:
                    message = bytes(buf[_LENGTH_SIZE:])
                    buf.clear()
                    return message
            else:
                want = _LENGTH_SIZE - len(buf)
            try:
                chunk = await self.stream.receive_some(want)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionLostError(
                    f"the connection broke while receiving: {_describe(exc)}"
                ) from exc
            if not chunk:
                if buf:
                    raise RemoteProtocolError(
                        "the peer closed the connection in the middle of a noise message"
                    )
                return None
            buf += chunk
            self.received += len(chunk)


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


class _Noise:
    """A typed face for the (untyped) noiseprotocol connection."""

    __slots__ = ("_conn", "_state")

    def __init__(self, static_private: bytes, *, initiator: bool) -> None:
        conn: Any = NoiseConnection.from_name(NOISE_PROTOCOL)
        conn.set_prologue(PROLOGUE)
        conn.set_keypair_from_private_bytes(Keypair.STATIC, static_private)
        if initiator:
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        conn.start_handshake()
        self._conn = conn
        # Noise drops its handshake state, remote static key included, as the
        # handshake ends: keep a reference to read `rs` after the last message.
        self._state: Any = conn.noise_protocol.handshake_state

    @property
    def finished(self) -> bool:
        return bool(self._conn.handshake_finished)

    def write(self, payload: bytes = b"") -> bytes:
        """The next handshake message.  Raises HandshakeError if the peer's key is bad."""
        try:
            return bytes(self._conn.write_message(payload))
        except Exception as exc:  # a DH with a bad (low-order) remote key raises ValueError
            raise HandshakeError(f"cannot answer the peer's handshake ({_describe(exc)})") from None

    def read(self, message: bytes) -> bytes:
        """A handshake message's payload.  Raises HandshakeError if it is bad."""
        try:
            return bytes(self._conn.read_message(message))
        except Exception as exc:  # noise's own errors, InvalidTag, ValueError: all "bad bytes"
            raise HandshakeError(f"bad noise handshake message ({_describe(exc)})") from None

    def remote_static(self) -> bytes:
        public = getattr(self._state.rs, "public_bytes", None)
        if not isinstance(public, bytes) or len(public) != _DH_SIZE:
            raise HandshakeError("the handshake gave no remote static key")
        return public

    def encrypt(self, plaintext: bytes) -> bytes:
        return bytes(self._conn.encrypt(plaintext))

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext.  Raises RemoteProtocolError if authentication fails."""
        try:
            return bytes(self._conn.decrypt(ciphertext))
        except NoiseInvalidMessage:
            raise RemoteProtocolError(
                "a noise message failed authentication (corrupted, or not from the peer)"
            ) from None


class SecureChannel(trio.abc.AsyncResource):
    """An authenticated, encrypted frame channel; made by `secure_handshake`.

    Any number of tasks may call `send_frame` at once; only one task at a
    time may call `receive_frame` (a second one gets trio.BusyResourceError).
    Both are safe to cancel, but a cancelled *send* leaves the stream in an
    unknown state, so every later send raises ConnectionLostError.
    """

    def __init__(
        self, wire: _Wire, noise: _Noise, *, remote_id: bytes, initiator: bool, max_frame: int
    ) -> None:
        self.remote_id = remote_id
        self.initiator = initiator
        self.max_frame = max_frame
        self._wire = wire
        self._noise = noise
        self._reader = FrameReader(max_size=max_frame)
        self._send_lock = trio.Lock()
        self._send_broken = False
        self._receiving = False
        self._receive_failure: str | None = None
        self._closed = False

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the stream, handshake and Noise overhead included."""
        return self._wire.sent

    @property
    def bytes_received(self) -> int:
        """Bytes read from the stream, handshake and Noise overhead included."""
        return self._wire.received

    async def send_frame(self, payload: bytes) -> None:
        """Send one frame.

        Raises:
            UsageError: the payload is over MAX_FRAME_SIZE or this channel's
                `max_frame` (the limit holds both ways).
            ConnectionLostError: the stream broke or was closed.
        """
        frame = encode_frame(payload)
        if len(payload) > self.max_frame:
            raise UsageError(
                f"a {len(payload)}-byte frame is over this channel's limit of {self.max_frame}"
            )
        await self._send_plaintext(frame)

    async def _send_plaintext(self, data: bytes) -> None:
        """Encrypt and send raw plaintext stream bytes (whole frames, except in tests)."""
        async with self._send_lock:
            if self._send_broken:
                raise ConnectionLostError("an earlier send failed or was cancelled midway")
            try:
                for start in range(0, len(data), MAX_CHUNK):
                    await self._wire.send(self._noise.encrypt(data[start : start + MAX_CHUNK]))
            except BaseException:
                self._send_broken = True  # the nonces and the wire may now disagree
                raise

    async def receive_frame(self) -> bytes | None:
        """The next frame's payload, or None if the peer closed the stream cleanly.

        Raises:
            RemoteProtocolError: a message failed authentication, a frame is
                over `max_frame`, or the stream ended in the middle of a frame.
                The channel stays failed: later calls raise it again.
            ConnectionLostError: the stream broke or was closed.
            trio.BusyResourceError: another task is receiving.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this channel")
        if self._receive_failure is not None:
            raise RemoteProtocolError(f"the channel failed earlier: {self._receive_failure}")
        self._receiving = True
        try:
            return await self._receive_frame()
        except RemoteProtocolError as exc:
            self._receive_failure = str(exc)
            raise
        finally:
            self._receiving = False

    async def _receive_frame(self) -> bytes | None:
        reader = self._reader
        while True:
            frame = reader.next_frame()
            if frame is not None:
                return frame
            message = await self._wire.receive(MAX_NOISE_MESSAGE)
            if message is None:
                if not reader.at_boundary():
                    raise RemoteProtocolError(
                        "the peer closed the connection in the middle of a frame"
                        f" ({reader.buffered} bytes of it received)"
                    )
                log.debug("%s closed the channel", peer_id_text(self.remote_id)[:12])
                return None
            plaintext = self._noise.decrypt(message)
            if not plaintext:
                raise RemoteProtocolError("the peer sent an empty noise transport message")
            reader.feed(plaintext)

    async def aclose(self) -> None:
        """Close the underlying stream.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._wire.stream.aclose()


def _identity_payload(identity: Identity, static_public: bytes) -> bytes:
    """The handshake payload proving that `static_public` speaks for `identity`."""
    return codec.dumps(
        {
            "v": _PAYLOAD_VERSION,
            "id": identity.peer_id,
            "sig": identity.sign(_SIGNATURE_CONTEXT + static_public),
        }
    )


def _check_identity_payload(
    payload: bytes, remote_static: bytes, identity: Identity, expect: bytes | None
) -> bytes:
    """The remote's peer ID, proven by `payload`.  Raises HandshakeError."""
    try:
        m = codec.check_keys(
            codec.loads(payload, max_size=_MAX_HANDSHAKE_MESSAGE), _PAYLOAD_KEYS, "identity payload"
        )
        version = codec.get_int(m, "v", 0, 2**64 - 1)
        if version != _PAYLOAD_VERSION:
            raise HandshakeError(
                f"the peer's identity payload is version {version}; we speak {_PAYLOAD_VERSION}"
            )
        peer_id = codec.get_bytes(m, "id", size=PEER_ID_SIZE)
        signature = codec.get_bytes(m, "sig", size=SIGNATURE_SIZE)
    except codec.CBORFormatError as exc:
        where = f" ({exc.field})" if exc.field else ""
        raise HandshakeError(f"bad identity payload{where}: {exc}") from None
    if not verify_signature(peer_id, signature, _SIGNATURE_CONTEXT + remote_static):
        raise HandshakeError(
            f"the peer claims to be {peer_id_text(peer_id)} but its signature over"
            " its noise static key does not verify"
        )
    if peer_id == identity.peer_id:
        raise SelfConnectionError("the peer presented our own peer ID")
    if expect is not None and peer_id != expect:
        raise HandshakeError(
            f"expected peer {peer_id_text(expect)}, but the peer is {peer_id_text(peer_id)}"
        )
    return peer_id


async def _receive_handshake_message(wire: _Wire) -> bytes:
    try:
        message = await wire.receive(_MAX_HANDSHAKE_MESSAGE)
    except RemoteProtocolError as exc:
        raise HandshakeError(str(exc)) from None
    if message is None:
        raise HandshakeError("the peer closed the connection during the handshake")
    return message


async def _handshake(
    wire: _Wire, identity: Identity, *, initiator: bool, expect: bytes | None
) -> tuple[_Noise, bytes]:
    static = X25519PrivateKey.generate()
    static_public = static.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    noise = _Noise(
        static.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ),
        initiator=initiator,
    )
    if initiator:
        await wire.send(noise.write())  # -> e
        payload = noise.read(await _receive_handshake_message(wire))  # <- e, ee, s, es
        mine = _identity_payload(identity, static_public)
        try:
            remote_id = _check_identity_payload(payload, noise.remote_static(), identity, expect)
        except SelfConnectionError:
            # We dialed ourselves: our other end learns it only from message 3, so it
            # is sent, and neither end takes the other for a peer breaking the handshake.
            await wire.send(noise.write(mine))
            raise
        await wire.send(noise.write(mine))  # -> s, se
    else:
        first = await _receive_handshake_message(wire)  # -> e, with an empty payload
        if len(first) != _DH_SIZE:
            raise HandshakeError(
                f"the first handshake message is {len(first)} bytes, not {_DH_SIZE}"
            )
        noise.read(first)
        await wire.send(noise.write(_identity_payload(identity, static_public)))
        payload = noise.read(await _receive_handshake_message(wire))
        remote_id = _check_identity_payload(payload, noise.remote_static(), identity, expect)
    if not noise.finished:  # pragma: no cover - XX always ends after three messages
        raise HandshakeError("the noise handshake did not finish")
    return noise, remote_id


async def secure_handshake(
    stream: trio.abc.Stream,
    identity: Identity,
    *,
    initiator: bool,
    expect: bytes | None = None,
    timeout: float = HANDSHAKE_TIMEOUT,  # noqa: ASYNC109 - a peer's deadline, not the caller's
    max_frame: int = MAX_FRAME_SIZE,
) -> SecureChannel:
    """Run the Noise XX handshake on `stream` and return the secure channel.

    `expect`, if given, is the peer ID the remote must prove.  `max_frame`
    bounds frames both ways.  The initiator is done once it sends the last
    message: if the responder refuses that, the initiator sees the stream
    close.  If the handshake fails (or is cancelled) the stream is closed
    before the error propagates.  Expecting our own ID is allowed, and fails
    as a handshake with ourselves does.

    Raises:
        HandshakeError: garbage, a bad or unexpected identity, an EOF, or no
            complete handshake within `timeout` seconds.
        ConnectionLostError: the stream broke (or was closed) under us.
        UsageError: `expect` is not 32 bytes, or `max_frame` is negative
            (raised before the handshake starts; the stream is left open).
    """
    if expect is not None and len(expect) != PEER_ID_SIZE:
        raise UsageError(f"expect must be a {PEER_ID_SIZE}-byte peer ID, not {len(expect)} bytes")
    if max_frame < 0:
        raise UsageError(f"max_frame must not be negative, not {max_frame}")
    role = "initiator" if initiator else "responder"
    wire = _Wire(stream)
    try:
        with trio.move_on_after(timeout) as scope:
            noise, remote_id = await _handshake(wire, identity, initiator=initiator, expect=expect)
        if scope.cancelled_caught:
            raise HandshakeTimeoutError(f"the noise handshake timed out after {timeout:g} s")
    except BaseException as exc:
        log.debug("handshake as %s failed: %s", role, _describe(exc))
        await trio.aclose_forcefully(stream)
        raise
    log.debug("handshake as %s done: the peer is %s", role, peer_id_text(remote_id)[:12])
    return SecureChannel(wire, noise, remote_id=remote_id, initiator=initiator, max_frame=max_frame)
