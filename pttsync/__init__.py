"""pttsync: a peer-to-peer oplog sync engine after PTT.ai's PIP-11.

The public API is what this module re-exports.
"""

from __future__ import annotations

__version__ = "0.1.0"
