"""Python's cyclic garbage collector during a simulation: what a run lets it skip.

A thousand simulated peers are millions of objects, nearly all of which live
until the run ends.  The collector walks young objects every so often to
find cycles, and now and then every object; at a run's scale that work
finds little and costs much (docs/pip-11/simulation.md, "The collector by
phase, and huge pages"):

* `few_collections()`: the block a run runs in (`run_plan`, the second
  process of a split run, and the CLI's whole command around them).  What
  exists when it starts is frozen (never walked again) and young
  collections run ten times less often; cycles are still collected.
* `follow_phases`: told the run's phases (profiling.py `PhaseClock`), it turns
  the collector off while walking finds nothing or is not worth it:
  - the setup (the world built, the peers started and joined): everything
    it makes is the peers' state, kept to the end (a 2,000-peer setup left
    no garbage at all); what it built is frozen when the first write comes;
  - the checks and the stop: the run is over; its garbage (the checks'
    reads, the nodes' cancellations) waits for the block's end.
  During the writes, the quiescence and the hold the collector runs as the
  block tunes it: crashes, churn and closed connections make cycles there.

At the end of any block the run's frozen and young objects join the oldest
generation (freeze, then unfreeze: no collection, the young count starts
again at 0), so the world a run leaves behind is collected like any other
garbage, by the next full collection: a loop of runs (`--shrink`, a test
suite) keeps no run's peers.  The outermost block also puts the thresholds
and the on/off state back as they were; that costs a full collection soon
after (0.5 s at 1,000 peers), which the CLI avoids by ending the process
inside its own block (cli/simulate.py `cmd_simulate`, cli/output.py
`end_process_now`).
"""

from __future__ import annotations

import contextlib
import gc
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["few_collections", "follow_phases"]

THRESHOLDS = (200_000, 50, 1000)
"""The collector's thresholds within a block (Python's defaults: 700, 10, 10)."""


class _Blocks:
    depth = 0  # few_collections blocks entered and not left (in this process)


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """The block a run runs in (see the module text); re-entrant."""
    outermost = _Blocks.depth == 0
    threshold = gc.get_threshold()
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    _Blocks.depth += 1
    try:
        yield
    finally:
        _Blocks.depth -= 1
        gc.freeze()  # the young generations emptied, their count back to 0 ...
        gc.unfreeze()  # ... and everything in the oldest: collected as garbage, later
        if outermost:
            gc.set_threshold(*threshold)
        if enabled or not outermost:
            gc.enable()  # a block's own state: on (a run turns it off only for a while)
        else:
            gc.disable()


def follow_phases(phase: str) -> None:
    """The collector off in a run's setup, checks and stop (see the module text).

    Called with each phase a run enters (profiling.py `PHASES`); meant for a
    run inside a `few_collections` block, whose end turns it back on.  Off
    here means off since the setup: the first phase after it turns it on.
    """
    if phase in ("setup", "checks", "stop"):
        gc.disable()
    elif not gc.isenabled():
        gc.freeze()  # what the setup built: never walked again
        gc.enable()
