"""What `pttsync peers` shows: who is connected, who is not and why, who was refused.

Three groups, JSON-ready:

* `connected`: the admitted peers (NodeAPI.peers has their fields);
* `known`: the addresses in the address book (addressbook.py) with no
  connection now: each with its peer ID if known, whether it was given
  with `--join`, its failures, its last error and when, and when it will be
  dialed next.  Syncthing shows each device's state the same way; an
  operator reads here why `--join` did not work ("Connection refused",
  "Name or service not known", "the peer said: not a member ...");
* `refused`: the peers the door turned back in the last hour
  (refusals.py), with the full peer ID a master passes to
  `pttsync member add`, the reason, and how often.

Times are given both as ISO 8601 (UTC) and as seconds from now; the
address book keeps trio's clock, turned into wall-clock time here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..core.identity import peer_id_text
from ..core.timeutil import NS_PER_SECOND, to_iso

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .addressbook import AddressBook, Entry
    from .peer import PeerLink
    from .refusals import Refusals


def by_connection(
    book: AddressBook, links: Mapping[bytes, PeerLink], me: bytes, own: str | None
) -> tuple[list[Entry], list[Entry]]:
    """The book's entries with a connection now, and those without (this node's own
    address in neither): for `pttsync peers`, `status` and the metrics alike."""
    linked = {ln.address for ln in links.values()} | {ln.listen for ln in links.values()}
    connected: list[Entry] = []
    rest: list[Entry] = []
    for e in book.entries():
        if e.peer_id != me and e.address != own:
            (connected if e.address in linked or e.peer_id in links else rest).append(e)
    return connected, rest


def unconnected(
    book: AddressBook, links: Mapping[bytes, PeerLink], me: bytes, own: str | None
) -> list[Entry]:
    """The book's entries with no connection now (not this node's own address)."""
    return by_connection(book, links, me, own)[1]


def known_json(entries: list[Entry], now: float, wall: int) -> list[dict[str, Any]]:
    """`entries` (trio time `now`, wall clock `wall` ns), the --join ones first."""

    def at(t: float) -> str:
        return to_iso(wall + round((t - now) * NS_PER_SECOND))

    out = []
    for e in sorted(entries, key=lambda e: (not e.pinned, -e.failures, e.address)):
        due = None if math.isinf(e.next_try) else max(0.0, e.next_try - now)
        out.append(
            {
                "address": e.address,
                "peer_id": None if e.peer_id is None else peer_id_text(e.peer_id),
                "join": e.pinned,
                "ever_connected": e.connected_once,
                "failures": e.failures,
                "last_error": e.last_error or None,
                "last_error_at": None if e.last_error_at is None else at(e.last_error_at),
                "last_error_ago_s": (
                    None if e.last_error_at is None else round(now - e.last_error_at, 3)
                ),
                "next_try_in_s": None if due is None else round(due, 3),
                "next_try_at": None if due is None else at(e.next_try),
            }
        )
    return out


def refused_json(refusals: Refusals, wall: int) -> list[dict[str, Any]]:
    """The refusals of the last hour, the most recent first."""
    return [
        {
            "peer_id": peer_id_text(r.peer_id),
            "address": r.address,
            "reason": r.reason,
            "kind": r.kind,
            "times": r.count,
            "first_at": to_iso(r.first),
            "last_at": to_iso(r.last),
            "last_ago_s": round((wall - r.last) / NS_PER_SECOND, 3),
        }
        for r in refusals.recent(wall)
    ]
