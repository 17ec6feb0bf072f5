"""The lifecycle: a topic's governance, the status rules, and PIP-11's three Handle steps.

Exports `Replica` (governance and write path), `OplogHandler` (HandleOplogs,
HandlePendingOplogs, HandleFailedOplogs), `HandleResult` and `Governance`.
"""

from __future__ import annotations

from .governance import Governance, Role
from .handle import ForeignTopicError, HandleResult, OplogHandler
from .pending import handle_failed
from .replica import Commit, Observer, Replica, found_topic

__all__ = [
    "Commit",
    "ForeignTopicError",
    "Governance",
    "HandleResult",
    "Observer",
    "OplogHandler",
    "Replica",
    "Role",
    "found_topic",
    "handle_failed",
]
