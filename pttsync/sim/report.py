"""The report of a simulation run: JSON, a human summary, the CSV timeline, the failure trace.

Fields (docs/pip-11/simulation.md explains how to read them):

* converged, invariants (name -> "ok" or what is wrong);
* convergence_s: virtual seconds from the last disturbance (the plan's
  last event of any kind: a write, a fault, a heal; or a joiner starting,
  if later) to the moment every live peer held the final digest with
  nothing pending (0 if that moment came first);
* sync_rounds, messages and bytes (total, and per peer: min, median, max);
* push: oplogs sent and received by push, IDs announced instead (lazy
  push), announced ones asked for, links pruned and grafted, and the copies
  of each acknowledged write that reached each live peer by push (counted
  over the nodes running at the end);
* lost_writes, expired_rolled_back, conflicts;
* virtual_s, wall_s, and phases_s: wall seconds of setup, writes, quiescence,
  hold, checks and stop (with --profile, also `profile`: the top cost centres);
* and more: the writes, the peers, how long writes took to reach every
  peer (spread_s), the faults applied, and on failure the details and the
  command that reproduces the run;
* on request (`to_json(timeline=True, series=True)`): the timeline, one row per
  sample with the faults in effect, and the series `--plot` draws (plot.py).

Everything but the wall times is a function of the configuration and the seed, so
two runs with the same ones report the same (tests/test_sim.py checks it).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .profiling import render

if TYPE_CHECKING:
    from pathlib import Path

WALL_FIELDS = ("wall_s", "phases_s", "profile")

# The CSV timeline's columns, in order (observe.Timeline.rows; `pttsync simulate --help`
# and docs/pip-11/simulation.md explain them).  New columns go at the end.
TIMELINE_COLUMNS = (
    "t",
    "live",
    "agree_final",
    "distinct_digests",
    "writes_done",
    "messages",
    "partitions",
    "down",
    "masters_offline",
    "left",
    "events",
)


@dataclass(slots=True)
class SimReport:
    seed: int
    config: dict[str, Any]
    converged: bool
    invariants: dict[str, str]
    convergence_s: float | None
    sync_rounds: int
    messages: dict[str, Any]
    bytes: dict[str, Any]
    lost_writes: int
    expired_rolled_back: int
    conflicts: int
    virtual_s: float
    wall_s: float
    writes: dict[str, int]
    peers: dict[str, int]
    spread_s: dict[str, float]
    documents: dict[str, int]
    faults: list[str]
    reproducible: bool
    reproduce: str = ""
    failures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    phases_s: dict[str, float] = field(default_factory=dict)  # wall time by phase
    push: dict[str, Any] = field(default_factory=dict)  # push counters (run._push)
    profile: dict[str, Any] | None = None  # with --profile: the top cost centres
    # A split run's lockstep: windows, items crossed, and the wall seconds each process
    # waited for the other (wall-time figures: in the JSON only under --profile's).
    split: dict[str, Any] | None = None
    # What --plot draws beyond the timeline (bounded: one number per peer, at most 1,000
    # points of the spread's CDF, the fault windows): bytes_per_peer (by peer number),
    # spread_cdf ([seconds, fraction] pairs), write_window, fault_windows
    # (observe.fault_windows).
    series: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True if every invariant holds."""
        return all(v == "ok" for v in self.invariants.values())

    def to_json(self, *, timeline: bool = False, series: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": self.ok,
            "seed": self.seed,
            "converged": self.converged,
            "invariants": self.invariants,
            "convergence_s": self.convergence_s,
            "sync_rounds": self.sync_rounds,
            "messages": self.messages,
            "bytes": self.bytes,
            "lost_writes": self.lost_writes,
            "expired_rolled_back": self.expired_rolled_back,
            "conflicts": self.conflicts,
            "virtual_s": self.virtual_s,
            "wall_s": self.wall_s,
            "phases_s": self.phases_s,
            "writes": self.writes,
            "peers": self.peers,
            "spread_s": self.spread_s,
            "push": self.push,
            "documents": self.documents,
            "faults": self.faults,
            "reproducible": self.reproducible,
            "reproduce": self.reproduce,
            "config": self.config,
        }
        if not self.ok:
            out["failures"] = self.failures
            out["events"] = self.events
        if self.refusals:
            out["refusals"] = self.refusals
        if timeline:
            out["timeline"] = self.timeline
        if series:
            out["series"] = self.series
        if self.profile is not None:
            out["profile"] = self.profile
        return out

    def without_wall_time(self) -> dict[str, Any]:
        """The JSON report minus what depends on the machine (for reproducibility checks)."""
        out = self.to_json(timeline=True, series=True)
        for name in WALL_FIELDS:
            out.pop(name, None)
        return out

    def summary(self) -> str:
        """A few lines for people."""
        w, p, m, b = self.writes, self.peers, self.messages, self.bytes
        conv = (
            f"converged {self.convergence_s:.3f} s after the last disturbance"
            if self.converged and self.convergence_s is not None
            else "did NOT converge"
        )
        lines = [
            f"{'OK' if self.ok else 'FAILED'}: {p['live']} live peers {conv}"
            f" ({self.virtual_s:.1f} virtual s in {self.wall_s:.1f} s of wall time,"
            f" seed {self.seed})",
            f"writes     {w['acknowledged']:,} acknowledged ({w['pending_at_ack']:,} needed"
            f" co-signing), {w['refused']:,} refused, {w['skipped']:,} skipped;"
            f" {self.lost_writes} lost, {self.expired_rolled_back} expired and rolled back"
            + (f", {w['orphaned']} left with their writer" if w.get("orphaned") else ""),
            f"documents  {self.documents['count']:,} ({self.conflicts} in conflict)",
            f"spread     a write reached every peer in {self.spread_s['median']:.3f} s (median),"
            f" {self.spread_s['p99']:.3f} s (p99), {self.spread_s['max']:.3f} s (max)",
            f"traffic    {self.sync_rounds:,} sync rounds, {m['total']:,} messages,"
            f" {b['total']:,} bytes; per peer {_per(b['per_peer'])} bytes",
            f"push       {self.push.get('copies_per_write_per_peer', 0):.2f} copies of each"
            f" write reached each peer; {self.push.get('announced', 0):,} announced by ID,"
            f" {self.push.get('requested', 0):,} of them asked for",
            f"peers      {p['initial']} initial, {p['joined']} joined, {p['left']} left,"
            f" {p['crashes']} crashes",
        ]
        if self.faults:
            lines.append(f"faults     {len(self.faults)} events")
        lines.append("invariants")
        lines += [f"  {name:<22} {verdict}" for name, verdict in self.invariants.items()]
        if self.profile is not None:
            lines += render({"phases": self.phases_s, **self.profile})
        return "\n".join(lines)

    def trace(self) -> str:
        """What a failing run prints: how to reproduce it, the faults, what went wrong."""
        lines = ["", f"reproduce with: {self.reproduce}", f"seed: {self.seed}", ""]
        if self.faults:
            lines.append("faults:")
            lines += [f"  {f}" for f in self.faults]
        for name, details in self.failures.items():
            lines.append(f"{name}: {self.invariants.get(name, '')}")
            lines += [f"  {d}" for d in details]
        if self.events:
            lines.append("last events:")
            lines += [f"  {e}" for e in self.events[-40:]]
        return "\n".join(lines)

    def timeline_csv(self) -> str:
        """The timeline as CSV: one row per sample, the columns TIMELINE_COLUMNS."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=TIMELINE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.timeline:
            writer.writerow(row)
        return buf.getvalue()

    def write_timeline(self, path: Path) -> None:
        path.write_text(self.timeline_csv())


def _per(figures: dict[str, Any]) -> str:
    return f"{figures['min']:,}/{figures['median']:,.0f}/{figures['max']:,} (min/median/max)"
