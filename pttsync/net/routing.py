"""Where a topic's pushes go: the push mesh, and the way to the nearest master.

Flooding every push to every connected peer costs each node a copy of each
oplog from most of its peers (with 16 connections, about 7 copies of every
write in the simulator's measurements).  So, as libp2p's gossipsub does, each
node pushes valid oplogs over a *mesh*: every node picks `mesh_size` of its
connections (3 by default) and tells those peers so; a link is in the mesh
when either end picked it, and both ends push over it.  Each node thus has
at least `mesh_size` mesh links (when it has that many connections), the
mesh of a few thousand nodes stays connected, and a write reaches every node
in a few more hops than flooding, at under half the copies.  Anti-entropy
repairs whatever the mesh misses.

Pending oplogs need a master's signature, and a member is rarely connected
to a master.  Rather than relay them to every peer (a second flood of every
member's write), each node keeps its distance in hops to the nearest master
(0 for a master, else one more than its nearest peer's, at most MAX_HOPS:
a distance-vector route, as RIP keeps one) and passes pending oplogs
downhill, one peer at a time.  Where no master is reachable at all (a
partition, the masters offline) they wait, and are routed again on each
anti-entropy tick until a way opens; a master that has signed and needs
another master's signature pushes them over the mesh.

Both facts travel in one small `Route` message (topic, hops, mesh), sent to
a peer when either changes.  The `Routes` object is sans-I/O: it says what
to send; the topic runtime sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

from .wire import MAX_HOPS

__all__ = ["DEFAULT_MESH", "MAX_HOPS", "Routes"]

DEFAULT_MESH = 3


@dataclass(slots=True)
class _Peer:
    hops: int = MAX_HOPS  # what the peer says its distance to a master is
    theirs: bool = False  # the peer put this link in its mesh
    mine: bool = False  # we put this link in our mesh
    told: tuple[int, bool] | None = None  # the (hops, mine) we last told it


class Routes:
    """One topic's push mesh and master distances over the connected member peers."""

    def __init__(self, mesh_size: int, rng: random.Random) -> None:
        self.mesh_size = mesh_size  # 0: no mesh, push to every peer
        self.rng = rng
        self.master = False  # this node is a master of the topic
        self._peers: dict[bytes, _Peer] = {}
        self.version = 0  # changes whenever `in_mesh` may answer otherwise

    def __len__(self) -> int:
        return len(self._peers)

    # -- what we know --------------------------------------------------------------

    def hops(self) -> int:
        """This node's distance to the nearest master."""
        if self.master:
            return 0
        nearest = min((p.hops for p in self._peers.values()), default=MAX_HOPS)
        return min(MAX_HOPS, nearest + 1)

    def in_mesh(self, peer_id: bytes) -> bool:
        if self.mesh_size == 0:
            return True
        p = self._peers.get(peer_id)
        return p is not None and (p.mine or p.theirs)

    def mesh(self) -> list[bytes]:
        return [k for k, p in self._peers.items() if self.mesh_size == 0 or p.mine or p.theirs]

    def downhill(self) -> list[bytes]:
        """Peers nearer to a master than this node, nearest first (ties by peer ID)."""
        mine = self.hops()
        near = [(p.hops, k) for k, p in self._peers.items() if p.hops < mine]
        return [k for _, k in sorted(near)]

    # -- what happens ----------------------------------------------------------------

    def add(self, peer_id: bytes) -> None:
        """A member peer connected: pick it for the mesh if ours is not full yet."""
        if peer_id in self._peers:
            return
        self.version += 1
        p = self._peers[peer_id] = _Peer()
        if self.mesh_size and self._chosen() < self.mesh_size:
            p.mine = True

    def remove(self, peer_id: bytes) -> None:
        """A peer went away: if it was one of ours, pick another for the mesh."""
        p = self._peers.pop(peer_id, None)
        self.version += 1
        if p is None or not p.mine or not self.mesh_size:
            return
        while self._chosen() < self.mesh_size:
            spare = sorted(k for k, q in self._peers.items() if not q.mine)
            if not spare:
                return
            fresh = [k for k in spare if not self._peers[k].theirs] or spare
            self._peers[self.rng.choice(fresh)].mine = True

    def heard(self, peer_id: bytes, hops: int, mesh: bool) -> None:
        """A peer's Route message."""
        p = self._peers.get(peer_id)
        if p is not None:
            p.hops, p.theirs = min(hops, MAX_HOPS), mesh
            self.version += 1

    def set_master(self, master: bool) -> None:
        self.master = master

    def untold(self, peer_id: bytes) -> None:
        """What `news` gave for this peer could not be sent: give it again next time."""
        p = self._peers.get(peer_id)
        if p is not None:
            p.told = None

    def news(self) -> list[tuple[bytes, int, bool]]:
        """(peer, hops, mesh) for every peer not yet told what it should know now."""
        hops = self.hops()
        out = []
        for k, p in self._peers.items():
            state = (hops, p.mine)
            if p.told != state:
                p.told = state
                out.append((k, hops, p.mine))
        return out

    def _chosen(self) -> int:
        return sum(1 for p in self._peers.values() if p.mine)
