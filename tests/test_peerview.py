"""The peers view: refusals at the door, the address book's errors, --join warnings.

Units first (Refusals and AddressBook, with times passed in, and Hypothesis
for their bounds), then nodes on a MemoryNetwork under the autojump clock:
a peer that is not a member yet dials a master, is refused, is listed by
the master with its full peer ID, backs off and warns once per backoff
period, and comes in once the master admits it.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import TYPE_CHECKING

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from pttsync.core.identity import peer_id_text
from pttsync.core.lifecycle.governance import Role
from pttsync.net.addressbook import STABLE, AddressBook
from pttsync.net.refusals import KINDS, NO_ROOM, NOT_MEMBER, Refusals

from .nethelpers import make_cluster, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from pttsync.net.node import Node

HOUR = 3600 * 10**9
PEERS = [bytes([i]) * 32 for i in range(8)]


# -- Refusals ----------------------------------------------------------------------


def test_a_refusal_is_listed_with_its_reason_and_count_then_forgotten() -> None:
    r = Refusals()
    r.add(PEERS[0], "10.0.0.1:7400", NOT_MEMBER, "not a member", now=100)
    r.add(PEERS[0], "10.0.0.1:7400", NOT_MEMBER, "not a member", now=200)
    r.add(PEERS[1], "10.0.0.2:7400", NO_ROOM, "too many peers", now=300)
    recent = r.recent(400)
    assert [x.peer_id for x in recent] == [PEERS[1], PEERS[0]]  # the most recent first
    assert (recent[1].count, recent[1].first, recent[1].last) == (2, 100, 200)
    assert r.totals == {NOT_MEMBER: 2, NO_ROOM: 1}
    r.forget(PEERS[0])
    assert [x.peer_id for x in r.recent(400)] == [PEERS[1]]
    assert r.recent(300 + HOUR + 1) == []  # an hour later
    assert r.totals == {NOT_MEMBER: 2, NO_ROOM: 1}  # the totals stay, for the metrics


def test_a_refusal_after_the_window_starts_a_new_count() -> None:
    r = Refusals(window=1000)
    r.add(PEERS[0], "a", NOT_MEMBER, "x", now=0)
    r.add(PEERS[0], "a", NOT_MEMBER, "x", now=5000)
    (only,) = r.recent(5000)
    assert (only.count, only.first) == (1, 5000)


def test_refusals_reject_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Refusals().add(PEERS[0], "a", "bogus", "x", now=0)


@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.sampled_from(KINDS), st.integers(0, 3000)), max_size=60
    ),
    st.integers(1, 5),
)
def test_refusals_stay_bounded_and_recent(
    events: list[tuple[int, str, int]], max_entries: int
) -> None:
    r = Refusals(window=1000, max_entries=max_entries)
    now = 0
    last: dict[bytes, int] = {}
    for peer, kind, step in events:
        now += step
        r.add(PEERS[peer], "a", kind, kind, now)
        last[PEERS[peer]] = now
        assert len(r) <= max_entries
        recent = r.recent(now)
        assert all(now - x.last <= 1000 for x in recent)
        assert [x.last for x in recent] == sorted((x.last for x in recent), reverse=True)
        assert all(last[x.peer_id] == x.last for x in recent)
        assert recent[0].peer_id == PEERS[peer]  # the newest is always kept
    assert sum(r.totals.values()) == len(events)


# -- the address book ------------------------------------------------------------------


def _book() -> AddressBook:
    return AddressBook(random.Random(1), base=1.0, cap=300.0)


def test_a_failure_keeps_its_reason_and_time() -> None:
    book = _book()
    book.add("h:1")
    wait = book.failed("h:1", 10.0, reason="Connection refused")
    entry = book.get("h:1")
    assert entry is not None
    assert (entry.failures, entry.last_error, entry.last_error_at) == (1, "Connection refused", 10)
    assert entry.next_try == 10.0 + wait


def test_a_peer_that_sends_us_away_at_once_is_a_failure_and_a_stable_link_forgives() -> None:
    book = _book()
    book.add("h:1")
    book.connected("h:1", PEERS[0])
    book.ended("h:1", 1.0, lasted=0.1, reason="the peer said: no", sent_away=True)
    book.connected("h:1", PEERS[0])
    book.ended("h:1", 5.0, lasted=0.1, reason="the peer said: no", sent_away=True)
    entry = book.get("h:1")
    assert entry is not None and entry.failures == 2  # a connection does not reset them
    assert entry.last_error == "the peer said: no"
    book.connected("h:1", PEERS[0])
    book.ended("h:1", 100.0, lasted=STABLE, sent_away=False)
    assert entry.failures == 0
    book.ended("h:1", 200.0, lasted=STABLE + 1, sent_away=True)  # a Bye after a long life
    assert entry.failures == 0


@given(st.lists(st.floats(0.01, 400.0), min_size=1, max_size=40))
@settings(deadline=None)
def test_a_join_address_warns_at_most_once_per_backoff_period(gaps: list[float]) -> None:
    book = _book()
    book.add("j:1", pinned=True)
    warned: list[tuple[float, float]] = []  # (when, the wait then)
    handler = _Capture()
    logger = logging.getLogger("pttsync.net.addressbook")
    logger.addHandler(handler)
    try:
        now = 0.0
        for gap in gaps:
            now += gap
            before = len(handler.records)
            wait = book.failed("j:1", now, reason="Connection refused")
            if len(handler.records) > before:
                warned.append((now, wait))
    finally:
        logger.removeHandler(handler)
    assert warned and warned[0][0] == gaps[0]  # the first failure is always said
    for (t0, wait), (t1, _) in itertools.pairwise(warned):
        assert t1 >= t0 + wait
    assert all(r.levelno == logging.WARNING for r in handler.records)
    assert "cannot join j:1: Connection refused" in handler.records[0].getMessage()


def test_an_address_not_given_with_join_fails_quietly(caplog: pytest.LogCaptureFixture) -> None:
    book = _book()
    book.add("x:1")
    with caplog.at_level(logging.INFO, logger="pttsync.net.addressbook"):
        book.failed("x:1", 1.0, reason="Connection refused")
    assert not caplog.records


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.records.append(record)


# -- nodes --------------------------------------------------------------------------------


async def test_a_master_sees_who_it_refused_and_admits_them(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = make_cluster(2, members=0)  # peer 1 holds the topic but is not a member yet
    newcomer = peer_id_text(cluster.identities[1].peer_id)
    with caplog.at_level(logging.WARNING, logger="pttsync.net.addressbook"):
        async with cluster.node(0) as master:
            join = (cluster.address(0),)
            async with cluster.node(1, join=join) as node:
                await wait_until([master, node], lambda: len(master.refusals.recent(
                    master.clock())) == 1, limit=60)  # fmt: skip
                view = master.peer_view()
                (refused,) = view["refused"]
                assert refused["peer_id"] == newcomer  # in full: `member add` takes it
                assert refused["reason"] == "not a member of any topic this node serves"
                assert view["connected"] == []
                assert master.status()["refused_last_hour"] == 1
                # The newcomer sees why, and backs off.
                await _poll(lambda: _failures(node, join[0]) >= 3, limit=600)
                (known,) = node.peer_view()["known"]
                assert known["address"] == join[0] and known["join"] is True
                assert known["last_error"].startswith("the peer said: not a member")
                assert known["next_try_in_s"] is not None and known["failures"] >= 3
                status = node.status()
                assert (status["known_not_connected"], status["failing"]) == (1, 1)
                # The master admits it: it comes in, and is no longer listed as refused.
                await master.set_role(cluster.identities[1].peer_id, Role.MEMBER)
                await wait_until([master, node], lambda: len(master.links) == 1, limit=900)
                assert master.peer_view()["refused"] == []
                assert node.peer_view()["known"] == []
    said = [r.getMessage() for r in caplog.records if "cannot join" in r.getMessage()]
    assert said and all("the peer said: not a member" in s for s in said)
    # One warning per backoff period: far fewer than the dials.
    entry_failures = len(said)
    assert entry_failures <= 12


async def test_a_join_address_with_nothing_listening_is_explained(
    autojump_clock: MockClock,
) -> None:
    cluster = make_cluster(1)
    async with cluster.node(0, join=("nowhere:7400",)) as node:
        await _poll(lambda: _failures(node, "nowhere:7400") >= 2, limit=60)
        (known,) = node.peer_view()["known"]
        assert known["last_error"] == "connection refused"
        assert known["peer_id"] is None and known["ever_connected"] is False
        assert node.status()["failing"] == 1


def _failures(node: Node, address: str) -> int:
    entry = node.book.get(address)
    return 0 if entry is None else entry.failures


async def _poll(predicate: Callable[[], bool], *, limit: float) -> None:
    """Re-check `predicate` every virtual half second (the book tells no one), within `limit`."""
    with trio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - the book has no event to wait on
            await trio.sleep(0.5)
