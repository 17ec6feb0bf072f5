"""Bounded tables of results of pure functions, oldest forgotten first.

Several checks of the core are pure functions of their input (a role
payload's meaning, a document payload's well-formedness, a governance
fold), asked again and again for the same input: by every replica of a
process, and by every simulated peer.  `remember` keeps a result in a
plain dict (insertion ordered) and drops the oldest entry once the table
is over its limit, so memory stays bounded whatever the input.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, limit: int) -> V:
    """Store `value` under `key`, forget the oldest entries over `limit`; return `value`."""
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]
    return value
