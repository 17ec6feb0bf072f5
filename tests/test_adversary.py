"""The stateful adversary (tests/adversary/stateful.py), seeded and bounded for CI.

`python tools/fuzz.py --target adversary` runs the same machine for as long as asked.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from .adversary.stateful import STEPS, SyncAdversary

EXAMPLES = 60

TestSyncAdversary = SyncAdversary.TestCase
TestSyncAdversary.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=STEPS,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
