"""The running simulation: real nodes on the fabric, the plan carried out, the peers watched.

Each peer is a real `Node` (serve_node, with its own store and identity)
whose `Network` is the fabric's.  The world starts them, carries out the
plan's writes and faults at their virtual times, samples every live peer
(observe.py), and stops once the network has converged after the last
event, or `max_wait` seconds later if it never does.

Faults, as the world applies them:

* crash / restart: the fabric resets the peer's connections and its task is
  cancelled (a process killed: nothing but the store survives); a restart
  runs a new node on the same store and key, joining peers that are up;
* masters down / up: the same, for every master at once;
* leave: a crash that never restarts (the peer no longer counts as live);
* join: a master admits a new peer (a ROLE oplog written through the
  master's node) and the newcomer starts with an empty store, joining that
  master and a few others; a late joiner is already admitted and just starts;
* partition / heal: the fabric's cuts (installed at the start: the plan
  knows when they begin and end); the world only notes them.
"""

from __future__ import annotations

import functools
import logging
import random
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..core.lifecycle.governance import Role
from ..core.timeutil import NS_PER_SECOND
from ..errors import PttsyncError, SimulationError
from ..net.config import NodeConfig, trio_wall_clock
from ..net.serve import serve_node
from ..net.timers import run_steps, use_ticks
from . import observe
from .clock import SimClock
from .fabric import Cut, Fabric
from .link import TICK
from .observe import BOUNDS, Probe, Timeline, WriteTrack, bounds_of
from .parts import SampleShare
from .peers import LivePeers, Peer, name_of
from .plan import Fault, FaultKind, Plan, SimConfig, Write, WriteKind
from .profiling import PhaseClock
from .setup import T0, derived_int, identity_of, make_topic

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..net.node import Node
    from .parts import Part, PartResult

log = logging.getLogger(__name__)

MAX_LOG = 5000  # lines of the event log kept (the faults are always kept)
BOUNDS_PER_SAMPLE = 64  # peers whose bounded structures are read at each sample


@dataclass(frozen=True, slots=True)
class Progress:
    """What a progress display shows, once per sample."""

    t: float  # virtual seconds
    horizon: float  # when the plan's last event is
    writes_done: int
    writes_total: int
    live: int
    agree: int  # peers in the largest group holding one digest
    converged: bool


@dataclass(slots=True)
class BoundMax:
    used: int = 0
    limit: int = 0
    peer: int = -1


class World:
    """One simulation run (see the module text).  `await world.run()` carries it out."""

    def __init__(
        self,
        cfg: SimConfig,
        plan: Plan,
        *,
        progress: Callable[[Progress], None] | None = None,
        phases: PhaseClock | None = None,
        part: Part | None = None,
    ) -> None:
        self.cfg = cfg
        self.part = part  # this process's share of a split run (parts.py), if split
        self.plan = plan
        self.progress = progress
        self.phases = phases if phases is not None else PhaseClock()
        self.topic = make_topic(
            cfg.seed, peers=plan.initial, masters=cfg.masters, admitted=plan.initial,
            expiry_s=cfg.expiry, store_kind=cfg.store,
        )  # fmt: skip
        self.fabric = Fabric(model=cfg.link_model(), seed=cfg.seed, transport=cfg.transport)
        for start, end, groups in plan.partitions():
            sides = tuple(frozenset(map(name_of, g)) for g in groups)
            self.fabric.cuts.append(Cut(start, end, sides))
        self.tracks: dict[bytes, WriteTrack] = {}
        self.other: PartResult | None = None  # the second process's results (totals.py)
        self.foreign: dict[bytes, WriteTrack] | None = None if part is None else {}
        if part is not None:
            self.fabric.split(part.lockstep, part.runs)
        self.peers: dict[int, Peer] = {}
        self.up_peers = LivePeers()
        for i in range(plan.initial):
            self._add_peer(i, admitted=True)
        self.rng = random.Random(f"pttsync-sim/{cfg.seed}/world")
        self.events: deque[str] = deque(maxlen=MAX_LOG)
        self.fault_log: list[str] = []
        self._fresh_faults: list[Fault] = []  # applied since the last sample (the timeline's)
        self.partitions = 0  # partition events applied and not yet healed
        self.timeline = Timeline()
        self.bounds: dict[str, BoundMax] = {name: BoundMax() for name in BOUNDS}
        self.writes_done = 0
        self.writes_refused = 0
        self.writes_skipped = 0
        self.writes_seen = 0  # of the plan's writes, those whose time came
        self.refusals: list[str] = []
        self.orphans: set[bytes] = set()  # writes that left with their writer
        self.leaves: list[tuple[list[bytes], set[bytes]]] = []  # split: `_held_here` a leave
        self.last_disturbance = 0.0
        self.on_finished: Callable[[], None] = _nothing  # run.py: the checks and the report
        self.converged_at: float | None = None
        self.finished_at = 0.0
        self.events_done = False
        self._bounds_cursor = 0
        self._nursery: trio.Nursery | None = None
        self._converged = trio.Event()
        self._ended = trio.Event()  # a split run's end (`_end_split`)
        self._quiet_since: float | None = None  # split: the first sample after the plan
        self._hold_since: float | None = None  # split: the sample it converged at

    # -- peers ----------------------------------------------------------------------------

    def _add_peer(self, index: int, *, admitted: bool) -> Peer:
        identity = (
            self.topic.identities[index]
            if index < len(self.topic.identities)
            else identity_of(self.cfg.seed, index)
        )
        store = self.topic.store_for(admitted=admitted)
        peer = Peer(index, identity, store, Probe(index, self.tracks, self.foreign))
        self.peers[index] = peer
        if self.part is not None:  # a dial from the other process's peer is answered
            self.fabric.identities[peer.name] = identity.peer_id
        return peer

    def live(self) -> list[Peer]:
        """The peers up (in a split run: those this process runs), by index."""
        return [p for p in self.up_peers.peers if p.node is not None]

    def known(self) -> list[bytes]:
        """The writes this process knows of: its own, then (split) the other's that
        reached its peers (the other's others are on none of them)."""
        foreign = self.foreign or {}
        return [*self.tracks, *(oid for oid in foreign if oid not in self.tracks)]

    def _node_config(self, peer: Peer, join: tuple[str, ...]) -> NodeConfig:
        cfg = self.cfg
        skew = 0
        if cfg.skew_ms:
            r = random.Random(f"pttsync-sim/{cfg.seed}/skew/{peer.index}")
            skew = int(r.uniform(-cfg.skew_ms, cfg.skew_ms) * NS_PER_SECOND / 1000)
        return NodeConfig(
            listen=peer.address, join=join, max_peers=cfg.max_peers,
            sync_interval=cfg.sync_interval, visit_interval=cfg.visit_interval, push=cfg.push,
            control=False,
            scrub_batch=0,  # nothing rots in a simulated store: no scrubbing
            verify_ahead=False,  # worker threads run in real time: virtual time would jump
            push_mesh=cfg.push_mesh, push_every=cfg.push_every, announce_every=cfg.announce_every,
            seed=derived_int(cfg.seed, "node", peer.index, peer.incarnation),
            clock=trio_wall_clock(T0 + skew, trio.lowlevel.current_clock()),
        )  # fmt: skip

    def _bootstrap(self, peer: Peer, first: list[Peer] | None = None) -> tuple[str, ...]:
        """Addresses a starting peer joins: `first`, then random peers that are up."""
        chosen = [p for p in first or [] if p.state == "up" and p is not peer]
        others = self.up_peers.peers  # not a copy: the peer starting is not up; `sample` reads
        if chosen:
            others = [p for p in others if p not in chosen]
        want = max(0, self.cfg.bootstrap - len(chosen))
        chosen += self.rng.sample(others, min(want, len(others)))
        return tuple(p.address for p in chosen)

    async def _start(self, peer: Peer, first: list[Peer] | None = None) -> None:
        assert self._nursery is not None
        if peer.state == "up":
            return
        join = self._bootstrap(peer, first)  # drawn for every peer: the same draws
        peer.incarnation += 1
        if self.part is not None and not self.part.mine(peer.index):
            self.up_peers.mark_up(peer, None)  # the other process runs it
            return
        await self._nursery.start(self._serve, peer, join)
        self._note(f"{peer.name} up (incarnation {peer.incarnation}, joins {len(join)})")

    async def _serve(
        self, peer: Peer, join: tuple[str, ...], task_status: trio.TaskStatus[None]
    ) -> None:
        network = self.fabric.network(peer.name, peer.identity.peer_id)
        start = functools.partial(
            serve_node, store=peer.store, identity=peer.identity,
            config=self._node_config(peer, join), network=network,
        )  # fmt: skip
        with trio.CancelScope() as scope:
            peer.scope = scope
            async with trio.open_nursery() as nursery:
                node: Node = await nursery.start(start)
                for rt in node.topics.values():
                    rt.replica.observers.append(peer.probe)
                self.up_peers.mark_up(peer, node)
                peer.probe.dirty = True
                task_status.started()

    def _stop(self, peer: Peer, state: str) -> None:
        """Kill a peer's node (crash or leave); only its store survives."""
        node = peer.node
        if node is not None:
            peer.rounds += sum(rt.stats.rounds_completed for rt in node.topics.values())
            peer.violations += node.violations
            peer.internal_errors += node.internal_errors
        self.fabric.crash(peer.name)
        if peer.scope is not None:
            peer.scope.cancel()
        self.up_peers.mark_down(peer, state)

    # -- the plan -------------------------------------------------------------------------

    async def run(self) -> None:
        """Carry out the plan, then wait for convergence (or give up after max_wait)."""
        cfg, plan = self.cfg, self.plan
        use_ticks(TICK)  # the nodes' timers wake on the fabric's ticks (net/timers.py)
        clock = trio.lowlevel.current_clock()
        if isinstance(clock, SimClock):
            clock.drive()  # and the clock wakes them: one turn an instant (clock.py)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self.part is not None:  # the other process gone: this run ends too
                soon = trio.lowlevel.current_trio_token().run_sync_soon
                self.part.lockstep.on_broken = lambda: soon(nursery.cancel_scope.cancel)
            nursery.start_soon(self.fabric.hand_inline)  # frames to parked readers (fabric.py)
            nursery.start_soon(run_steps)  # the pushers' and lazy timers' steps (net/timers.py)
            nursery.start_soon(self._watch)
            late = set(plan.late)
            starters = [i for i in range(plan.initial) if i not in late]
            timed: list[tuple[float, int, Write | Fault | int]] = []
            for n, i in enumerate(starters):
                timed.append((cfg.ramp * n / max(1, len(starters)), 0, i))
            timed += [(f.at, 1, f) for f in plan.faults]
            timed += [(w.at, 2, w) for w in plan.writes]
            timed.sort(key=lambda e: (e[0], e[1]))
            for at, _, what in timed:
                await trio.sleep_until(at)
                if isinstance(what, int):
                    await self._start(self.peers[what])
                elif isinstance(what, Fault):
                    await self._fault(what)
                else:
                    self.phases.enter("writes")
                    self.writes_seen += 1
                    await self._write(what)
            self.events_done = True
            self.phases.enter("quiescence")
            self.last_disturbance = max(self.last_disturbance, trio.current_time())
            if self.part is not None:  # both processes end at one sample (`_end_split`)
                await self._ended.wait()
            else:
                with trio.move_on_at(trio.current_time() + cfg.max_wait):
                    await self._converged.wait()
                if cfg.hold and self._converged.is_set():
                    self.phases.enter("hold")
                    await trio.sleep(cfg.hold)
            self.finished_at = trio.current_time()
            self.on_finished()  # the checks, while every node is up and time stands still
            self.phases.enter("stop")  # every node shut down (the last phase)
            # Each node by its own scope first, which then ends its task quietly: the
            # world's cancel alone took every node's Cancelled into one exception group.
            for peer in self.peers.values():
                if peer.scope is not None:
                    peer.scope.cancel()
            nursery.cancel_scope.cancel()

    def _note(self, text: str) -> None:
        self.events.append(f"t={trio.current_time():8.3f}s  {text}")

    async def _fault(self, fault: Fault) -> None:
        self.fault_log.append(fault.describe())
        self.events.append(fault.describe())
        self._fresh_faults.append(fault)
        kind = fault.kind
        if kind in (FaultKind.CRASH, FaultKind.MASTERS_DOWN, FaultKind.LEAVE):
            state = "left" if kind is FaultKind.LEAVE else "down"
            for i in fault.peers:
                if self.peers[i].state != "left":
                    self._stop(self.peers[i], state)
                    if kind is FaultKind.LEAVE:
                        self._note_orphans()
        elif kind in (FaultKind.RESTART, FaultKind.MASTERS_UP):
            for i in fault.peers:
                if self.peers[i].state == "down":
                    await self._start(self.peers[i])
            self.last_disturbance = trio.current_time()
        elif kind is FaultKind.JOIN:
            assert self._nursery is not None
            for i in fault.peers:  # in the background: a newcomer may wait for a master
                self._nursery.start_soon(self._join, i)
        elif kind is FaultKind.PARTITION:  # the fabric's cut does it: only counted
            self.partitions += 1
        elif kind is FaultKind.HEAL:
            self.partitions -= 1
            self.last_disturbance = trio.current_time()

    def _note_orphans(self) -> None:
        """After a peer left for good: note the writes no remaining peer holds (up, or
        down but coming back).  They left with the last peers that held them: a write
        is durable where it is stored, and nowhere else.  In a split run each process
        notes what its own peers hold, and the first decides at the end (totals.py)."""
        if self.part is not None:
            self.leaves.append(self._held_here())
            return
        ids = [oid for oid in self.tracks if oid not in self.orphans]
        held: set[bytes] = set()
        for peer in self.peers.values():
            if peer.state != "left" and ids:
                held.update(peer.store.existing(self.topic.topic_id, ids))
        self.orphans.update(oid for oid in ids if oid not in held)

    def _held_here(self) -> tuple[list[bytes], set[bytes]]:
        """(this process's writes so far, every write its remaining peers hold)."""
        assert self.part is not None
        ids = self.known()
        held: set[bytes] = set()
        for peer in self.peers.values():
            if peer.state != "left" and self.part.mine(peer.index) and ids:
                held.update(peer.store.existing(self.topic.topic_id, ids))
        return list(self.tracks), held

    async def _join(self, index: int) -> None:
        """Admit (unless already admitted) and start peer `index`."""
        peer = self.peers.get(index)
        if peer is not None:  # a late joiner: admitted before the run
            await self._start(peer)
            self.last_disturbance = trio.current_time()
            return
        peer = self._add_peer(index, admitted=False)
        here = self.part is None or self.part.mine(index)
        while True:
            masters = [p for p in self.up_peers.peers if p.index < self.cfg.masters]
            if masters:
                break
            if here:
                self._note(f"{peer.name} waits for a master to admit it")
            await trio.sleep(5.0)
        master = masters[0]
        # The master's process admits it (at once: the newcomer's first SYN reaches the
        # master a latency later); in a split run the other one starts it meanwhile.
        if master.node is not None:
            status = await master.node.api.set_role(peer.identity.peer_id, Role.MEMBER)
            self._note(f"{master.name} admits {peer.name} ({status.name.lower()})")
        await self._start(peer, first=[master])
        self.last_disturbance = trio.current_time()

    async def _write(self, write: Write) -> None:
        peer = self._writer(write.peer)
        if peer is None:
            self.writes_skipped += 1
            return
        if peer.node is None:
            return  # the other process runs its writer, and makes it
        # n: the write's place in the plan (every process knows it)
        value = {"n": self.writes_seen - 1 - self.writes_skipped, "by": peer.index}
        try:
            if write.kind is WriteKind.DELETE:
                done = await peer.node.api.delete(write.key)
            else:
                done = await peer.node.api.put(write.key, value)
        except PttsyncError as exc:
            self.writes_refused += 1
            if len(self.refusals) < 20:
                self.refusals.append(f"{peer.name} {write.kind.value} {write.key}: {exc}")
            return
        now = trio.current_time()
        pending = done.status.value != "confirmed"
        track = WriteTrack(done.oplog_id, peer.index, write.key, now, pending)
        if not pending:
            track.reach(peer.index, now)
        self.tracks[done.oplog_id] = track
        self.writes_done += 1
        self.last_disturbance = now

    def _writer(self, preferred: int) -> Peer | None:
        """The peer that makes a write: the planned one, or the next one up."""
        n = self.plan.initial
        for k in range(n):
            peer = self.peers.get((preferred + k) % n)
            if peer is not None and peer.state == "up":
                return peer
        return None

    # -- watching ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        every = self.cfg.sample_every
        while not self._ended.is_set():
            await trio.sleep(every)
            self._sample()

    def _sample(self) -> None:
        now = trio.current_time()
        live = self.live()
        digests: dict[int, bytes] = {}
        for peer in live:
            node = peer.node
            assert node is not None
            if peer.probe.dirty:
                peer.probe.dirty = False
                peer.sample.digest = observe.tree_state(peer.store, self.topic.topic_id)
                peer.sample.pending = node.api.pending_count()
            digests[peer.index] = peer.sample.digest
        self._check_bounds(live)
        share = SampleShare(
            self.events_done,
            digests,
            all(p.sample.pending == 0 for p in live)
            and all(p.state != "new" for p in self.peers.values()),
            sum(t.messages_sent for t in self.fabric.traffic.values()),
            self.writes_done,
            max([p.probe.last_change for p in live], default=0.0),
        )
        if self.part is not None:  # the whole network: both processes' shares
            try:
                share = share.merge(self.part.swap(share))
            except SimulationError:  # the other process is gone: the run ends (run.py says)
                self.part.lockstep.on_broken()
                return
        fresh, self._fresh_faults = self._fresh_faults, []
        counts = observe.fault_counts(self.peers.values(), self.cfg.masters, self.partitions)
        self.timeline.add(now, share.digests, share.sent, share.writes_done, counts, fresh)
        groups: dict[bytes, int] = {}
        for d in share.digests.values():
            groups[d] = groups.get(d, 0) + 1
        agree = max(groups.values(), default=0)
        done = share.events_done and len(groups) <= 1 and share.settled
        if done and self.converged_at is None:
            self.converged_at = share.last_change if share.digests else now
            self._converged.set()
        if self.part is not None and share.events_done:
            self._end_split(now)
        if self.progress is not None:
            self.progress(
                Progress(
                    now, self.plan.last_event, share.writes_done, len(self.plan.writes),
                    len(share.digests), agree, done,
                )
            )  # fmt: skip

    def _end_split(self, now: float) -> None:
        """A split run ends at a sample both processes decide it at (as `run` ends one
        process's: after the hold once converged, or `max_wait` after the plan's end),
        so that neither samples, and waits for the other's share, alone."""
        if self._quiet_since is None:
            self._quiet_since = now
        if self.converged_at is not None:
            if self._hold_since is None:
                self._hold_since = now
                if self.cfg.hold:
                    self.phases.enter("hold")
            if now >= self._hold_since + self.cfg.hold:
                self._ended.set()
        elif now >= self._quiet_since + self.cfg.max_wait:
            self._ended.set()

    def _check_bounds(self, live: list[Peer]) -> None:
        if not live:
            return
        count = min(len(live), BOUNDS_PER_SAMPLE)
        start = self._bounds_cursor % len(live)
        self._bounds_cursor += count
        for k in range(count):
            peer = live[(start + k) % len(live)]
            assert peer.node is not None
            for name, (used, limit) in bounds_of(peer.node).items():
                top = self.bounds[name]
                top.limit = limit
                if used > top.used:
                    top.used, top.peer = used, peer.index


def _nothing() -> None:
    pass
