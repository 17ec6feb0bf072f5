"""What `pttsync simulate` shows while it runs, and does with its report.

While it runs: a progress bar on stderr (`ProgressBar`).  At its end
(`write_out`): with --shrink, a failing run shrunk to a smaller plan that
still fails, saved and shown; the plan saved (--save-plan), the timeline
and the plot written; then the report printed, as text or JSON, and on
failure its trace on stderr.  The command calls `write_out` at the run's
last instant, before its nodes stop, and ends the process there
(cli/simulate.py, sim/run.py `run_plan`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from .output import LiveLine, emit_json, tell

if TYPE_CHECKING:
    import argparse

    from ..sim.plan import Plan, SimConfig
    from ..sim.report import SimReport
    from ..sim.world import Progress

__all__ = ["ProgressBar", "write_out"]


class ProgressBar:
    """The run's progress, on stderr: a bar redrawn in place on a terminal; elsewhere
    (--progress) a plain line per change of state and at most one a second."""

    WIDTH = 24

    def __init__(self) -> None:
        self.line = LiveLine()

    def __call__(self, p: Progress) -> None:
        frac = 1.0 if p.horizon <= 0 else min(1.0, p.t / p.horizon)
        filled = round(frac * self.WIDTH)
        state = "converged" if p.converged else ("settling" if frac >= 1 else "running")
        self.line.show(
            f"[{'#' * filled}{'-' * (self.WIDTH - filled)}] t={p.t:8.1f}s"
            f"  writes {p.writes_done}/{p.writes_total}  agree {p.agree}/{p.live}  {state}",
            state=state,
        )

    def close(self) -> None:
        self.line.close()


def write_out(args: argparse.Namespace, cfg: SimConfig, plan: Plan, report: SimReport) -> int:
    """Shrink, save, write and show a run's report (see the module text); the exit
    status (0: every invariant holds, 1: one is violated)."""
    from ..sim.shrink import save_plan  # noqa: PLC0415

    if not report.ok and args.shrink:
        report = _shrink(args, cfg, plan, report)
    elif args.save_plan:
        save_plan(Path(args.save_plan), cfg, plan)
    if args.timeline:
        report.write_timeline(Path(args.timeline))
    if args.plot:
        from ..sim.plot import write_plot  # noqa: PLC0415 - loads matplotlib: only for --plot

        write_plot(report, Path(args.plot))
    if args.json:
        emit_json(report.to_json())
    else:
        print(report.summary())
    if not report.ok:
        tell(report.trace(), level=logging.ERROR)
        return 1
    return 0


def _shrink(args: argparse.Namespace, cfg: SimConfig, plan: Plan, report: SimReport) -> SimReport:
    """--shrink: find a smaller failing plan, save it, show it; its report."""
    from ..sim.shrink import save_plan, shrink  # noqa: PLC0415

    def say(text: str) -> None:
        tell(f"shrink: {text}", level=logging.INFO)

    found = shrink(cfg, plan, report, max_runs=args.max_shrink_runs, progress=say)
    target = Path(args.save_plan or f"pttsync-sim-seed{cfg.seed}-min.json")
    save_plan(target, cfg, found.plan)
    tell(
        f"shrink: {len(found.plan.faults)} of {len(plan.faults)} fault events and"
        f" {len(found.plan.writes)} of {len(plan.writes)} writes still fail"
        f" ({found.runs} runs); saved to {target}"
    )
    if len(found.plan.writes) + len(found.plan.faults) <= 40:
        events = [(f.at, f.describe()) for f in found.plan.faults] + [
            (w.at, f"t={w.at:8.3f}s  {w.kind.value} {w.key} on peer{w.peer}")
            for w in found.plan.writes
        ]
        lines = [f"  {line}" for _, line in sorted(events)]
        tell("\n".join(["shrink: the minimal plan:", *lines]))
    found.report.reproduce = f"pttsync simulate --plan {target}"
    return found.report
