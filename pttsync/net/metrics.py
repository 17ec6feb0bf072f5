"""A node's Prometheus metrics: a registry of its own, read from the node when scraped.

    registry = node_registry(node)          # per node: nodes in one process never collide
    nursery.start(serve_metrics, registry, "127.0.0.1:9400")

`pttsync run --metrics HOST:PORT` does both.  Nothing here counts anything:
the node keeps its counters whether or not it is scraped (its stats, its
links', its address book, its door's refusals, each topic's round-time
histogram), and `NodeCollector.collect` reads them at each scrape, so a node
that is never scraped pays nothing of prometheus_client.  Every metric, its
labels and its meaning are listed in docs/pip-11/network.md, "Metrics";
the names follow Prometheus' conventions (`pttsync_` prefix, base units,
`_total` for counters).

The collector runs in the node's trio thread (`serve_metrics` is a trio
task), so it reads the node's state between two of the node's steps, never
in the middle of one.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)

from ..core.identity import peer_id_text
from ..core.oplog import OplogStatus
from .peer import Direction, LinkStats
from .peerview import by_connection
from .refusals import KINDS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from .node import Node


def _version() -> str:
    try:
        return version("pttsync")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class NodeCollector:
    """Reads `node`'s counters into metric families at each scrape (see the module text)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.version = _version()

    def collect(self) -> Iterator[Metric]:
        node = self.node
        yield InfoMetricFamily(
            "pttsync_node",
            "This node: its peer ID, pttsync's version and where it listens.",
            value={
                "peer_id": peer_id_text(node.peer_id),
                "version": self.version,
                "listen": node.listen_address or "",
            },
        )
        uptime = trio.current_time() - node.started_at
        yield GaugeMetricFamily(
            "pttsync_start_time_seconds",
            "When the node started, in seconds since the epoch.",
            value=round(node.clock() / 1e9 - uptime, 3),
        )
        yield from self._connections()
        yield from self._topics()
        yield from self._safety()

    def _connections(self) -> Iterator[Metric]:
        node = self.node
        now = GaugeMetricFamily(
            "pttsync_connections", "Connected peers, by direction.", labels=["direction"]
        )
        opened = CounterMetricFamily(
            "pttsync_connections_opened",
            "Connections admitted at the door since the node started, by direction.",
            labels=["direction"],
        )
        for d in Direction:
            now.add_metric([d.value], sum(1 for ln in node.links.values() if ln.direction is d))
            opened.add_metric([d.value], node.connections.opened[d])
        yield now
        yield opened
        visits = CounterMetricFamily(
            "pttsync_visits",
            "Visits admitted (one sync round outside the slots), made and taken.",
            labels=["direction"],
        )
        displaced = CounterMetricFamily(
            "pttsync_visits_displaced",
            "Visits taken that were closed for a newer one after holding their place"
            " past the grace (a stalled visitor's place freed).",
        )
        done = node.visits
        for way in ("made", "taken"):
            visits.add_metric([way], done[way])
        displaced.add_metric([], done["displaced"])
        yield visits
        yield displaced
        traffic = LinkStats()
        traffic.add(node.connections.closed_traffic)
        for link in node.links.values():
            traffic.add(link.stats)
        for name, value, what in (
            ("pttsync_sent_bytes", traffic.bytes_sent, "Bytes of frames sent to peers."),
            ("pttsync_received_bytes", traffic.bytes_received, "Bytes of frames from peers."),
            ("pttsync_sent_messages", traffic.messages_sent, "Messages sent to peers."),
            ("pttsync_received_messages", traffic.messages_received, "Messages from peers."),
            (
                "pttsync_send_queue_dropped_frames",
                traffic.dropped,
                "Push frames dropped because a peer's send queue was full.",
            ),
        ):
            yield CounterMetricFamily(name, what + " Frame payloads, before encryption.", value)
        connected, rest = by_connection(node.book, node.links, node.peer_id, node.listen_address)
        failing = sum(1 for e in rest if e.failures)
        states = {"connected": len(connected), "backing_off": failing, "ready": len(rest) - failing}
        book = GaugeMetricFamily(
            "pttsync_addresses",
            "Addresses in the node's address book, by state: connected, backing off"
            " after failures, or ready to dial.",
            labels=["state"],
        )
        for state, n in states.items():
            book.add_metric([state], n)
        yield book

    def _topics(self) -> Iterator[Metric]:
        node = self.node
        oplogs = GaugeMetricFamily(
            "pttsync_oplogs", "Oplogs stored, by topic and status.", labels=["topic", "status"]
        )
        members = GaugeMetricFamily(
            "pttsync_members", "Members of the topic now, masters included.", labels=["topic"]
        )
        rounds = CounterMetricFamily(
            "pttsync_sync_rounds",
            "Sync rounds this node started, by result (completed, or failed: refused,"
            " broken or timed out).",
            labels=["topic", "result"],
        )
        served = CounterMetricFamily(
            "pttsync_sync_rounds_served", "Sync rounds peers ran with this node.", labels=["topic"]
        )
        durations = HistogramMetricFamily(
            "pttsync_sync_round_duration_seconds",
            "How long the sync rounds this node started took, completed or not.",
            labels=["topic"],
        )
        push: dict[str, CounterMetricFamily] = {
            key: CounterMetricFamily(name, what, labels=["topic"])
            for key, name, what in (
                ("pushed", "pttsync_push_sent_oplogs", "Oplog copies sent by push."),
                ("push_received", "pttsync_push_received_oplogs", "Oplog copies received by push."),
                ("push_dropped", "pttsync_push_dropped_oplogs", "Oplogs not pushed: queue full."),
                ("announced", "pttsync_push_announced_ids", "Oplog IDs announced (lazy push)."),
                ("requested", "pttsync_push_requested_oplogs", "Announced oplogs asked for."),
                (
                    "refused",
                    "pttsync_refused_requests",
                    "Connections, requests and pushes refused: the peer is not a member.",
                ),
            )
        }
        tree = CounterMetricFamily(
            "pttsync_push_tree_changes",
            "Links moved out of the push tree (prune) or back into it (graft).",
            labels=["topic", "change"],
        )
        now = node.clock()
        for topic_id, rt in node.topics.items():
            t = topic_id.hex()
            for status in OplogStatus:
                oplogs.add_metric([t, status.name.lower()], rt.ctx.store.count(topic_id, status))
            members.add_metric([t], len(rt.replica.fold.governance.members(now)))
            stats = rt.stats
            rounds.add_metric([t, "completed"], stats.rounds_completed)
            rounds.add_metric([t, "failed"], stats.rounds_failed)
            served.add_metric([t], stats.rounds_served)
            hist = rt.round_times
            durations.add_metric([t], hist.cumulative(), sum_value=hist.sum)
            counts = {
                "pushed": stats.pushed,
                "push_received": stats.push_received,
                "push_dropped": stats.push_dropped,
                "announced": stats.announced,
                "requested": rt.lazy.requested,
                "refused": stats.refused,
            }
            for key, family in push.items():
                family.add_metric([t], counts[key])
            tree.add_metric([t, "prune"], rt.lazy.prunes)
            tree.add_metric([t, "graft"], rt.lazy.grafts)
        yield from (oplogs, members, rounds, served, durations, *push.values(), tree)

    def _safety(self) -> Iterator[Metric]:
        node = self.node
        refusals = CounterMetricFamily(
            "pttsync_door_refusals",
            "Peers refused at the door, by reason: not a member of any topic here, or no room.",
            labels=["reason"],
        )
        for kind in KINDS:
            refusals.add_metric([kind], node.refusals.totals[kind])
        yield refusals
        yield CounterMetricFamily(
            "pttsync_protocol_violations",
            "Connections closed because the peer broke the protocol.",
            node.violations,
        )
        yield CounterMetricFamily(
            "pttsync_connections_turned_away",
            "Inbound connections closed unread: too many handshakes at once.",
            node.turned_away,
        )
        yield CounterMetricFamily(
            "pttsync_internal_errors",
            "Connections closed by a bug of pttsync's own (each is logged with its traceback).",
            node.internal_errors,
        )


def node_registry(node: Node, *, process: bool = False) -> CollectorRegistry:
    """A registry of `node`'s metrics alone; with `process`, also the standard process_*
    and python_* metrics (for a node that has its process to itself, as `pttsync run`)."""
    registry = CollectorRegistry()
    registry.register(NodeCollector(node))
    if process:
        from prometheus_client import PlatformCollector, ProcessCollector  # noqa: PLC0415

        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry
