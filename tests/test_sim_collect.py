"""The garbage collector during a run (pttsync/sim/collect.py)."""

from __future__ import annotations

import gc
import weakref

import pytest

from pttsync import SimConfig, simulate
from pttsync.sim import collect
from pttsync.sim.collect import few_collections, follow_phases
from pttsync.sim.profiling import PhaseClock
from pttsync.sim.world import World


class _Thing:
    """A tracked object to watch."""


def test_the_phases_turn_the_collector_off_and_on() -> None:
    before = (gc.isenabled(), gc.get_threshold())
    with few_collections():
        assert gc.get_threshold() == collect.THRESHOLDS
        phases = PhaseClock(follow_phases)
        assert not gc.isenabled()  # the setup: nothing to find
        built = _Thing()
        phases.enter("writes")
        assert gc.isenabled()
        assert gc.get_freeze_count() > 0  # what the setup built is never walked again
        assert not any(o is built for o in gc.get_objects())  # frozen: out of every walk
        phases.enter("quiescence")
        assert gc.isenabled()
        phases.enter("checks")
        assert not gc.isenabled()  # the run is over
        phases.enter("stop")
        assert not gc.isenabled()
    assert (gc.isenabled(), gc.get_threshold()) == before
    assert gc.get_freeze_count() == 0  # what a run froze is garbage like any other


def test_a_run_without_writes_turns_it_on_at_quiescence() -> None:
    with few_collections():
        phases = PhaseClock(follow_phases)
        assert not gc.isenabled()
        phases.enter("quiescence")
        assert gc.isenabled()


def test_an_inner_block_leaves_it_on_and_nothing_frozen() -> None:
    with few_collections():
        with few_collections():
            PhaseClock(follow_phases).enter("stop")
            assert not gc.isenabled()
        assert gc.isenabled()
        assert gc.get_threshold() == collect.THRESHOLDS  # the outer block's
        assert gc.get_freeze_count() == 0


def test_a_collector_turned_off_outside_stays_off_after() -> None:
    gc.disable()
    try:
        with few_collections():
            phases = PhaseClock(follow_phases)
            phases.enter("writes")
            assert gc.isenabled()  # a run collects its cycles during its writes
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_garbage_of_a_frozen_setup_is_collected_after_the_block() -> None:
    with few_collections():
        phases = PhaseClock(follow_phases)
        cycle = _Thing()
        cycle.me = cycle  # type: ignore[attr-defined]
        watch = weakref.ref(cycle)
        phases.enter("writes")  # frozen with the setup
        del cycle
        gc.collect()
        assert watch() is not None  # frozen: not walked
    gc.collect()
    assert watch() is None


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_loop_of_runs_keeps_no_runs_peers(jobs: int) -> None:
    """As `--shrink` does: runs one after another inside the CLI's block."""
    cfg = SimConfig(peers=8, writes=4, seed=5, jobs=jobs)
    with few_collections():
        for _ in range(3):
            assert simulate(cfg).ok
        gc.collect()
        assert not [o for o in gc.get_objects() if isinstance(o, World)]
