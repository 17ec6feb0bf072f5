"""A simulated peer across its incarnations, and the peers that are up, by index.

The world (world.py) starts and stops peers; each start picks a few peers
that are up to join.  With 10,000 peers, finding those by a scan of every
peer at each start cost the setup the square of the peers (about a minute
at 10,000), so `LivePeers` keeps them in order as they come and go.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .observe import PeerSample

if TYPE_CHECKING:
    import trio

    from ..core.identity import Identity
    from ..core.store import Store
    from ..net.node import Node
    from .observe import Probe

PORT = 7400


def name_of(peer: int) -> str:
    return f"peer{peer}"


@dataclass(slots=True, eq=False)  # one object per peer: `in` and `==` by identity, fast
class Peer:
    """One simulated peer across its incarnations."""

    index: int
    identity: Identity
    store: Store
    probe: Probe
    state: str = "new"  # new, up, down, left
    node: Node | None = None
    scope: trio.CancelScope | None = None
    incarnation: int = 0
    rounds: int = 0  # completed sync rounds of its earlier incarnations
    violations: int = 0  # connections it closed for protocol violations, all incarnations
    internal_errors: int = 0  # connections it closed because of a bug of ours, likewise
    sample: PeerSample = field(default_factory=PeerSample)

    @property
    def name(self) -> str:
        return name_of(self.index)

    @property
    def address(self) -> str:
        return f"{self.name}:{PORT}"

    @property
    def up(self) -> bool:
        return self.state == "up" and self.node is not None


def _index(peer: Peer) -> int:
    return peer.index


class LivePeers:
    """The peers that are up, in the order of their indexes.

    `mark_up` and `mark_down` are the only ways a peer's state changes, so
    `peers` is always exactly the peers in state "up": those whose `up` holds,
    and in a split run those the other process runs (parts.py)."""

    def __init__(self) -> None:
        self._up: list[Peer] = []

    @property
    def peers(self) -> list[Peer]:
        """The list itself (not a copy): read it, never change it."""
        return self._up

    def mark_up(self, peer: Peer, node: Node | None) -> None:
        """`node`: the peer's node, or None if another process runs it (parts.py)."""
        assert peer.state != "up", f"{peer.name} is already up"
        peer.node, peer.state = node, "up"
        bisect.insort(self._up, peer, key=_index)

    def mark_down(self, peer: Peer, state: str) -> None:
        """`state`: down (crashed) or left; the node and its scope are forgotten."""
        if peer.state == "up":
            i = bisect.bisect_left(self._up, peer.index, key=_index)
            assert self._up[i] is peer
            del self._up[i]
        peer.node, peer.scope, peer.state = None, None, state
