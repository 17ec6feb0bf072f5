"""Prometheus metrics: scraped from running nodes over HTTP and parsed with
prometheus_client's own parser.

Nodes run on a MemoryNetwork in this process (each with its own registry:
two in one process must not collide); the metrics endpoint is real TCP on
127.0.0.1, so these tests run on the real clock, each wait under a deadline.
The last test scrapes a `pttsync run --metrics` process.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from pttsync.core.identity import peer_id_text
from pttsync.core.oplog import OplogStatus
from pttsync.errors import UsageError
from pttsync.net.histogram import Histogram
from pttsync.net.metrics import node_registry
from pttsync.net.metricsserver import MAX_HEAD, _read_head, _route, serve_metrics

from .nethelpers import make_cluster, wait_until
from .prochelpers import log_of, new_data_dir, node_process, poll, short_root

if TYPE_CHECKING:
    from pathlib import Path

    from pttsync.net.node import Node

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
_EMPTY = CollectorRegistry()


@st.composite
def _heads(draw: st.DrawFn) -> bytes:
    """Request heads near the valid ones: methods, targets, versions and headers mixed."""
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"get", b"", b"GET GET"]))
    target = draw(st.sampled_from([b"/metrics", b"/", b"/metrics?x=1", b"/x", b"", b"*"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"", b"HTTP/1.1 x"]))
    headers = draw(
        st.lists(
            st.sampled_from(
                [b"Accept: application/openmetrics-text", b"Accept:", b"accept: */*", b":", b"x"]
            ),
            max_size=4,
        )
    )
    return b"\r\n".join([method + b" " + target + b" " + version, *headers])


async def _http(address: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    host, _, port = address.rpartition(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            data = bytearray()
            while chunk := await stream.receive_some():
                data += chunk
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def _get(path: str = "/metrics", accept: str = "") -> bytes:
    extra = f"Accept: {accept}\r\n" if accept else ""
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


async def _scrape(address: str) -> Samples:
    status, headers, body = await _http(address, _get())
    assert status == 200 and headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith(("pttsync_", "process_", "python_")), family.name
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def _serving(nursery: trio.Nursery, registry: CollectorRegistry) -> str:
    bound: str = await nursery.start(serve_metrics, registry, "127.0.0.1:0")
    return bound


async def test_two_nodes_in_one_process_each_serve_their_own_metrics() -> None:
    cluster = make_cluster(2)
    async with cluster.run() as nodes, trio.open_nursery() as nursery:
        await nodes[1].put("greeting", "hello")
        await wait_until(nodes, lambda: _valid(nodes[0]) == _valid(nodes[1]), limit=30)
        ok = await nodes[1].sync_now()
        assert ok
        master, member = [await _scrape(await _serving(nursery, node_registry(n))) for n in nodes]
        topic = cluster.topic_id.hex()
        for node, s in ((nodes[0], master), (nodes[1], member)):
            info = [k for k in s if k[0] == "pttsync_node_info"]
            assert dict(info[0][1])["peer_id"] == peer_id_text(node.peer_id)
            valid = node.store.count(cluster.topic_id, OplogStatus.VALID)
            assert _value(s, "pttsync_oplogs", topic=topic, status="valid") == valid
            assert _value(s, "pttsync_sent_bytes_total") > 0
            assert _value(s, "pttsync_received_bytes_total") > 0
            assert _value(s, "pttsync_members", topic=topic) == 2
            assert _value(s, "pttsync_addresses", state="connected") >= 1
        assert _value(master, "pttsync_connections", direction="inbound") == 1
        assert _value(member, "pttsync_connections", direction="outbound") == 1
        assert _value(member, "pttsync_connections_opened_total", direction="outbound") == 1
        completed = _value(member, "pttsync_sync_rounds_total", topic=topic, result="completed")
        assert completed >= 1
        assert _value(member, "pttsync_sync_round_duration_seconds_count", topic=topic) >= 1
        inf = _value(member, "pttsync_sync_round_duration_seconds_bucket", topic=topic, le="+Inf")
        assert inf == _value(member, "pttsync_sync_round_duration_seconds_count", topic=topic)
        assert _value(master, "pttsync_sync_rounds_served_total", topic=topic) >= 1
        assert _value(member, "pttsync_push_sent_oplogs_total", topic=topic) >= 1
        assert _value(master, "pttsync_protocol_violations_total") == 0
        nursery.cancel_scope.cancel()


async def test_refusals_at_the_door_are_counted() -> None:
    cluster = make_cluster(2, members=0)
    async with cluster.node(0) as master, trio.open_nursery() as nursery:
        async with cluster.node(1, join=(cluster.address(0),)) as newcomer:
            await wait_until([master, newcomer], lambda: master.refusals.totals["not_member"] > 0)
        s = await _scrape(await _serving(nursery, node_registry(master)))
        assert _value(s, "pttsync_door_refusals_total", reason="not_member") >= 1
        assert _value(s, "pttsync_door_refusals_total", reason="no_room") == 0
        assert _value(s, "pttsync_connections", direction="inbound") == 0
        nursery.cancel_scope.cancel()


async def test_the_endpoint_answers_only_what_it_should() -> None:
    cluster = make_cluster(1)
    async with cluster.node(0) as node, trio.open_nursery() as nursery:
        address = await _serving(nursery, node_registry(node))
        status, headers, body = await _http(address, b"HEAD /metrics HTTP/1.1\r\n\r\n")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        status, headers, _ = await _http(
            address, _get(accept="application/openmetrics-text; version=1.0.0")
        )
        assert status == 200 and headers["content-type"].startswith("application/openmetrics")
        assert (await _http(address, _get("/")))[0] == 200
        assert (await _http(address, _get("/nope")))[0] == 404
        assert (await _http(address, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await _http(address, b"hello\r\n\r\n"))[0] == 400
        assert (await _http(address, b"GET /" + b"x" * (2 * MAX_HEAD)))[0] == 400
        # The node is unharmed, and the endpoint still serves.
        assert (await _http(address, _get()))[0] == 200
        nursery.cancel_scope.cancel()


async def test_a_port_in_use_is_a_clear_error() -> None:
    cluster = make_cluster(1)
    async with cluster.node(0) as node, trio.open_nursery() as nursery:
        address = await _serving(nursery, node_registry(node))
        with pytest.raises(UsageError, match="cannot serve metrics on"):
            await serve_metrics(node_registry(node), address)
        nursery.cancel_scope.cancel()


def test_the_histogram_is_cumulative_with_inclusive_bounds() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0, -1.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 3.0), ("1.0", 5.0), ("+Inf", 6.0)]
    assert h.count == 6 and h.sum == pytest.approx(8.65)
    with pytest.raises(ValueError, match="increasing"):
        Histogram((1.0, 0.5))


@pytest.mark.slow
async def test_pttsync_run_serves_metrics(tmp_path: Path) -> None:
    with short_root(tmp_path) as root:
        d = root / "peer-0"
        new_data_dir(d)
        async with node_process(d, "--metrics", "127.0.0.1:0"):
            found: list[str] = []

            async def said() -> bool:
                await trio.lowlevel.checkpoint()
                m = re.search(r"metrics at http://(\S+)/metrics", log_of(d))
                if m:
                    found.append(m.group(1))
                return m is not None

            await poll(said, 15, "the node to say where its metrics are")
            s = await _scrape(found[0])
            assert ("process_resident_memory_bytes", frozenset()) in s
            assert _value(s, "pttsync_connections", direction="inbound") == 0
            assert any(k[0] == "pttsync_node_info" for k in s)


def _valid(node: Node) -> int:
    return sum(node.store.count(t, OplogStatus.VALID) for t in node.topics)


@given(st.binary(max_size=600) | _heads())
@settings(max_examples=300, deadline=None)
def test_any_request_head_gets_an_answer_and_never_an_exception(head: bytes) -> None:
    """The router takes whatever a scraper (or an attacker) sends: an HTTP status, never a
    crash, and the metrics only for GET or HEAD of /metrics."""
    status, content_type, body, head_only = _route(head, _EMPTY)
    assert status in (200, 400, 404, 405)
    assert content_type and isinstance(body, bytes)
    if status == 200 and not head.startswith((b"GET /metrics", b"HEAD /metrics")):
        assert body == b"pttsync node: metrics at /metrics\n"
    assert head_only == (head.startswith(b"HEAD ") and status in (200, 404))


async def test_a_head_is_read_within_its_bound() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"GET /metrics HTTP/1.1\r\nA: b\r\n\r\nignored")
    assert await _read_head(receive) == b"GET /metrics HTTP/1.1\r\nA: b"
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"x" * (MAX_HEAD + 4096 + 1))
    assert await _read_head(receive) is None  # too large: not read on for ever
    send, receive = trio.testing.memory_stream_pair()
    await send.send_all(b"GET / HTTP/1.1\r\n")
    await send.aclose()
    assert await _read_head(receive) is None  # closed before the end of the head
