"""Shrinking a failing run to a minimal plan, and saving plans to replay.

A failing simulation is reproduced by its seed, but its plan may hold
hundreds of writes and dozens of faults, most of them beside the point.
`shrink` looks for a smaller plan that still breaks the same invariants,
in the manner of delta debugging (Zeller) and QuickCheck's shrinking:

1. the faults, one unit at a time (a crash with its restart, a partition
   with its heal, the masters' outage with their return; a leave or a join
   alone): a unit whose removal keeps the failure goes;
2. then the writes, in chunks of half, a quarter... down to single writes.

Every candidate is a full, deterministic run (`run_plan`), so the result
replays exactly: `save_plan` writes it (with its config) as JSON, and
`pttsync simulate --plan FILE` runs it again.  The search stops after
`max_runs` runs and returns the smallest failing plan found so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .plan import Fault, FaultKind, Plan, SimConfig
from .run import run_plan

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from .report import SimReport

DEFAULT_MAX_RUNS = 64
PAIRS = {
    FaultKind.CRASH: FaultKind.RESTART,
    FaultKind.PARTITION: FaultKind.HEAL,
    FaultKind.MASTERS_DOWN: FaultKind.MASTERS_UP,
}


@dataclass(frozen=True, slots=True)
class Shrunk:
    plan: Plan
    report: SimReport
    runs: int  # runs made while shrinking


def units(faults: tuple[Fault, ...]) -> list[tuple[Fault, ...]]:
    """The faults grouped into what can be removed together (a fault with its undoing)."""
    left = list(faults)
    out: list[tuple[Fault, ...]] = []
    while left:
        first = left.pop(0)
        undo = PAIRS.get(first.kind)
        match = None
        if undo is not None:
            match = next(
                (f for f in left if f.kind is undo and f.peers == first.peers
                 and f.groups == first.groups),
                None,
            )  # fmt: skip
        if match is not None:
            left.remove(match)
            out.append((first, match))
        else:
            out.append((first,))
    return out


def shrink(
    cfg: SimConfig,
    plan: Plan,
    report: SimReport,
    *,
    max_runs: int = DEFAULT_MAX_RUNS,
    progress: Callable[[str], None] | None = None,
) -> Shrunk:
    """The smallest plan found that still violates an invariant `report` shows violated."""
    failing = {name for name, verdict in report.invariants.items() if verdict != "ok"}
    if not failing:
        raise UsageError("the run did not fail: there is nothing to shrink")
    best, best_report, runs = plan, report, 0

    def still_fails(candidate: Plan) -> SimReport | None:
        nonlocal runs
        runs += 1
        r = run_plan(cfg, candidate)
        return r if any(r.invariants.get(k, "ok") != "ok" for k in failing) else None

    groups = units(plan.faults)
    i = 0
    while i < len(groups) and runs < max_runs:
        kept = [f for j, g in enumerate(groups) if j != i for f in g]
        candidate = replace(best, faults=tuple(sorted(kept, key=_order)))
        found = still_fails(candidate)
        if found is not None:
            best, best_report = candidate, found
            groups.pop(i)
            _say(progress, f"{len(groups)} fault units left: still fails ({runs} runs)")
        else:
            i += 1
    writes = list(best.writes)
    chunk = max(1, len(writes) // 2)
    while writes and runs < max_runs:
        i = 0
        while i < len(writes) and runs < max_runs:
            trial = writes[:i] + writes[i + chunk :]
            candidate = replace(best, writes=tuple(trial))
            found = still_fails(candidate)
            if found is not None:
                best, best_report, writes = candidate, found, trial
                _say(progress, f"{len(writes)} writes left: still fails ({runs} runs)")
            else:
                i += chunk
        if chunk == 1:
            break
        chunk = max(1, chunk // 2)
    return Shrunk(best, best_report, runs)


def _order(f: Fault) -> tuple[float, str, tuple[int, ...]]:
    return (f.at, f.kind.value, f.peers)


def _say(progress: Callable[[str], None] | None, text: str) -> None:
    if progress is not None:
        progress(text)


def save_plan(path: Path, cfg: SimConfig, plan: Plan) -> None:
    """Write a config and its plan as JSON, for `pttsync simulate --plan FILE`."""
    doc = {"pttsync_simulation": 1, "config": cfg.to_json(), "plan": plan.to_json()}
    try:
        path.write_text(json.dumps(doc, indent=1) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write the plan to {path}: {exc.strerror}") from None


def load_plan(path: Path) -> tuple[SimConfig, Plan]:
    """Read what `save_plan` wrote.  UsageError if it cannot be read or is not a plan."""
    try:
        doc: Any = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"cannot read the plan {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("pttsync_simulation") != 1:
        raise UsageError(f"{path} is not a pttsync simulation plan")
    return SimConfig.from_json(doc.get("config")), Plan.from_json(doc.get("plan"))
