"""Multi-peer network simulation: real nodes in one process or two, on virtual time, with faults.

    report = pttsync.simulate(pttsync.SimConfig(peers=100, writes=500, seed=7, loss=0.05))
    print(report.summary())

docs/pip-11/simulation.md describes the fault model, the invariants and
the report.  The modules:

* plan.py: `SimConfig`, and the plan of writes and faults drawn from the seed;
* fabric.py: the simulated network (connections, delivery, cuts, crashes);
* link.py: one connection's wire (latency, loss, bandwidth), over the fabric's `Medium`;
* setup.py: deterministic identities, the topic and its governance;
* world.py: the real nodes on the fabric, the plan carried out;
* observe.py: probes on each peer, the timeline, bounds;
* lockstep.py, remote.py: two processes' windows, and the connections that cross;
  bridge.py: the lockstep's wire, whose sends never block;
* parts.py: `--jobs 2`, who runs which peer and the samples both share;
  totals.py: the report's sums, the second process's share merged;
* invariants.py: the checks; report.py: the report; run.py: `simulate`;
  stopper.py: a run stopped from outside;
* scenarios.py: named, ready-made scenarios; shrink.py: failing plans shrunk, saved, replayed.
"""

from __future__ import annotations

from .fabric import Cut, Fabric, LinkModel, SimNetwork
from .plan import Fault, FaultKind, Plan, SimConfig, Write, WriteKind, epidemic_rounds, make_plan
from .report import SimReport
from .run import deterministic_trio, run_plan, simulate
from .stopper import Stopped, Stopper

__all__ = [
    "Cut",
    "Fabric",
    "Fault",
    "FaultKind",
    "LinkModel",
    "Plan",
    "SimConfig",
    "SimNetwork",
    "SimReport",
    "Stopped",
    "Stopper",
    "Write",
    "WriteKind",
    "deterministic_trio",
    "epidemic_rounds",
    "make_plan",
    "run_plan",
    "simulate",
]
