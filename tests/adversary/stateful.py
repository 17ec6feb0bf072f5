"""An adversarial peer in the core, without sockets: every message in every state.

`SyncAdversary` is a Hypothesis state machine.  A *victim* (a store, one
SyncContext, a Requester for its own rounds and a Receiver for the rogue's)
and a *rogue* (the same, on a store of its own) exchange the messages the
real code makes.  At random steps the rogue's traffic to the victim is
dropped, duplicated, reordered, replayed from earlier, or one field of a
message is replaced by a hostile value (`hostile_value`): a foreign topic or
round, a sequence number not in flight, lying child hashes and leaf counts,
keys and ranges out of order, lists at their limits, records of another
topic, tampered or forged records, a member's write posing as valid, future
timestamps, records whose previous log never comes.  Pushes (the node's Push
path) go through the same Handle steps and the same boundary.

After every step:

* only `RemoteProtocolError` left the victim's sessions (anything else fails
  the machine as it is raised);
* the victim's store is consistent (`check`), every valid oplog in it
  verifies and is valid under the topic's governance, and nothing valid it
  held is gone;
* the victim's per-peer state is within its bounds.

At the end, an honest partner that never met the rogue still converges
with the victim.  A protocol violation "closes the connection": both
queues are dropped and the victim's sessions for the rogue start afresh,
as the node does.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from typing import Any

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)

from pttsync.core.lifecycle.handle import MAX_WAITING
from pttsync.core.merkle import Leaf, Level
from pttsync.core.oplog import Oplog, OplogStatus, create_oplog
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.sync.messages import ChildRef, Item, ListNode, Message
from pttsync.core.sync.msgcodec import decode_message, encode_message
from pttsync.core.sync.receiver import Receiver
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import State, SyncConfig, SyncContext, remote_input
from pttsync.core.timeutil import HOUR_NS, MAX_TIME
from pttsync.errors import RemoteProtocolError, UsageError
from pttsync.localsync import round_id, sync_local

from ..synchelpers import (
    ADMIT,
    FOREIGN,
    NOW,
    OLD_END,
    OLD_START,
    OTHER,
    RECENT_START,
    TID,
    WRITER,
    copy_store,
    digest,
    gen,
    ids,
    member_write,
    new_store,
    put,
)
from .engine import Budget, Failure, Outcome, describe

VICTIM, ROGUE, HONEST = b"V" * 32, b"R" * 32, b"H" * 32
CONFIG = SyncConfig(max_queued=20_000, pipeline=4)
MAX_IN_FLIGHT = 64  # messages queued toward one side before the oldest are dropped
MAX_HISTORY = 32  # messages the rogue remembers, to replay
ACTIONS = ("deliver",) * 4 + (
    "mutate",
    "mutate",
    "smuggle",
    "smuggle",
    "drop",
    "duplicate",
    "replay",
)
"""What the rogue does with a message it sends the victim, weighted."""


@functools.cache
def shared() -> tuple[Oplog, ...]:
    return (ADMIT, *gen(30, OLD_START, OLD_END, seed=41), *gen(10, RECENT_START, NOW, seed=42))


@functools.cache
def rogue_only() -> tuple[Oplog, ...]:
    return tuple(gen(8, OLD_START, NOW, seed=43))


@functools.cache
def victim_only() -> tuple[Oplog, ...]:
    return tuple(gen(8, OLD_START, NOW, seed=44))


@functools.cache
def hostile_records() -> tuple[bytes, ...]:
    """Records no honest peer sends: each must be refused on its own or with its message."""
    good = gen(4, RECENT_START, NOW, seed=45)
    tampered = bytearray(encode_oplog(good[0]))
    tampered[len(tampered) // 2] ^= 0x40
    stranger = create_oplog(  # a valid signature by someone who is not a member
        OTHER, topic_id=TID, object_id=b"k", op=1, value={"v": 1}, create_time=NOW - HOUR_NS
    )
    future = create_oplog(
        WRITER, topic_id=TID, object_id=b"f", op=1, value={"v": 1}, create_time=NOW + 48 * HOUR_NS
    )
    orphan = create_oplog(  # its previous log never arrives
        WRITER, topic_id=TID, object_id=b"o", op=1, value={"v": 1},
        create_time=NOW - HOUR_NS, prev_id=b"\x07" * 32,
    )  # fmt: skip
    return (
        encode_oplog(gen(1, RECENT_START, NOW, seed=46, topic=FOREIGN)[0]),
        bytes(tampered),
        encode_oplog(stranger),
        encode_oplog(member_write(NOW - HOUR_NS)),  # pending: not valid without a master
        encode_oplog(future),
        encode_oplog(orphan),
        encode_oplog(good[1])[:-3],  # truncated
        b"\xa0",  # an empty map
    )


def _key(data: st.DataObject) -> Any:
    return data.draw(
        st.one_of(
            st.none(),
            st.tuples(st.sampled_from([0, NOW, MAX_TIME, NOW - HOUR_NS]), st.binary(max_size=32)),
        )
    )


def hostile_value(name: str, value: Any, data: st.DataObject) -> Any:
    """A hostile replacement for field `name` (of current `value`) of a sync message."""
    hashes = st.binary(min_size=32, max_size=32)
    times = st.sampled_from([0, 1, NOW, NOW + HOUR_NS, MAX_TIME, OLD_START, OLD_END])
    if name == "topic":
        return data.draw(st.sampled_from([FOREIGN.topic_id, b"\x00" * 32]))
    if name == "round":
        return data.draw(st.binary(min_size=16, max_size=16))
    if name == "seq":
        return data.draw(st.sampled_from([0, value - 1, value + 1, value + 1000, 2**31]))
    if name in ("last", "more", "pending"):
        return not value
    if name in ("list_digest", "window_digest"):
        return data.draw(st.binary(max_size=160))
    if name == "to_sync_time":
        return data.draw(times)
    if name == "list_differs":
        return data.draw(st.integers(0, 31))
    if name in ("lo", "hi", "cont", "next"):
        return _key(data)
    if name == "oplogs":
        bad = data.draw(st.lists(st.sampled_from(hostile_records()), min_size=1, max_size=4))
        keep = list(value)[: data.draw(st.integers(0, len(value)))]
        return tuple(keep + bad)
    if name == "want":
        return tuple(data.draw(st.lists(hashes, max_size=40)))
    if name == "want_ranges":
        return tuple(
            data.draw(st.lists(st.tuples(times, times, st.tuples(times, hashes)), max_size=6))
        )
    if name == "leaves":
        return _lying_leaves(value, data)
    if name == "nodes":
        node = st.builds(ListNode, st.sampled_from(list(Level)), times, hashes)
        return tuple(data.draw(st.lists(node, max_size=12)))
    if name == "items":
        return tuple(_lying_item(it, data) for it in value) or (
            Item(Level.YEAR, 0, OLD_START, b"\x01" * 32, False, ()),
        )
    if name == "reason":
        return data.draw(st.text(max_size=300))
    return value


def _lying_leaves(value: tuple[Leaf, ...], data: st.DataObject) -> tuple[Leaf, ...]:
    how = data.draw(st.sampled_from(["reverse", "tamper", "duplicate", "stranger"]))
    leaves = list(value)
    if how == "reverse":
        return tuple(reversed(leaves))
    if how == "duplicate":
        return tuple(leaves + leaves[:1])
    if how == "tamper" and leaves:
        first = leaves[0]
        return (Leaf(first.time, first.oplog_id, b"\x02" * 32), *leaves[1:])
    return (*leaves, Leaf(NOW - HOUR_NS, b"\x03" * 32, b"\x04" * 32))


def _lying_item(item: Item, data: st.DataObject) -> Item:
    how = data.draw(st.sampled_from(["hash", "children", "leaf_flag", "depth", "start"]))
    if how == "hash":
        return dataclasses.replace(item, hash=data.draw(st.binary(min_size=32, max_size=32)))
    if how == "children":
        kids = list(item.children)[: data.draw(st.integers(0, len(item.children)))]
        extra = ChildRef(item.start, b"\x05" * 32)
        return dataclasses.replace(item, children=(*kids, extra))  # type: ignore[arg-type]
    if how == "leaf_flag":
        return dataclasses.replace(item, leaf_children=not item.leaf_children)
    if how == "depth":
        return dataclasses.replace(item, depth=item.depth + 1)
    return dataclasses.replace(item, start=item.start + HOUR_NS)


def wire(msg: Message) -> Message | None:
    """`msg` as the victim would decode it; None if it cannot cross the wire at all."""
    try:
        return decode_message(encode_message(msg))
    except (UsageError, RemoteProtocolError):
        return None  # over the frame limit, or refused by the decoder: the codec's business


class SyncAdversary(RuleBasedStateMachine):
    examples_run = 0  # finished examples in this process (tools/fuzz.py reports it)

    def __init__(self) -> None:
        super().__init__()
        self.victim = new_store(FOREIGN)
        put(self.victim, (*shared(), *victim_only()))
        rogue = new_store(FOREIGN)
        put(rogue, (*shared(), *rogue_only()))
        # A member's writes wait for a master's signature: rounds go on to postsync.
        pending = [(member_write(NOW - k * HOUR_NS, f"m{k}"), OplogStatus.PENDING) for k in (1, 2)]
        rogue.write_batch(TID, pending)
        self.honest = copy_store(rogue)  # what an honest peer holds: the rogue's records
        self.vctx = SyncContext(self.victim, TID, config=CONFIG)
        self.rctx = SyncContext(rogue, TID, config=CONFIG)
        self._connect()
        self.rounds = 0
        self.now = NOW
        self.history: list[tuple[str, Message]] = []
        self.held: set[bytes] = ids(self.victim)
        self.verified: set[bytes] = set()
        self.violations = 0

    def _connect(self) -> None:
        """A fresh connection: new sessions on both sides, nothing in flight."""
        self.v_req = Requester(self.vctx, ROGUE)
        self.v_rcv = Receiver(self.vctx, ROGUE)
        self.r_req = Requester(self.rctx, VICTIM)
        self.r_rcv = Receiver(self.rctx, VICTIM)
        # ("req" | "rcv", message): which of the victim's sessions takes it.
        self.to_victim: list[tuple[str, Message]] = []

    def _round_id(self) -> bytes:
        self.rounds += 1
        return round_id(b"adversary", self.rounds)

    # -- the victim: only RemoteProtocolError may leave it ---------------------------------

    def _victim_takes(self, role: str, msg: Message) -> None:
        session: Requester | Receiver = self.v_req if role == "req" else self.v_rcv
        try:
            out = session.receive(msg, self.now)
        except RemoteProtocolError:
            self.violations += 1
            self._connect()  # the node closes the connection
            return
        back = "rcv" if role == "req" else "req"
        for m in out:  # the rogue's real sessions answer at once
            self._rogue_takes(back, m)

    def _rogue_takes(self, role: str, msg: Message) -> None:
        session: Requester | Receiver = self.r_req if role == "req" else self.r_rcv
        try:
            out = session.receive(msg, self.now)
        except RemoteProtocolError:
            return  # what the rogue did to the victim upset its own session: its problem
        back = "rcv" if role == "req" else "req"
        for m in out:
            self.history = [*self.history, (back, m)][-MAX_HISTORY:]
        self.to_victim = (self.to_victim + [(back, m) for m in out])[-MAX_IN_FLIGHT:]

    # -- rules -------------------------------------------------------------------------------

    @precondition(lambda self: self.v_req.state not in (State.SYNCING, State.POSTSYNC))
    @rule()
    def victim_starts_a_round(self) -> None:
        for m in self.v_req.start(self.now, self._round_id()):
            self._rogue_takes("rcv", m)

    @precondition(lambda self: self.r_req.state not in (State.SYNCING, State.POSTSYNC))
    @rule()
    def rogue_starts_a_round(self) -> None:
        self.to_victim += [("rcv", m) for m in self.r_req.start(self.now, self._round_id())]

    @precondition(lambda self: bool(self.to_victim))
    @rule(data=st.data(), action=st.sampled_from(ACTIONS))
    def victim_reads(self, data: st.DataObject, action: str) -> None:
        """The next message the rogue sends, in any order, and what it does to it."""
        i = data.draw(st.integers(0, len(self.to_victim) - 1))
        role, msg = self.to_victim.pop(i)
        if action == "drop":
            return
        if action == "duplicate":
            self.to_victim.insert(i, (role, msg))
        elif action == "replay" and self.history:
            role, msg = data.draw(st.sampled_from(self.history))
        elif action == "mutate":
            field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(msg)]))
            value = hostile_value(field, getattr(msg, field), data)
            role = data.draw(st.sampled_from([role, role, "req", "rcv"]))  # or to the other role
            arrived = wire(dataclasses.replace(msg, **{field: value}))
            if arrived is None:
                return
            msg = arrived
        elif action == "smuggle" and hasattr(msg, "oplogs"):
            value = hostile_value("oplogs", msg.oplogs, data)
            arrived = wire(dataclasses.replace(msg, oplogs=value))  # type: ignore[call-arg]
            if arrived is None:
                return
            msg = arrived
        self._victim_takes(role, msg)

    @precondition(lambda self: bool(self.to_victim))
    @rule()
    def honest_exchange(self) -> None:
        """The rogue behaves for a while: rounds run on to postsync and end."""
        for _ in range(200):
            if not self.to_victim:
                return
            role, msg = self.to_victim.pop(0)
            self._victim_takes(role, msg)

    @rule(data=st.data())
    def push(self, data: st.DataObject) -> None:
        """A Push: the node hands pushed records to the same Handle steps, in the same boundary."""
        pool = [*hostile_records(), *(encode_oplog(o) for o in rogue_only())]
        records = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
        pending = data.draw(st.booleans())
        handler = self.vctx.handler
        try:
            with remote_input(penalty=5):
                if pending:
                    handler.handle_pending_oplogs(records, self.now)
                else:
                    handler.handle_oplogs(records, self.now)
        except RemoteProtocolError:
            self.violations += 1

    @rule(minutes=st.integers(1, 120))
    def time_passes(self, minutes: int) -> None:
        self.now += minutes * 60 * 10**9

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def store_holds_only_valid_oplogs_and_loses_none(self) -> None:
        assert self.victim.check(TID) == []
        now_held = ids(self.victim)
        assert self.held <= now_held, f"lost {len(self.held - now_held)} valid oplogs"
        replica = self.vctx.replica
        for oid in now_held - self.verified:
            stored = self.victim.get(TID, oid)
            assert stored is not None and stored.status is OplogStatus.VALID
            decode_oplog(encode_oplog(stored.oplog))  # every signature verifies
            assert replica.assess(stored.oplog) is OplogStatus.VALID
            self.verified.add(oid)
        self.held = now_held

    @invariant()
    def per_peer_state_is_bounded(self) -> None:
        assert self.vctx.handler.waiting <= MAX_WAITING
        assert len(self.v_req._out) <= CONFIG.pipeline + 1
        assert self.v_req._queued <= CONFIG.max_queued
        assert len(self.to_victim) <= MAX_IN_FLIGHT + 8

    def teardown(self) -> None:
        """An honest partner that never met the rogue still converges with the victim."""
        report = sync_local(
            self.victim, self.honest, TID, peer_a=VICTIM, peer_b=HONEST, now=self.now,
            max_rounds=6,
        )  # fmt: skip
        assert report.converged, report.as_json()
        assert digest(self.victim) == digest(self.honest)
        assert self.victim.check(TID) == []
        SyncAdversary.examples_run += 1


STEPS = 40
"""Steps per example: enough for a few rounds, postsync included, with attacks between."""


def run_adversary(examples: int, seed_value: int, *, steps: int = STEPS) -> int:
    """Run `examples` examples from `seed_value`; how many finished.  Raises on a failure,
    after Hypothesis prints the shortest program of steps that still fails."""
    before = SyncAdversary.examples_run
    test = get_state_machine_test(
        SyncAdversary,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    seed(seed_value)(test)()
    return SyncAdversary.examples_run - before


def adversary_target(rng: random.Random, budget: Budget) -> Outcome:
    """tools/fuzz.py's `adversary` target: the state machine in batches of seeded examples.

    `budget.inputs` counts examples (of STEPS steps each).  A failure is
    reported with its batch seed (8 bytes, big-endian) as the input; Hypothesis
    prints the shortest failing program of steps above it.
    """
    outcome = Outcome()
    started = time.monotonic()
    while True:
        if budget.inputs is not None:
            want = budget.inputs - outcome.inputs
        else:
            assert budget.seconds is not None
            want = BATCH if time.monotonic() - started < budget.seconds else 0
        if want <= 0:
            break
        batch_seed = rng.getrandbits(63)
        try:
            outcome.inputs += run_adversary(min(want, BATCH), batch_seed)
        except Exception as exc:  # the machine failed: an invariant, or a bug of ours
            error, where = describe(exc)
            outcome.inputs += 1
            outcome.fail(Failure("adversary", batch_seed.to_bytes(8, "big"), error, where))
        if budget.progress is not None:
            budget.progress(outcome.inputs, outcome.failures)
    outcome.seconds = time.monotonic() - started
    return outcome


BATCH = 20
"""Examples per seeded batch of the `adversary` target."""
