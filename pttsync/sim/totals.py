"""What a finished run's peers add up to, in one process or two.

The report's counters are sums over every peer and every incarnation of it:
sync rounds, push counters, connections closed for violations or by a bug
of ours.  In a run split across two processes (parts.py) each process
holds its own peers' share: the second hands the first a `PartResult`
(`part_result`), which the first merges into its world (`merge`) before it
checks the invariants and writes the report, so every figure below counts
the whole network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .parts import PartResult
from .peers import name_of

if TYPE_CHECKING:
    from .observe import WriteTrack
    from .world import World

PUSH_COUNTERS = ("sent", "received", "announced", "requested", "prunes", "grafts")


def rounds(world: World) -> int:
    total = world.other.rounds if world.other is not None else 0
    for peer in world.peers.values():
        total += peer.rounds
        if peer.node is not None:
            total += sum(rt.stats.rounds_completed for rt in peer.node.topics.values())
    return total


def push_totals(world: World) -> dict[str, int]:
    """Push counters summed over the nodes running at the end (push.py, lazypush.py)."""
    out = dict.fromkeys(PUSH_COUNTERS, 0)
    if world.other is not None:
        out.update(world.other.push)
    for peer in world.peers.values():
        for rt in peer.node.topics.values() if peer.node is not None else ():
            out["sent"] += rt.stats.pushed
            out["received"] += rt.stats.push_received
            out["announced"] += rt.stats.announced
            out["requested"] += rt.lazy.requested
            out["prunes"] += rt.lazy.prunes
            out["grafts"] += rt.lazy.grafts
    return out


def violations(world: World) -> int:
    total = world.other.violations if world.other is not None else 0
    for peer in world.peers.values():
        total += peer.violations + (peer.node.violations if peer.node is not None else 0)
    return total


def internal_errors(world: World) -> int:
    """Connections the nodes closed because of a bug of ours (node.internal_errors)."""
    total = world.other.internal_errors if world.other is not None else 0
    return total + sum(
        p.internal_errors + (p.node.internal_errors if p.node is not None else 0)
        for p in world.peers.values()
    )


def describe_write(world: World, oplog_id: bytes) -> dict[str, Any]:
    track = world.tracks[oplog_id]
    return {
        "oplog": oplog_id.hex()[:16],
        "key": track.key,
        "by": name_of(track.peer),
        "acknowledged_at": round(track.at, 3),
        "pending_at_ack": track.pending,
        "valid_on": bin(track.reached).count("1"),
    }


def part_result(world: World) -> PartResult:
    """The second process's share of the report (see the module text)."""
    assert world.part is not None
    assert world.foreign is not None
    mine = world.part.runs
    faults = set(world.fault_log)
    return PartResult(
        traffic={name: t for name, t in world.fabric.traffic.items() if mine(name)},
        rounds=rounds(world),
        violations=violations(world),
        internal_errors=internal_errors(world),
        push=push_totals(world),
        bounds={name: (b.used, b.limit, b.peer) for name, b in world.bounds.items()},
        tracks=dict(world.tracks),
        reached={oid: (t.reached, t.last_reach) for oid, t in world.foreign.items()},
        writes_done=world.writes_done,
        writes_refused=world.writes_refused,
        refusals=list(world.refusals),
        events=[e for e in world.events if e not in faults],  # the first process has those
        handed=world.fabric.handed,
        leaves=world.leaves,
        windows=world.part.lockstep.barriers,
        crossed=world.part.lockstep.crossed,
        waited=world.part.lockstep.waited,
    )


def merge(world: World, other: PartResult) -> None:
    """Take the second process's share into the first's world (see the module text)."""
    assert world.part is not None
    assert world.foreign is not None
    world.other = other
    world.fabric.traffic.update(other.traffic)
    world.fabric.handed += other.handed
    for name, (used, limit, peer) in other.bounds.items():
        top = world.bounds[name]
        top.limit = max(top.limit, limit)
        if used > top.used:
            top.used, top.peer = used, peer
    # Each write was tracked where it was made; where it reached the other
    # process's peers, that process noted by its ID.
    for oid, track in other.tracks.items():
        world.tracks[oid] = track
        noted = world.foreign.get(oid)
        if noted is not None:
            _reach(track, noted.reached, noted.last_reach)
    for oid, (bits, last) in other.reached.items():
        track = world.tracks.get(oid)
        if track is not None and oid not in other.tracks:
            _reach(track, bits, last)
    world.tracks = dict(sorted(world.tracks.items(), key=lambda kv: (kv[1].at, kv[0])))
    _orphans(world, other)
    world.writes_done += other.writes_done
    world.writes_refused += other.writes_refused
    world.refusals = (world.refusals + other.refusals)[:20]
    events = sorted([*world.events, *other.events], key=_event_time)
    world.events.clear()
    world.events.extend(events)


def split_profile(world: World) -> dict[str, Any]:
    """The lockstep's windows, the items that crossed, and how long each process
    waited for the other (their imbalance): `SimReport.split`, and `--profile`'s."""
    assert world.part is not None
    assert world.other is not None
    step, other = world.part.lockstep, world.other
    return {
        "windows": step.barriers,
        "crossed": step.crossed + other.crossed,
        "waited_s": [round(step.waited, 3), round(other.waited, 3)],
    }


def _orphans(world: World, other: PartResult) -> None:
    """The writes no remaining peer held when a peer left (world._note_orphans), from
    what each process's peers held at each leave (the same leaves, in the same order)."""
    assert len(world.leaves) == len(other.leaves), "both processes carry out every leave"
    for (mine, held_here), (theirs, held_there) in zip(world.leaves, other.leaves, strict=True):
        for oid in [*mine, *theirs]:
            if oid not in world.orphans and oid not in held_here and oid not in held_there:
                world.orphans.add(oid)


def _reach(track: WriteTrack, bits: int, last: float) -> None:
    """Add the peers `bits` that held `track`'s write valid, the last of them at `last`."""
    track.reached |= bits
    track.last_reach = max(track.last_reach, last)


def _event_time(line: str) -> float:
    """An event line's virtual time ("t=   1.234s  ...")."""
    try:
        return float(line[2:].split("s", 1)[0])
    except ValueError:
        return 0.0
