"""Documents: keyed values derived from a topic's document oplogs, conflicts kept for the app.

Exports `DocumentStore` (the application's API over a `Replica`), its `Change` and
`Write`, the pure derivation's `DocState`, `Version`, `Merged` and `Resolver`, and a
document's `History` of `HistoryEntry`s.
"""

from __future__ import annotations

from .derive import DocState, Merged, Resolver, Version, derive
from .docstore import Change, ChangeKind, DocumentStore, Write, WriteStatus
from .history import History, HistoryEntry, Resolution, history

__all__ = [
    "Change",
    "ChangeKind",
    "DocState",
    "DocumentStore",
    "History",
    "HistoryEntry",
    "Merged",
    "Resolution",
    "Resolver",
    "Version",
    "Write",
    "WriteStatus",
    "derive",
    "history",
]
