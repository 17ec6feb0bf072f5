"""A document's history (core/documents/history.py), the control op and `pttsync log`:
the core on in-memory stores (with a property over random writes and syncs on 2-3
replicas), then the CLI over a node serving real histories, and through a real node.
Every time is an explicit nanosecond integer; every wait has a deadline.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import time
from pathlib import Path

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pttsync
from pttsync import OplogStatus, Role
from pttsync.cli import build_parser
from pttsync.core import codec
from pttsync.core.docop import OP_PUT, put_payload
from pttsync.core.documents import DocumentStore, History, HistoryEntry, Resolution
from pttsync.core.documents.history import INLINE_VALUE, MAX_LIMIT
from pttsync.datadir import DataDir
from pttsync.net.control import serve_control
from pttsync.net.controlclient import control_call
from pttsync.net.controlwire import CONTROL_SOCKET, MAX_LINE
from pttsync.net.serve import open_node

from .helpers import make_identity
from .prochelpers import cli, short_root
from .test_control import FakeNode

T0 = pttsync.parse_iso("2026-02-01T10:00Z")
S = 10**9
M1 = make_identity("history-master")
ALICE = make_identity("history-alice")
BOB = make_identity("history-bob")
PHONE = make_identity("history-alice-phone")  # a device of Alice's
INFO = pttsync.new_topic(M1, name="history", create_time=T0, nonce=b"h" * 16)
TID = INFO.topic_id
VALID, PENDING = OplogStatus.VALID, OplogStatus.PENDING


def founder() -> DocumentStore:
    return DocumentStore(pttsync.found_topic(pttsync.Store.memory(), M1, INFO))


def sync(a: DocumentStore, b: DocumentStore, now: int) -> None:
    ra, rb = a.replica, b.replica
    assert ra.me is not None and rb.me is not None
    report = pttsync.sync_local(
        ra.store, rb.store, ra.topic_id, peer_a=ra.me, peer_b=rb.me, now=now, replica_a=ra,
        replica_b=rb,
    )  # fmt: skip
    assert report.converged and report.rejected == 0, report.as_json()


def converge(peers: list[DocumentStore], now: int, passes: int = 4) -> None:
    for _ in range(passes):
        for a, b in itertools.combinations(peers, 2):
            sync(a, b, now)
        digests = {p.replica.store.tree(TID).digest() for p in peers}
        if len(digests) == 1 and not any(p.replica.store.has_pending(TID) for p in peers):
            return
    raise AssertionError(f"no convergence after {passes} passes")


def with_members(*members: pttsync.Identity) -> tuple[DocumentStore, list[DocumentStore]]:
    """The founder, and one peer per member that knows it was admitted."""
    master = founder()
    peers = []
    for m in members:
        master.replica.set_role(m.peer_id, Role.MEMBER, now=T0 + 1)
        store = pttsync.Store.memory()
        store.add_topic(INFO)
        peers.append(DocumentStore(pttsync.Replica(store, TID, identity=m)))
    converge([master, *peers], T0 + 2)
    return master, peers


def hist(docs: DocumentStore, key: str, limit: int = 1000) -> History:
    h = docs.history(key, limit=limit)
    assert h is not None, f"{key!r} has no version here"
    return h


def by_id(h: History) -> dict[bytes, HistoryEntry]:
    return {e.oplog_id: e for e in h.versions}


def fork(docs: DocumentStore, key: str, value: object, at: int, prev: bytes | None) -> bytes:
    """A valid version written on `prev` whatever the document shows: a fork."""
    oplog, status = docs.replica.create(
        object_id=key.encode(), op=OP_PUT, value=put_payload(value), now=at, prev_id=prev
    )
    assert status is VALID
    return oplog.oplog_id


# -- 1. the core ---------------------------------------------------------------------------------


def test_a_chain_of_put_put_delete() -> None:
    docs = founder()
    assert docs.history("note") is None
    w1 = docs.put("note", {"text": "hello"}, now=T0 + 10)
    w2 = docs.put("note", "second", now=T0 + 20)
    w3 = docs.delete("note", now=T0 + 30)
    h = hist(docs, "note")
    assert [e.oplog_id for e in h.versions] == [w1.oplog_id, w2.oplog_id, w3.oplog_id]
    assert [e.op for e in h.versions] == ["put", "put", "delete"]
    assert [e.prev_id for e in h.versions] == [None, w1.oplog_id, w2.oplog_id]
    assert [e.superseded_by for e in h.versions] == [(w2.oplog_id,), (w3.oplog_id,), ()]
    assert [e.value for e in h.versions] == [{"text": "hello"}, "second", None]
    sizes = [len(codec.dumps(v)) for v in ({"text": "hello"}, "second")]
    assert [e.size for e in h.versions] == [*sizes, 0]
    assert [(e.shown, e.head) for e in h.versions] == [(False, False)] * 2 + [(True, True)]
    for e in h.versions:
        assert e.status is VALID and e.author == e.creator == M1.peer_id and e.device is None
        assert e.create_time == e.update_time and not e.in_conflict and e.resolution is None
        assert not e.value_omitted and e.closes == () and e.resolves == ()
    assert h.omitted == 0 and h.total == 3 and h.state == docs.get("note")
    assert not h.state.exists


def test_a_conflict_between_two_replicas_and_its_resolution() -> None:
    master, (alice,) = with_members(ALICE)
    base = master.put("plan", "v0", now=T0 + 5 * S)
    sync(alice, master, T0 + 6 * S)
    wm = master.put("plan", "by master", now=T0 + 10 * S)  # while apart
    wa = alice.put("plan", "by alice", now=T0 + 11 * S)  # pending on Alice's
    sync(alice, master, T0 + 20 * S)
    sync(alice, master, T0 + 21 * S)

    for docs in (master, alice):
        h = hist(docs, "plan")
        e = by_id(h)
        assert h.state.in_conflict and list(e) == [base.oplog_id, wm.oplog_id, wa.oplog_id]
        assert e[wm.oplog_id].conflicts_with == (wa.oplog_id,)
        assert e[wa.oplog_id].conflicts_with == (wm.oplog_id,)
        assert e[wa.oplog_id].author == ALICE.peer_id and e[wa.oplog_id].status is VALID
        assert e[wa.oplog_id].update_time > e[wa.oplog_id].create_time  # the master co-signed
        assert all(x.resolution is None for x in h.versions)  # the conflict is open
        assert e[wa.oplog_id].shown and e[wa.oplog_id].head and e[wm.oplog_id].head
        assert not e[base.oplog_id].in_conflict
        assert e[base.oplog_id].superseded_by == (wm.oplog_id, wa.oplog_id)

    wr = alice.resolve("plan", "agreed", now=T0 + 30 * S)
    pending = by_id(hist(alice, "plan"))[wr.oplog_id]
    assert pending.status is PENDING and pending.shown and not pending.head
    assert pending.op == "resolve" and pending.resolves == (wm.oplog_id,)
    assert pending.closes == () and pending.conflicts_with == ()  # not valid yet: not replayed
    sync(alice, master, T0 + 40 * S)
    sync(alice, master, T0 + 41 * S)

    histories = [hist(d, "plan") for d in (master, alice)]
    assert histories[0] == histories[1]  # the same everywhere
    e = by_id(histories[0])
    done = Resolution(wr.oplog_id, ALICE.peer_id, T0 + 30 * S)
    assert e[wm.oplog_id].resolution == e[wa.oplog_id].resolution == done
    assert e[wr.oplog_id].closes == tuple(sorted([wm.oplog_id, wa.oplog_id]))
    assert e[wr.oplog_id].shown and e[wr.oplog_id].head and e[wr.oplog_id].status is VALID
    assert e[wr.oplog_id].prev_id == wa.oplog_id and not histories[0].state.in_conflict


def test_pending_and_internal_pending_versions() -> None:
    master, (alice,) = with_members(ALICE)
    w = alice.put("doc", "draft", now=T0 + 10 * S)  # a member's write before the master signs
    e = hist(alice, "doc").versions[0]
    assert e.status is PENDING and e.shown and not e.head and e.author == ALICE.peer_id
    assert master.history("doc") is None  # not there yet

    # Alice certifies a phone: with two devices, the phone's write alone is internal-pending.
    assert alice.replica.set_device(PHONE.peer_id, True, now=T0 + 11 * S)[1] is VALID
    phone = DocumentStore(pttsync.Replica(alice.replica.store, TID, identity=PHONE))
    wp = phone.put("doc", "from the phone", now=T0 + 12 * S)
    h = hist(phone, "doc")
    assert [x.oplog_id for x in h.versions] == [w.oplog_id, wp.oplog_id]
    p = h.versions[1]
    assert p.status is OplogStatus.INTERNAL_PENDING and p.shown
    assert p.author == ALICE.peer_id and p.creator == p.device == PHONE.peer_id
    assert not h.versions[0].shown  # the newest pending write shows


def test_a_large_value_is_given_by_its_size_and_the_limit_keeps_the_newest() -> None:
    docs = founder()
    fits = "x" * (INLINE_VALUE - 3)  # a 3-byte CBOR head: exactly INLINE_VALUE bytes
    big = {"blob": "y" * 5000}
    docs.put("k", fits, now=T0 + 1)
    docs.put("k", big, now=T0 + 2)
    small, large = hist(docs, "k").versions
    assert small.size == INLINE_VALUE and small.value == fits and not small.value_omitted
    assert large.size == len(codec.dumps(big)) and large.value is None and large.value_omitted
    assert hist(docs, "k").state.value == big  # the document itself is whole

    writes = [docs.put("k", i, now=T0 + 10 + i).oplog_id for i in range(30)]
    h = hist(docs, "k", limit=10)
    assert [e.oplog_id for e in h.versions] == writes[-10:]  # oldest first, the newest 10
    assert h.omitted == 22 and h.total == 32 and h.versions[-1].shown
    assert hist(docs, "k", limit=MAX_LIMIT).omitted == 0
    for bad in (0, MAX_LIMIT + 1):
        with pytest.raises(pttsync.UsageError, match="limit"):
            docs.history("k", limit=bad)


def test_a_conflict_is_handed_on_along_a_branch_until_resolved() -> None:
    docs = founder()
    a = docs.put("k", "a", now=T0 + 1 * S).oplog_id
    b = fork(docs, "k", "b", T0 + 2 * S, a)
    c = fork(docs, "k", "c", T0 + 3 * S, a)
    b2 = fork(docs, "k", "b2", T0 + 4 * S, b)  # a plain write on one branch: still a fork
    e = by_id(hist(docs, "k"))
    assert e[b].conflicts_with == (c,) and e[c].conflicts_with == (b, b2)
    assert e[b2].conflicts_with == (c,) and e[b].superseded_by == (b2,)
    assert not any(x.resolution for x in e.values())
    r = docs.resolve("k", "merged", now=T0 + 5 * S).oplog_id
    e = by_id(hist(docs, "k"))
    assert e[r].closes == tuple(sorted([b2, c])) and e[r].prev_id == b2  # the later head
    for x in (b, b2, c):
        assert e[x].resolution == Resolution(r, M1.peer_id, T0 + 5 * S)
    assert e[a].resolution is None and not e[a].in_conflict


def test_a_skewed_clock_makes_no_conflict_out_of_a_chain() -> None:
    """A version made on a clock behind its previous one's is listed first, by create
    time, and is still no fork: the replay takes each version after what it supersedes."""
    docs = founder()
    first = docs.put("k", "first", now=T0 + 10 * S).oplog_id
    second = docs.put("k", "second", now=T0 + 30 * S).oplog_id
    third = docs.put("k", "third", now=T0 + 20 * S).oplog_id  # on `second`, clock behind
    h = hist(docs, "k")
    assert [x.oplog_id for x in h.versions] == [first, third, second]
    assert not any(x.in_conflict for x in h.versions) and not h.state.in_conflict
    assert by_id(h)[third].shown and by_id(h)[third].prev_id == second


def _check(docs: DocumentStore, key: str) -> History | None:
    """What history must say of `key` on `docs`, worked out from the store and `get`."""
    stored = docs.replica.store.by_objects(TID, [key.encode()])
    state, h = docs.get(key), docs.history(key)
    if not stored:
        assert h is None and state is None
        return None
    assert h is not None and state is not None and h.state == state
    expected = sorted(stored, key=lambda s: (s.oplog.create_time, s.oplog.oplog_id))
    assert [e.oplog_id for e in h.versions] == [s.oplog.oplog_id for s in expected]
    assert [e.status for e in h.versions] == [s.status for s in expected]
    assert [e.oplog_id for e in h.versions if e.shown] == [state.version.oplog_id]
    e, heads = by_id(h), {v.oplog_id for v in state.heads}
    assert {x.oplog_id for x in h.versions if x.head} == heads
    if state.in_conflict:  # every conflict `get` reports is an open conflict in the history
        for head in heads:
            assert heads - {head} <= set(e[head].conflicts_with)
            assert e[head].resolution is None
    for x in h.versions:
        for other in x.conflicts_with:
            assert x.oplog_id in e[other].conflicts_with
        if x.resolution is not None:
            assert x.in_conflict and e[x.resolution.oplog_id].closes
        if x.status is not VALID:
            assert not x.conflicts_with and not x.closes and not x.head
    return h


STEP = st.tuples(
    st.sampled_from(["put", "put", "delete", "resolve", "sync", "sync"]), st.integers(0, 2),
    st.integers(0, 2), st.sampled_from(["a", "a", "b"]),
)  # fmt: skip
"""One step: what, on which peer, with which (for a sync), on which key."""


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(2, 3), steps=st.lists(STEP, min_size=1, max_size=24))
def test_history_lists_what_the_store_holds_and_what_get_shows(
    n: int, steps: list[tuple[str, int, int, str]]
) -> None:
    master, members = with_members(*[ALICE, BOB][: n - 1])
    peers = [master, *members]
    t = T0 + 10 * S
    for i, (kind, a, b, key) in enumerate(steps):
        t += S
        p, q = peers[a % n], peers[b % n]
        if kind == "put":
            p.put(key, {"step": i}, now=t)
        elif kind == "delete":
            p.delete(key, now=t)
        elif kind == "resolve":
            state = p.get(key)
            if state is not None and state.in_conflict:
                p.resolve(key, f"resolved at {i}", now=t)
        elif p is not q:
            sync(p, q, t)
        for docs in peers:
            _check(docs, key)
    converge(peers, t + S)
    for key in ("a", "b"):
        histories = [_check(docs, key) for docs in peers]
        assert all(h == histories[0] for h in histories)  # the same oplogs, the same history
        state = peers[-1].get(key)
        if state is None or not state.in_conflict:
            continue
        # Someone closes the conflict left open: its heads name that resolution, and every
        # version that was ever in conflict now has one (closed, or handed on to one closed).
        were = {e.oplog_id for h in histories[:1] if h for e in h.versions if e.in_conflict}
        r, who = peers[-1].resolve(key, "closed", now=t + 2 * S).oplog_id, [M1, ALICE, BOB][n - 1]
        converge(peers, t + 3 * S)
        h = _check(peers[0], key)
        assert h is not None and not h.state.in_conflict
        e = by_id(h)
        assert set(e[r].closes) == {v.oplog_id for v in state.heads}
        for oid in were:
            assert e[oid].resolution is not None
        for v in state.heads:
            assert e[v.oplog_id].resolution == Resolution(r, who.peer_id, t + 2 * S)


# -- 2. the control op and the CLI over a node serving real histories ------------------------------


class HistoryNode(FakeNode):
    """The control test's fake node, with real histories from a document store."""

    def __init__(self, docs: DocumentStore) -> None:
        super().__init__()
        self.store = docs
        self.huge: History | None = None

    def history(self, key: str, *, topic: bytes | None = None, limit: int = 1000) -> History | None:
        if topic not in (None, self.topics[0].topic_id):
            return None
        if key == "huge":
            return self.huge
        return self.store.history(key, limit=limit)


def conflicted() -> tuple[DocumentStore, dict[str, bytes]]:
    """A document forked, resolved, then written on; and a document with an open conflict."""
    docs = founder()
    ids = {"a": docs.put("plan", "a", now=T0 + 1 * S).oplog_id}
    ids["b"] = fork(docs, "plan", {"b": 1}, T0 + 2 * S, ids["a"])
    ids["c"] = fork(docs, "plan", "c", T0 + 3 * S, ids["a"])
    ids["r"] = docs.resolve("plan", "merged", now=T0 + 4 * S).oplog_id
    ids["big"] = docs.put("plan", "z" * 3000, now=T0 + 5 * S).oplog_id
    ids["x"] = docs.put("open", 1, now=T0 + 6 * S).oplog_id
    ids["y"] = fork(docs, "open", 2, T0 + 7 * S, None)
    return docs, ids


async def test_cli_log_over_the_control_socket(
    tmp_path: Path, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    docs, ids = conflicted()
    hexes, data = {k: v.hex() for k, v in ids.items()}, str(tmp_path)
    await nursery.start(serve_control, HistoryNode(docs), tmp_path / CONTROL_SOCKET)
    with trio.fail_after(20):
        assert await cli("log", "--data", data, "plan") == 0
        out = capsys.readouterr().out
        assert out.startswith("document plan: 5 versions (exists)\n\n")
        blocks = out.split("\n\n")[1:]
        order = ["big", "r", "c", "b", "a"]  # newest first
        assert [b.splitlines()[0].split()[1] for b in blocks] == [hexes[k] for k in order]
        assert blocks[0].splitlines()[0].endswith("(shown now, head)")
        assert f"Author:   {pttsync.peer_id_text(M1.peer_id)}" in blocks[0]
        assert "Value:    <3,003 bytes>" in blocks[0] and "Status:   valid" in blocks[0]
        assert "Op:       resolve" in blocks[1] and 'Value:    "merged"' in blocks[1]
        assert f"Closes:   the conflict of {min(hexes['b'], hexes['c'])}" in blocks[1]
        assert f"Conflict: in conflict with {hexes['b']}" in blocks[2]
        assert f"Resolved: by {hexes['r']}" in blocks[2] and f"by {hexes['r']}" in blocks[3]
        assert 'Value:    {"b": 1}' in blocks[3] and "Conflict" not in blocks[4]
        assert "Prev:     (none: the first version here)" in blocks[4]

        assert await cli("log", "--data", data, "open") == 0
        out = capsys.readouterr().out
        assert "(exists, in conflict)" in out and "Resolved: not yet" in out

        assert await cli("log", "--data", data, "plan", "--json") == 0
        h = json.loads(capsys.readouterr().out)
        assert [v["oplog_id"] for v in h["versions"]] == [hexes[k] for k in reversed(order)]
        assert h["shown"] == hexes["big"] and h["omitted"] == 0 and h["total"] == 5
        big = h["versions"][-1]
        assert big["value"] is None and big["value_omitted"] and big["size"] == 3003
        resolved = {v["oplog_id"]: v["resolved_by"] for v in h["versions"]}
        assert resolved[hexes["b"]]["oplog_id"] == hexes["r"] and resolved[hexes["a"]] is None
        assert h["versions"][0]["author"] == pttsync.peer_id_text(M1.peer_id)

        assert await cli("log", "--data", data, "plan", "--limit", "2") == 0
        out = capsys.readouterr().out
        assert out.count("\noplog ") == 2
        assert out.endswith("(3 older versions not shown: --limit 5 shows them)\n")

        assert await cli("log", "--data", data, "missing") == 1
        out, err = capsys.readouterr()
        assert out == "" and "not found: missing" in err
        assert await cli("log", "--data", data, "--topic", "bb", "plan") == 1
        assert "not found: plan" in capsys.readouterr().err

        # The control op itself: its fields are checked.
        h = await control_call(tmp_path, {"op": "history", "key": "plan", "limit": 1})
        assert len(h["versions"]) == 1 and h["omitted"] == 4
        assert await control_call(tmp_path, {"op": "history", "key": "nothing"}) is None
        for bad, message in (
            ({"limit": 0}, "limit"),
            ({"limit": "3"}, "'limit' is a whole number"),
            ({"before": 1}, "takes no field"),
            ({"key": None}, "needs 'key'"),
        ):
            with pytest.raises(pttsync.UsageError, match=message):
                await control_call(tmp_path, {"op": "history", "key": "plan", **bad})


async def test_a_history_too_long_for_a_line_keeps_its_newest_versions(
    tmp_path: Path, nursery: trio.Nursery, capsys: pytest.CaptureFixture[str]
) -> None:
    docs, _ = conflicted()
    node = HistoryNode(docs)
    real = hist(docs, "plan")
    template = real.versions[0]
    n = MAX_LINE // 1000  # each over 1,000 bytes of JSON: more than a line holds
    entries = tuple(
        dataclasses.replace(template, oplog_id=i.to_bytes(32, "big"), create_time=T0 + i,
                            value="v" * 1000, size=1003)
        for i in range(n)
    )  # fmt: skip
    node.huge = History("huge", entries, 7, real.state)
    await nursery.start(serve_control, node, tmp_path / CONTROL_SOCKET)
    with trio.fail_after(30):
        h = await control_call(tmp_path, {"op": "history", "key": "huge"})
        kept = len(h["versions"])
        assert n // 4 < kept < n and h["omitted_to_fit"] == n - kept
        assert h["omitted"] == 7 + n - kept and h["total"] == n + 7
        assert [v["create_time_ns"] for v in h["versions"]] == [
            T0 + i for i in range(n - kept, n)
        ]  # the newest, oldest first
        assert len(json.dumps(h, separators=(",", ":"))) < MAX_LINE
        assert await cli("log", "--data", str(tmp_path), "huge") == 0
        note = capsys.readouterr().out.splitlines()[-1]
        assert note.endswith(f"{n - kept:,} of them to fit the node's answer in one line)")


async def test_cli_usage_errors_and_no_node_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(10):
        assert await cli("log", "--data", str(tmp_path), "k") == 2
    assert f"no node is running on {tmp_path}" in capsys.readouterr().err
    args = build_parser().parse_args(["log", "--data", "d", "k"])
    assert args.limit == 1000 and args.topic is None and not args.json
    for bad in ("0", str(MAX_LIMIT + 1), "x"):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(["log", "--data", "d", "k", "--limit", bad])
        assert exc.value.code == 2 and "argument --limit" in capsys.readouterr().err


# -- 3. through a real node on a data directory ---------------------------------------------------


async def test_log_through_a_real_node(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A master's data directory where a member's concurrent write made a conflict, which
    the member resolved; the node serves the history on its control socket."""
    with short_root(tmp_path) as root:
        d, _, _ = DataDir.init(
            root / "peer-0", topic_name="main", now=time.time_ns(), nonce=os.urandom(16)
        )
        t = time.time_ns() - 60 * S
        me = d.identity()
        with d.open_store() as store:
            info = store.topics()[0]
            master = DocumentStore(pttsync.Replica(store, info.topic_id, identity=me))
            master.replica.set_role(ALICE.peer_id, Role.MEMBER, now=t)
            other = pttsync.Store.memory()
            other.add_topic(info)
            alice = DocumentStore(pttsync.Replica(other, info.topic_id, identity=ALICE))
            master.put("plan", "park", now=t + S)
            sync(alice, master, t + 2 * S)
            wm = master.put("plan", "park at 11", now=t + 3 * S)
            wa = alice.put("plan", "cafe", now=t + 4 * S)  # pending, co-signed in the sync
            sync(alice, master, t + 5 * S)
            wr = alice.resolve("plan", "cafe at 11", now=t + 6 * S)
            sync(alice, master, t + 7 * S)
        async with open_node(d.path) as node:
            assert node.documents().history("plan") is not None
            with trio.fail_after(30):
                assert await cli("log", "--data", str(d.path), "plan") == 0
                out = capsys.readouterr().out
                assert await cli("log", "--data", str(d.path), "plan", "--json") == 0
                h = json.loads(capsys.readouterr().out)
                assert await cli("log", "--data", str(d.path), "nothing") == 1
    assert out.startswith("document plan: 4 versions (exists)")
    assert out.count(f"Resolved: by {wr.oplog_id.hex()}") == 2
    assert f"Author:   {pttsync.peer_id_text(ALICE.peer_id)}" in out
    e = {v["oplog_id"]: v for v in h["versions"]}
    assert e[wm.oplog_id.hex()]["conflicts_with"] == [wa.oplog_id.hex()]
    assert e[wa.oplog_id.hex()]["resolved_by"]["author"] == pttsync.peer_id_text(ALICE.peer_id)
    assert e[wr.oplog_id.hex()]["shown"] and e[wr.oplog_id.hex()]["op"] == "resolve"
