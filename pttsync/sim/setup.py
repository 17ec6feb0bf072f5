"""The simulated topic: deterministic identities, the governance, and the peers' stores.

Every identity, the topic and its governance come from the seed, so two runs
with one seed sign the very same oplogs.  Peer 0 founds the topic; peers
1..masters-1 are promoted to master, the other initial peers admitted as
members, all before the run starts.  The resulting store is the template
every initial peer's store is copied from: the network has been running a
while and every peer already knows who belongs (a copy costs far less than
syncing the same governance into a thousand stores).  Peers that join
during the run (churn) start with an empty store and are admitted by a
master while the network runs, as a real newcomer is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.identity import Identity
from ..core.lifecycle.governance import OP_ROLE, Role, role_payload
from ..core.lifecycle.replica import found_topic
from ..core.lifecycle.rules import assess
from ..core.oplog import OplogStatus, SignKind, cosign, create_oplog
from ..core.store.memory import MemoryStore
from ..core.store.sqlite import SqliteStore
from ..core.timeutil import NS_PER_SECOND
from ..core.topic import TopicInfo, new_topic

if TYPE_CHECKING:
    from ..core.oplog import Oplog
    from ..core.store import Store

T0 = 1_790_000_000 * NS_PER_SECOND
"""The wall-clock time (ns) at virtual time 0: 2026-09-21T14:13:20Z."""


def identity_of(seed: int, peer: int) -> Identity:
    """Peer `peer`'s key in the run with `seed` (the same in every run)."""
    return Identity.from_seed(hashlib.sha256(f"pttsync-sim/{seed}/key/{peer}".encode()).digest())


def derived_int(seed: int, *parts: object) -> int:
    """A stable 63-bit number from the seed and `parts` (no Python hash: it is salted)."""
    text = "/".join(["pttsync-sim", str(seed), *map(str, parts)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(slots=True)
class Topic:
    """The simulated topic and its founding store."""

    info: TopicInfo
    identities: list[Identity]
    masters: int
    template: Store

    @property
    def topic_id(self) -> bytes:
        return self.info.topic_id

    def store_for(self, *, admitted: bool) -> Store:
        """A store for a peer: a copy of the template, or (not yet admitted) just the topic."""
        if admitted:
            return self.template.copy()
        store = MemoryStore() if isinstance(self.template, MemoryStore) else SqliteStore.memory()
        store.add_topic(self.info)
        return store


def make_topic(
    seed: int,
    *,
    peers: int,
    masters: int,
    admitted: int,
    expiry_s: float,
    store_kind: str = "memory",
) -> Topic:
    """Identities for `peers` peers; a topic founded by peer 0 with `masters` masters,
    and peers below `admitted` members of it.  `store_kind`: memory (MemoryStore) or sqlite."""
    identities = [identity_of(seed, i) for i in range(peers)]
    founder = identities[0]
    nonce = hashlib.sha256(f"pttsync-sim/{seed}/nonce".encode()).digest()[:16]
    info = new_topic(
        founder, name="sim", create_time=T0 - 3600 * NS_PER_SECOND, nonce=nonce,
        expiry=int(expiry_s * NS_PER_SECOND),
    )  # fmt: skip
    store = MemoryStore() if store_kind == "memory" else SqliteStore.memory()
    replica = found_topic(store, founder, info)
    t = T0 - 1800 * NS_PER_SECOND
    oplogs: list[Oplog] = []
    gov = replica.fold.copy()
    for i in range(1, admitted):
        role = Role.MASTER if i < masters else Role.MEMBER
        oplog = _role(founder, info, identities[i].peer_id, role, t + i)
        # A master's quorum: the founder's own signature, then other masters' until valid.
        signer = 1
        while assess(oplog, gov.governance) is not OplogStatus.VALID:
            oplog = cosign(oplog, identities[signer], SignKind.MASTER, t + i)
            signer += 1
        gov.append(oplog)
        oplogs.append(oplog)
    replica.commit([(o, OplogStatus.VALID) for o in oplogs], now=t + admitted)
    return Topic(info, identities, masters, store)


def _role(founder: Identity, info: TopicInfo, user: bytes, role: Role, t: int) -> Oplog:
    return create_oplog(
        founder, topic_id=info.topic_id, object_id=user, op=OP_ROLE, create_time=t,
        value=role_payload(role),
    )  # fmt: skip
