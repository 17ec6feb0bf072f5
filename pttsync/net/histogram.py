"""A fixed-bucket histogram of durations, kept by the node whether or not it is scraped.

Each topic's sync rounds are timed into one (topicruntime.py); the metrics
(metrics.py) expose it in Prometheus' cumulative form.  It is a list of
counts and a sum, so that a simulation of 10,000 nodes pays a few hundred
bytes a node for it, and nothing of prometheus_client unless it is served.
"""

from __future__ import annotations

import bisect

ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
"""Seconds: a round on a LAN takes milliseconds, a first sync of a large store minutes."""


class Histogram:
    """Observations counted into buckets with upper bounds `bounds` (seconds), plus +Inf."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...] = ROUND_BUCKETS) -> None:
        if list(bounds) != sorted(set(bounds)):
            raise ValueError("bucket bounds must be increasing")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation (a negative one, from a clock that stepped, as 0)."""
        value = max(0.0, value)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at most it) pairs, ending with "+Inf": Prometheus' form."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(_le, self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))
