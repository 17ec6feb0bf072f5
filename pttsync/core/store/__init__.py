"""The store: a topic's oplogs by status, with its Merkle tree, behind the `Store` protocol.

Exports the protocol and its values.  Its implementations, `sqlite.SqliteStore` (durable)
and `memory.MemoryStore` (the simulator's), are imported only by the code that picks one.
"""

from __future__ import annotations

from .protocol import (
    MAX_FAILED,
    BatchResult,
    Damage,
    FailedOplog,
    Store,
    StoredOplog,
    check_hex_prefix,
    newest_failed_first,
)

__all__ = [
    "MAX_FAILED",
    "BatchResult",
    "Damage",
    "FailedOplog",
    "Store",
    "StoredOplog",
    "check_hex_prefix",
    "newest_failed_first",
]
