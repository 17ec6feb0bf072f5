"""Documents: keyed values derived from a topic's document oplogs, conflicts kept for the app.

Exports `DocumentStore` (the application's API over a `Replica`), its `Change` and
`Write`, and the pure derivation's `DocState`, `Version`, `Merged` and `Resolver`.
"""

from __future__ import annotations

from .derive import DocState, Merged, Resolver, Version, derive
from .docstore import Change, ChangeKind, DocumentStore, Write, WriteStatus

__all__ = [
    "Change",
    "ChangeKind",
    "DocState",
    "DocumentStore",
    "Merged",
    "Resolver",
    "Version",
    "Write",
    "WriteStatus",
    "derive",
]
