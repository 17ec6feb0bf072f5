"""Named, ready-made simulations: `pttsync simulate --scenario NAME`.

Each scenario is a set of SimConfig settings with a story; options given
on the command line override them.  The test suite runs every scenario at
a small size and asserts what the story promises (tests/test_sim_scenarios.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from .plan import SimConfig


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    story: str
    settings: dict[str, Any]

    def config(self, **overrides: Any) -> SimConfig:
        return SimConfig(**{**self.settings, **overrides})


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "partition-heal",
            "The network splits in two halves for 60 s while both sides write; after the"
            " heal, anti-entropy and push merge the halves and every peer agrees.",
            {"peers": 40, "writes": 200, "warmup": 5.0, "partitions": ((20.0, 80.0),)},
        ),
        Scenario(
            "master-offline-expiry",
            "The only master goes offline for longer than the topic's expiry: members'"
            " writes made meanwhile stay pending, expire and are rolled back on every"
            " peer; writes before the outage, and the master's own, stay valid.",
            {"peers": 20, "writes": 60, "expiry": 120.0, "duration": 40.0,
             "masters_offline": (20.0, 220.0)},
        ),
        Scenario(
            "churn",
            "Peers leave for good and newcomers are admitted and join while writes go on;"
            " a few peers also crash and restart on their stores.",
            {"peers": 30, "writes": 150, "duration": 60.0, "churn": 6, "crashes": 4,
             "down": (5.0, 20.0)},
        ),
        Scenario(
            "late-joiner",
            "Admitted peers start only after 400 writes: each catches up on the whole"
            " history by sync (pushes had gone out before they were there).",
            {"peers": 20, "writes": 400, "duration": 30.0, "late": 3},
        ),
        Scenario(
            "lossy-network",
            "10% of frames are lost (and resent), latencies are 20-250 ms with jitter, and"
            " links carry 64 KB/s: pushes are dropped under back-pressure and anti-entropy"
            " repairs them.",
            {"peers": 30, "writes": 150, "duration": 40.0, "loss": 0.1,
             "latency_ms": (20.0, 250.0), "jitter": 0.5, "bandwidth": 65536.0},
        ),
    )
}  # fmt: skip


def scenario(name: str) -> Scenario:
    """The scenario called `name` (UsageError listing them if there is none)."""
    found = SCENARIOS.get(name)
    if found is None:
        raise UsageError(f"no scenario {name!r}; there are: {', '.join(SCENARIOS)}")
    return found
