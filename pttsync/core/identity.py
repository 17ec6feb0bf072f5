"""Ed25519 identities: keys, peer IDs and the key file.

A peer ID *is* the 32-byte Ed25519 public key, so every ID is
self-certifying: a signature can be checked from the ID alone, with no key
exchange and no lookup.  Its text form is the lowercase, unpadded RFC 4648
base32 of those bytes (52 characters).

The private key lives in one file, PEM-encoded PKCS#8, created with mode 0600.
Loading refuses a key file that group or others can read, the way ssh does.
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
import tempfile
from pathlib import Path

from cryptography.exceptions import InternalError, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ..errors import IdentityError, UsageError

PEER_ID_SIZE = 32
SIGNATURE_SIZE = 64


def peer_id_text(peer_id: bytes) -> str:
    """The text form of a raw peer ID."""
    return base64.b32encode(peer_id).decode("ascii").rstrip("=").lower()


def parse_peer_id(text: str) -> bytes:
    """Parse the text form of a peer ID.

    Raises:
        UsageError: the text is not a base32 peer ID of the right length.
    """
    cleaned = text.strip().upper()
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError):
        raise UsageError(f"{text!r} is not a peer ID (base32 text)") from None
    if len(raw) != PEER_ID_SIZE:
        raise UsageError(f"{text!r} is not a peer ID: it decodes to {len(raw)} bytes, not 32")
    if peer_id_text(raw) != cleaned.lower():
        raise UsageError(f"{text!r} is not a peer ID (non-canonical base32)")
    return raw


def verify_signature(peer_id: bytes, signature: bytes, message: bytes) -> bool:
    """True if `signature` is `peer_id`'s Ed25519 signature of `message`.

    Verified with libsodium (PyNaCl), about 1.7 times as fast as OpenSSL's
    here, and it releases the GIL, so worker threads verify in parallel.  Keys
    are made and records signed with `cryptography`; every honest signature
    verifies under both.  libsodium is the stricter of the two (it refuses
    small-order keys and non-canonical encodings), and every peer uses it, so
    all peers judge every signature alike (docs/pip-11/deviations.md).
    """
    if len(peer_id) != PEER_ID_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        crypto_sign_open(signature + message, peer_id)
    except BadSignatureError:
        return False
    return True


class Identity:
    """An Ed25519 key pair: a peer's (or a user's, or a device's) identity."""

    __slots__ = ("_key", "peer_id")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.peer_id: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """A deterministic identity from a 32-byte seed (for tests and simulation)."""
        if len(seed) != 32:
            raise UsageError(f"an Ed25519 seed is 32 bytes, not {len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def text(self) -> str:
        return peer_id_text(self.peer_id)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"<Identity {self.text[:12]}>"

    # -- the key file ----------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the private key to a new file readable by its owner only.

        Raises:
            IdentityError: the file already exists or cannot be written.
        """
        pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        try:
            # mkstemp creates a new file (O_EXCL, mode 0600) with a fresh name: a stale
            # or planted temporary file can neither widen the mode nor redirect the key.
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        except OSError as exc:
            raise IdentityError(f"cannot write key file {path}: {exc.strerror}") from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(pem)
                f.flush()
                os.fsync(f.fileno())
            # link() fails if the target exists: an existing key is never replaced.
            os.link(tmp, path)
        except FileExistsError:
            raise IdentityError(f"key file {path} already exists; refusing to replace it") from None
        except OSError as exc:
            raise IdentityError(f"cannot write key file {path}: {exc.strerror}") from None
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key file written by `save`.

        Raises:
            IdentityError: the file is missing, readable by group or others,
                or not an unencrypted PEM Ed25519 private key.
        """
        try:
            st = path.stat()
        except FileNotFoundError:
            raise IdentityError(f"no key file at {path}") from None
        except OSError as exc:
            raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
        if not stat.S_ISREG(st.st_mode):
            raise IdentityError(f"key file {path} is not a regular file")
        if os.name == "posix" and st.st_mode & 0o077:
            raise IdentityError(
                f"key file {path} is readable by others (mode {stat.S_IMODE(st.st_mode):o});"
                f" run: chmod 600 {path}"
            )
        if st.st_size > 4096:
            raise IdentityError(f"key file {path} is {st.st_size} bytes: not a pttsync key file")
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise IdentityError(f"key file {path} is not a valid private key ({exc})") from None
        except InternalError:
            # OpenSSL refuses some malformed keys (an X448 key of 32 bytes) with what
            # cryptography calls an internal error: still a file that holds no valid key.
            raise IdentityError(f"key file {path} is not a valid private key") from None
        except OSError as exc:
            raise IdentityError(f"cannot read key file {path}: {exc.strerror}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"key file {path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key)
