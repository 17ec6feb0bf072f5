"""Regressions found by fuzzing the decoders (issue 14, part 3): one test per crasher.

Each test holds the input that crashed: the exact bytes where they are short,
and for store files the corruption itself, written into a real store with SQL
(the fuzzer's mutated files are 86 KB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pttsync.core.identity import Identity
from pttsync.errors import IdentityError

if TYPE_CHECKING:
    from pathlib import Path

# ---------------------------------------------------------------------------
# Regressions: key files.

# PKCS#8 with the X448 OID (1.3.101.111) on a 32-byte key: a bit flip of pttsync's own
# Ed25519 key file.  OpenSSL refused it with cryptography's InternalError.
X448_OID_ON_ED25519_KEY = (
    b"-----BEGIN PRIVATE KEY-----\n"
    b"MC4CAQAwBQYDK2VvBCIEIGtra2tra2tra2tra2tra2tra2tra2tra2tra2tra2tr\n"
    b"-----END PRIVATE KEY-----\n"
)


def test_regression_key_file_openssl_internal_error_is_identity_error(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(X448_OID_ON_ED25519_KEY)
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not a valid private key"):
        Identity.load(path)
