"""Seeds of the text and file formats: invite tokens, key files, control-socket requests.

Deterministic like the rest of the corpus: the Ed25519 key file is the one
pttsync writes (`Identity.save`) for a fixed seed; the keys it must refuse
(X25519, Ed448, ECDSA in two formats, RSA, an encrypted key, a public key)
come from fixed numbers too.
"""

from __future__ import annotations

import base64
import functools
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519

from pttsync.core.identity import Identity
from pttsync.core.topic import topic_token
from pttsync.net.controlwire import encode_line

from .corpus import MEMBER, TID, TOPIC, TOPIC2

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

PKCS8 = serialization.PrivateFormat.PKCS8


def token_seeds() -> list[bytes]:
    return [topic_token(t).encode() for t in (TOPIC, TOPIC2)]


# An Ed25519 key encrypted with the password "secret" (PKCS#8, PBES2 with AES-256): fixed
# bytes, since each encryption draws a random salt and IV and the corpus is deterministic.
ENCRYPTED_ED25519 = bytes.fromhex(
    "3081a3305f06092a864886f70d01050d3052303106092a864886f70d01050c302404106e87d1df3b194f4888"
    "b306e2cd63961702020800300c06082a864886f70d02090500301d060960864801650304012a0410576ada63"
    "6ba4cb28cd8493fb82d7d77c0440cb0c5c5d7e9d3a1ba9ea4c9e636dd9511cccdbdc8ec2d8076fcfcfa12ce9"
    "aa5ef1b899f917d24927e46df57ca33cbf125d8511769381a694944484a9aad2e3ce"
)


def armor(label: str, der: bytes) -> bytes:
    """PEM: the DER in base64, 64 characters a line, between BEGIN and END lines."""
    body = base64.b64encode(der)
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return b"\n".join(
        [f"-----BEGIN {label}-----".encode(), *lines, f"-----END {label}-----\n".encode()]
    )


def _pem(key: PrivateKeyTypes, fmt: serialization.PrivateFormat = PKCS8) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


def _prime(start: int) -> int:
    """The first probable prime from `start` on (fixed Miller-Rabin bases: deterministic)."""
    n = start | 1
    while True:
        d, r = n - 1, 0
        while d % 2 == 0:
            d, r = d // 2, r + 1
        for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47):
            x = pow(a, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(r - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            return n
        n += 2


def _rsa() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key from fixed primes (generating one would make the corpus random)."""
    p, q, e = _prime(0xC0FFEE << 488), _prime(0xBEEF << 496), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    public = rsa.RSAPublicNumbers(e, p * q)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), public
    )
    return numbers.private_key()


@functools.cache
def key_file_seeds() -> list[bytes]:
    """The key file pttsync writes, and other PEM keys it must refuse cleanly."""
    with tempfile.TemporaryDirectory(prefix="pttsync-corpus-") as tmp:
        path = Path(tmp) / "identity.key"
        Identity.from_seed(b"k" * 32).save(path)
        ours = path.read_bytes()
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(b"e" * 32)
    ecdsa = ec.derive_private_key(12345678901234567890, ec.SECP256R1())
    return [
        ours,
        armor("ENCRYPTED PRIVATE KEY", ENCRYPTED_ED25519),
        _pem(x25519.X25519PrivateKey.from_private_bytes(b"x" * 32)),
        _pem(ed448.Ed448PrivateKey.from_private_bytes(b"4" * 57)),
        _pem(ecdsa),
        _pem(ecdsa, serialization.PrivateFormat.TraditionalOpenSSL),
        _pem(_rsa()),
        ed.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    ]


def control_seeds() -> list[bytes]:
    """One request line (its newline stripped, as the server's LineReader does) per op."""
    tid = TID.hex()
    requests: list[dict[str, object]] = [
        {"op": "ping"},
        {"op": "status"},
        {"op": "peers"},
        {"op": "put", "key": "doc", "value": {"a": [1, 2.5, None, True, "x"]}, "topic": tid},
        {"op": "get", "key": "doc"},
        {"op": "delete", "key": "doc", "topic": tid[:8]},
        {"op": "list", "prefix": "do", "after": "a", "limit": 10, "deleted": True, "topic": tid},
        {"op": "member", "peer_id": MEMBER.text, "role": "master", "topic": tid},
        {"op": "watch", "topic": tid},
        {"op": "hello", "v": 1},
        {"op": "peer_view"},
        {"op": "members", "topic": tid},
        {"op": "history", "key": "doc", "limit": 5, "topic": tid, "v": 1},
        {"op": "put", "key": "b", "value": {"$bytes": "AAEC"}},
    ]
    return [encode_line(r)[:-1] for r in requests] + [json.dumps({"op": "ping"}).encode()]
