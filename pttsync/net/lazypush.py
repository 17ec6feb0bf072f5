"""Lazy push: Plumtree's idea over the push mesh, for valid oplogs.

Pushing every new oplog over every mesh link (routing.py) sends each peer
a copy from most of its mesh peers: 3.8 copies of each write reached each
peer in the 1,000-peer simulation.  Plumtree (Leitão, Pereira and
Rodrigues, "Epidemic Broadcast Trees", 2007) keeps the mesh but splits its
links in two:

* **eager** links carry the oplog itself, as before.  They start as every
  mesh link;
* **lazy** links carry only its ID, in an `IHave`.

A node that receives by push a copy it already holds moves the sender's
link to lazy and tells it so (`Prune`): the eager links thin out to a tree.
A node told of an oplog it lacks (`IHave`) waits `timeout` for the copy to
come by the tree; if it does not, it asks the announcer for it (`IWant`),
and that link becomes eager again on both ends (the graft).  So a tree cut
by a failure heals itself, and anti-entropy still repairs whatever both
miss.  Pending oplogs keep their own route (downhill to a master), and are
never announced.

Announcements are gathered as pushes are (Nagle's idea): the first after a
quiet spell goes at once, and then at most one `IHave` per peer every
`announce_every`, carrying every ID queued meanwhile.  Under a stream of
writes a node's push batches carry one or two oplogs each, and one `IHave`
per lazy link per batch was 70% of a simulated network's messages and a
third of its time (simulation.md).  The IDs a peer is known to hold by
then are left out: those it was sent or sent here, and those it announced
here itself (an announcement says that its sender holds the oplog, valid),
so the two ends of a lazy link do not both announce every oplog.

`LazyPush` holds one topic's state and decides; it does no I/O and is
given the time (nanoseconds).  Everything is bounded: the IDs missing at a
time (`max_missing`; beyond it, anti-entropy repairs), the announcers
remembered for each (`MAX_ANNOUNCERS`), and the announcements queued
(`MAX_QUEUED`).  What arrived lately, valid, is the seen-cache's to say
(net/seen.py), so that the announcements of what the tree brought first
cost no store lookup and no table of their own: the node's topic runtime
asks it before it calls `announced`, noting the announcer as a holder in
the same look; a caller that does not may pass it as `lately`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["DEFAULT_ANNOUNCE_EVERY", "DEFAULT_LAZY_TIMEOUT", "LazyPush"]

DEFAULT_LAZY_TIMEOUT = 250 * 10**6
"""How long an announced oplog may take to arrive by the tree before it is asked for (ns).

About five one-way hops at wide-area latencies (~50 ms).  A shorter wait
asks for copies that were on their way (one extra copy each); a longer one
delays every write the tree misses somewhere.  Measured at 300 simulated
peers (network.md): 0.5 s gave a median spread of 0.91 s, 0.25 s 0.60 s,
for the same bytes."""

DEFAULT_ANNOUNCE_EVERY = 250 * 10**6
"""At most one announcement per lazy link this often, after the first (ns).

An announcement repairs what the tree missed, so it may wait: a write the
tree brings (nearly all) needs none, and a missed one is asked for a
`timeout` after its announcement anyway.  Waiting as long as that timeout
at most doubles the repair's wait while gathering a quarter-second of
writes into each message (measured in network.md, "Lazy push")."""

MAX_QUEUED = 4096
"""Oplog IDs waiting to be announced, over all peers; beyond it, anti-entropy repairs."""

MAX_ANNOUNCERS = 4
"""Peers remembered as holding one missing oplog: the first is asked, then the next."""


@dataclass(slots=True)
class _Missing:
    deadline: int
    announcers: list[bytes] = field(default_factory=list)


class LazyPush:
    """One topic's eager and lazy links, and the oplogs announced but not yet here."""

    def __init__(
        self,
        holds: Callable[[list[bytes]], set[bytes]],
        *,
        lately: Callable[[bytes], bool] = lambda oplog_id: False,
        timeout: int = DEFAULT_LAZY_TIMEOUT,
        announce_every: int = DEFAULT_ANNOUNCE_EVERY,
        max_missing: int = 4096,
    ) -> None:
        self._holds = holds  # which of these oplog IDs the store holds as valid
        self._lately = lately  # whether this oplog arrived lately, valid (no store lookup)
        self.timeout = timeout
        self.announce_every = announce_every
        # peer -> (oplog ID, hash) pairs to announce to it, in order, without repeats
        self._outbox: dict[bytes, dict[tuple[bytes, bytes], None]] = {}
        self._queued = 0
        self._last_sent: int | None = None  # when the outbox last went out
        self.max_missing = max_missing
        self._lazy: set[bytes] = set()  # peers we announce to instead of pushing
        self.version = 0  # changes whenever `eager` may answer otherwise
        self._missing: OrderedDict[bytes, _Missing] = OrderedDict()  # oplog ID -> state
        self.prunes = 0  # links moved to lazy (either end)
        self.grafts = 0  # links moved back to eager (either end)
        self.requested = 0  # oplogs asked for after their timeout

    # -- links -------------------------------------------------------------------------

    def eager(self, peer_id: bytes) -> bool:
        return peer_id not in self._lazy

    def prune(self, peer_id: bytes) -> bool:
        """Make the link to `peer_id` lazy; True if it was eager (tell the peer)."""
        if peer_id in self._lazy:
            return False
        self._lazy.add(peer_id)
        self.version += 1
        self.prunes += 1
        return True

    def graft(self, peer_id: bytes) -> None:
        """Make the link to `peer_id` eager again."""
        if peer_id in self._lazy:
            self._lazy.discard(peer_id)
            self.version += 1
            self.grafts += 1

    def forget(self, peer_id: bytes) -> None:
        """A peer disconnected: its link starts eager if it comes back."""
        self._lazy.discard(peer_id)
        self.version += 1
        self._queued -= len(self._outbox.pop(peer_id, ()))
        for state in self._missing.values():
            if peer_id in state.announcers:
                state.announcers.remove(peer_id)

    # -- announcements (what this node tells its lazy links) ------------------------

    def announce(self, peer_id: bytes, key: tuple[bytes, bytes]) -> None:
        """Queue an announcement of the oplog copy `key` (ID, hash) to `peer_id`."""
        self.announce_all(peer_id, [key])

    def announce_all(self, peer_id: bytes, keys: list[tuple[bytes, bytes]]) -> None:
        """Queue announcements of the oplog copies `keys` to `peer_id`, in order."""
        ids = self._outbox.get(peer_id)
        if ids is None:
            ids = self._outbox[peer_id] = {}
        for key in keys:
            if key not in ids and self._queued < MAX_QUEUED:
                ids[key] = None
                self._queued += 1

    def outbox_due(self) -> int | None:
        """When the queued announcements may go (None: nothing queued): at once after
        a quiet spell, else `announce_every` after the last ones went."""
        if not self._outbox:
            return None
        return -1 if self._last_sent is None else self._last_sent + self.announce_every

    def take_outbox(self, now: int) -> dict[bytes, list[tuple[bytes, bytes]]]:
        """The queued announcements, by peer, if they are due at `now`; else nothing."""
        due = self.outbox_due()
        if due is None or due > now:
            return {}
        out = {peer: list(keys) for peer, keys in self._outbox.items()}
        self._outbox.clear()
        self._queued = 0
        self._last_sent = now
        return out

    def next_wake(self) -> int | None:
        """The earliest of the next missing oplog's deadline and the outbox's (None: neither)."""
        deadline, due = self.next_deadline(), self.outbox_due()
        if deadline is None or due is None:
            return due if deadline is None else deadline
        return min(deadline, due)

    # -- oplogs ------------------------------------------------------------------------

    def announced(self, peer_id: bytes, oplog_ids: list[bytes], now: int) -> list[bytes]:
        """`peer_id` holds these oplogs: wait for the ones this node lacks (the
        caller wakes its timer if `next_wake` moved earlier).  Returns the ones
        this node holds already (valid), which the announcer need not be told of."""
        lately = self._lately
        here: list[bytes] = []
        lacking: list[bytes] = []
        for oid in oplog_ids:
            (here if lately(oid) else lacking).append(oid)
        oplog_ids = lacking
        new = [oid for oid in oplog_ids if oid not in self._missing]
        held = self._holds(new) if new else set()
        for oid in oplog_ids:
            state = self._missing.get(oid)
            if state is None:
                if oid in held:
                    here.append(oid)
                    continue
                state = self._missing[oid] = _Missing(now + self.timeout)
                while len(self._missing) > self.max_missing:
                    self._missing.popitem(last=False)  # anti-entropy repairs it
            if peer_id not in state.announcers and len(state.announcers) < MAX_ANNOUNCERS:
                state.announcers.append(peer_id)
        return here

    def arrived(self, oplog_ids: Iterable[bytes]) -> dict[bytes, list[bytes]]:
        """These oplogs are here now, valid (stored by any means).  Returns the peers
        left waiting to be asked for each (announcers hold it: no need to tell them)."""
        missing, found = self._missing, {}
        for oid in oplog_ids:
            state = missing.pop(oid, None)
            if state is not None and state.announcers:
                found[oid] = state.announcers
        return found

    def next_deadline(self) -> int | None:
        """When the earliest missing oplog is due to be asked for (None: nothing missing).

        Deadlines are kept in order: each is `now + timeout` when it is set, and
        an entry whose deadline is set again moves to the end."""
        for state in self._missing.values():
            return state.deadline
        return None

    def due(self, now: int) -> dict[bytes, list[bytes]]:
        """What to ask whom for now: {peer: oplog IDs}; each such link is grafted.

        An oplog asked for stays missing, with its next announcer due one
        timeout later, until it arrives or no announcer is left.
        """
        asks: dict[bytes, list[bytes]] = {}
        missing = self._missing
        while missing:
            oid, state = next(iter(missing.items()))
            if state.deadline > now:
                break  # in deadline order: none after it is due either
            if not state.announcers:
                del missing[oid]
                continue
            peer = state.announcers.pop(0)
            asks.setdefault(peer, []).append(oid)
            state.deadline = now + self.timeout
            missing.move_to_end(oid)
        for peer in asks:
            self.graft(peer)
        self.requested += sum(len(ids) for ids in asks.values())
        return asks

    def missing(self) -> int:
        return len(self._missing)
