"""Ed25519 identities, peer IDs and the key file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.core.identity import Identity, parse_peer_id, peer_id_text, verify_signature
from pttsync.errors import IdentityError, UsageError


def test_peer_id_is_the_public_key_and_round_trips_as_text() -> None:
    me = Identity.generate()
    assert len(me.peer_id) == 32
    assert len(me.text) == 52
    assert parse_peer_id(me.text) == me.peer_id
    assert parse_peer_id(me.text.upper()) == me.peer_id
    assert peer_id_text(me.peer_id) == me.text


@pytest.mark.parametrize("text", ["", "not base32!", "aaaa", "a" * 60])
def test_parse_peer_id_rejects_junk(text: str) -> None:
    with pytest.raises(UsageError):
        parse_peer_id(text)


def test_signatures_verify_only_for_the_right_key_and_message() -> None:
    me, other = Identity.generate(), Identity.generate()
    sig = me.sign(b"hello")
    assert verify_signature(me.peer_id, sig, b"hello")
    assert not verify_signature(me.peer_id, sig, b"hellO")
    assert not verify_signature(other.peer_id, sig, b"hello")
    assert not verify_signature(me.peer_id, sig[:-1], b"hello")
    assert not verify_signature(b"\x00" * 31, sig, b"hello")


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300), st.integers(0, 64 * 8 - 1))
def test_property_libsodium_and_openssl_agree_on_honest_and_tampered_signatures(
    seed: bytes, message: bytes, bit: int
) -> None:
    """We verify with libsodium and sign with OpenSSL (`cryptography`): both must agree."""
    me = Identity.from_seed(seed)
    sig = me.sign(message)
    key = Ed25519PublicKey.from_public_bytes(me.peer_id)
    key.verify(sig, message)  # OpenSSL accepts it ...
    assert verify_signature(me.peer_id, sig, message)  # ... and so does libsodium
    bad = bytearray(sig)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidSignature):
        key.verify(bytes(bad), message)
    assert not verify_signature(me.peer_id, bytes(bad), message)
    assert not verify_signature(me.peer_id, sig, message + b"x")


def test_small_order_keys_are_refused() -> None:
    """libsodium refuses a small-order public key, whatever the signature."""
    identity_point = (1).to_bytes(32, "little")
    assert not verify_signature(identity_point, bytes(64), b"anything")


def test_from_seed_is_deterministic() -> None:
    assert Identity.from_seed(b"s" * 32).peer_id == Identity.from_seed(b"s" * 32).peer_id
    with pytest.raises(UsageError):
        Identity.from_seed(b"short")


def test_key_file_round_trip_is_owner_only(tmp_path: Path) -> None:
    me = Identity.generate()
    path = tmp_path / "identity.key"
    me.save(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Identity.load(path).peer_id == me.peer_id
    assert not (tmp_path / "identity.key.tmp").exists()


def test_save_never_replaces_a_key(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    first = Identity.generate()
    first.save(path)
    with pytest.raises(IdentityError, match="already exists"):
        Identity.generate().save(path)
    assert Identity.load(path).peer_id == first.peer_id


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(IdentityError, match="no key file"):
        Identity.load(tmp_path / "nope.key")


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    os.chmod(path, 0o644)
    with pytest.raises(IdentityError, match="chmod 600"):
        Identity.load(path)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"garbage",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        b"x" * 10000,
    ],
)
def test_bad_key_file_is_a_clear_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(content)
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="key file"):
        Identity.load(path)


def test_key_file_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "identity.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not an Ed25519 key"):
        Identity.load(path)
