"""`pttsync simulate --profile`: where a run's wall time goes.

Two views, both of wall time (the virtual clock costs none):

* **Phases** (`PhaseClock`): setup (the world built and the peers started,
  up to the first write), writes (the plan's writes and faults), quiescence
  (after the last event, until every live peer converged or max_wait ran
  out), hold (with `--hold S`: the converged network running on idle),
  checks (the invariants and the report, every node still up) and stop
  (every node shut down; 0 under `pttsync simulate`, which ends the
  process with the report instead).  Always kept; cheap.
* **Cost centres** (`cost_centres`): under cProfile, the functions with the
  most time of their own, and the same summed by module, so a finding reads
  "the Merkle descent" rather than one helper of it.  cProfile slows Python
  down by about half, evenly enough to rank what costs most.

docs/pip-11/simulation.md ("Where the time goes") has the findings.
"""

from __future__ import annotations

import pstats
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import cProfile
    from collections.abc import Callable

PHASES = ("setup", "writes", "quiescence", "hold", "checks", "stop")
TOP = 15


class PhaseClock:
    """Wall time per phase of a run: each phase lasts until the next one is entered."""

    def __init__(self, *listeners: Callable[[str], None]) -> None:
        """`listeners` are told each phase as it starts, the first (setup) now
        (collect.py `follow_phases` is one)."""
        self._listeners = listeners
        self._marks: list[tuple[str, float]] = [(PHASES[0], time.perf_counter())]
        self._end: float | None = None
        for listener in listeners:
            listener(PHASES[0])

    def enter(self, phase: str) -> None:
        """Start `phase` now, unless it (or a later one) has already started."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}")
        if PHASES.index(phase) > PHASES.index(self._marks[-1][0]):
            self._marks.append((phase, time.perf_counter()))
            for listener in self._listeners:
                listener(phase)

    def stop(self) -> None:
        self._end = time.perf_counter()

    def seconds(self) -> dict[str, float]:
        """Each phase's wall seconds (0 for one never entered), in order."""
        end = self._end if self._end is not None else time.perf_counter()
        out = dict.fromkeys(PHASES, 0.0)
        for (name, at), (_, until) in zip(self._marks, [*self._marks[1:], ("", end)], strict=True):
            out[name] = round(until - at, 3)
        return out


def cost_centres(profiler: cProfile.Profile, top: int = TOP) -> dict[str, list[dict[str, Any]]]:
    """The functions and the modules with the most time of their own, most first."""
    stats: dict[Any, Any] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    functions = []
    modules: dict[str, list[float]] = {}
    for (path, line, name), (_, calls, own, total, _callers) in stats.items():
        where = _module(path)
        functions.append((own, f"{where}:{line}({name})", calls, total))
        acc = modules.setdefault(where, [0.0, 0])
        acc[0] += own
        acc[1] += calls
    functions.sort(key=lambda f: -f[0])  # by the unrounded time: sub-millisecond ties rank too
    ranked = sorted(modules.items(), key=lambda m: -m[1][0])
    return {
        "functions": [
            {"function": where, "calls": calls, "own_s": round(own, 3), "total_s": round(total, 3)}
            for own, where, calls, total in functions[:top]
        ],
        "modules": [
            {"module": name, "own_s": round(own, 3), "calls": int(calls)}
            for name, (own, calls) in ranked[:top]
        ],
    }


def _module(path: str) -> str:
    """A dotted module name for a source path (`~` for built-ins)."""
    if path == "~":
        return "(built-in)"
    parts = path.replace("\\", "/").removesuffix(".py").split("/")
    for root in ("pttsync", "trio", "cbor2", "cryptography", "hypothesis"):
        if root in parts:
            return ".".join(parts[len(parts) - 1 - parts[::-1].index(root) :])
    return parts[-1]


def render(profile: dict[str, Any]) -> list[str]:
    """The text `--profile` prints after the summary."""
    phases = profile["phases"]
    total = sum(phases.values()) or 1.0
    lines = ["wall time by phase"]
    lines += [f"  {name:<11} {s:9.3f} s  {100 * s / total:5.1f}%" for name, s in phases.items()]
    split = profile.get("split")
    if split is not None:  # --jobs 2 (parts.py): only the first process is profiled
        first, second = split["waited_s"]
        lines.append(
            f"two processes: {split['windows']:,} windows, {split['crossed']:,} items crossed;"
            f" waited for the other {first:.3f} s (first), {second:.3f} s (second);"
            " cost centres: the first's"
        )
    lines.append("top modules by own time (under cProfile)")
    lines += [f"  {m['own_s']:9.3f} s  {m['module']}" for m in profile["modules"]]
    lines.append("top functions by own time")
    lines += [
        f"  {f['own_s']:9.3f} s  {f['calls']:>10,} calls  {f['function']}"
        for f in profile["functions"]
    ]
    return lines
