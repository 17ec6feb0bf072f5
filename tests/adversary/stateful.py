"""An adversarial peer in the core, without sockets: every message in every state.

`SyncAdversary` is a Hypothesis state machine.  The *victim* is a master
(WRITER) running a node's real parts for one topic (victim.py: its
`TopicRuntime`, `Door`, `Dispatcher`, address book and the sans-I/O
`Conversation` every connection of a node goes through).  The *rogue* is a
member (MEMBER) with a store of its own, real PIP-11 sessions (a Requester
and a Receiver) and the node's own messages.  Every frame the rogue sends
goes through the victim's conversation, as it would on a socket: its Hello
(honest or hostile, at each new connection), its sync requests and
replies, and Push, Peers, Route, a second Hello and Bye.

At random steps the rogue's traffic to the victim is dropped, duplicated,
reordered, replayed from earlier, garbled byte by byte, or one field of a
message is replaced by a hostile value (hostile.py): a foreign topic or
round, a sequence number not in flight, lying child hashes and leaf counts,
keys and ranges out of order, lists at and over their limits, records of
another topic, tampered or forged records, governance and co-signatures by
non-masters, future timestamps, records whose previous log never comes.
The victim also changes the rogue's role (removes it, admits it again), so
a removed member's requests, pushes and co-signatures are tried too.

After every step:

* only `RemoteProtocolError` left the victim's conversation (anything else
  fails the machine as it is raised), and it ended the connection;
* the victim's store is consistent (`check`), every valid oplog in it
  verifies and is valid under the topic's governance, and nothing valid it
  held is gone;
* the victim's per-peer state is within its bounds: its sessions, handler,
  push queue, seen-cache, address book and links.

At the end, an honest partner that never met the rogue still converges
with the victim.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time

from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    get_state_machine_test,
    invariant,
    precondition,
    rule,
)

from pttsync.core.lifecycle.governance import Role
from pttsync.core.lifecycle.handle import MAX_WAITING
from pttsync.core.oplog import Oplog, OplogStatus
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.sync.messages import Message
from pttsync.core.sync.receiver import Receiver
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import State, SyncConfig, SyncContext
from pttsync.errors import RemoteProtocolError, UsageError
from pttsync.localsync import round_id, sync_local
from pttsync.net.dispatch import MAX_REFUSED_PUSHED, REQUESTS
from pttsync.net.peer import encode_any
from pttsync.net.wire import MAX_PUSH_OPLOGS, AnyMessage, Bye, Hello

from ..synchelpers import (
    ADMIT,
    FOREIGN,
    MEMBER,
    NOW,
    OLD_END,
    OLD_START,
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
from . import hostile
from .engine import Budget, Failure, Outcome, UnusableInput, describe
from .victim import BOOK_SIZE, PUSH_QUEUE, REFUSALS, SEEN_CACHE, VictimNode

VICTIM, ROGUE, HONEST = WRITER.peer_id, MEMBER.peer_id, b"H" * 32
CONFIG = SyncConfig(max_queued=20_000, pipeline=4)
MAX_IN_FLIGHT = 64  # messages queued toward the victim before the oldest are dropped
MAX_HISTORY = 32  # messages the rogue remembers, to replay
ACTIONS = ("deliver",) * 4 + (
    "mutate",
    "mutate",
    "smuggle",
    "smuggle",
    "drop",
    "duplicate",
    "replay",
    "garble",
)
"""What the rogue does with a message it sends the victim, weighted."""
NODE_MESSAGES = (
    "push", "push", "push", "peers", "route", "route", "lazy", "lazy", "hello", "bye", "hang-up",
)  # fmt: skip
"""What the rogue sends of the node's own messages, weighted ("hang-up": it closes)."""


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
def rogue_pending() -> tuple[Oplog, ...]:
    """The rogue's own writes: a member's, so they wait for the victim (a master) to co-sign."""
    return tuple(member_write(NOW - k * 3_600 * 10**9, f"m{k}") for k in (1, 2))


def frame_of(msg: AnyMessage) -> bytes | None:
    """`msg` encoded; None if it cannot be encoded at all (the encoder refuses it)."""
    try:
        return encode_any(msg)
    except (UsageError, RemoteProtocolError):
        return None


class SyncAdversary(RuleBasedStateMachine):
    examples_run = 0  # finished examples in this process (tools/fuzz.py reports it)

    def __init__(self) -> None:
        super().__init__()
        self.victim = new_store(FOREIGN)
        put(self.victim, (*shared(), *victim_only()))
        rogue = new_store(FOREIGN)
        put(rogue, (*shared(), *rogue_only()))
        rogue.write_batch(TID, [(o, OplogStatus.PENDING) for o in rogue_pending()])
        self.honest = copy_store(rogue)  # what an honest peer holds: the rogue's records
        self.now = NOW
        self.node = VictimNode(self.victim, WRITER, clock=lambda: self.now, config=CONFIG)
        self.rctx = SyncContext(rogue, TID, config=CONFIG)
        self.rounds = 0
        self.history: list[Message] = []
        self.held: set[bytes] = ids(self.victim)
        self.verified: set[bytes] = set()
        self._connect(hostile.hello_honest())

    # -- the connection --------------------------------------------------------------------

    def _connect(self, hello: Hello) -> None:
        """A new connection: fresh sessions on the rogue's side, nothing in flight."""
        self.r_req = Requester(self.rctx, VICTIM)
        self.r_rcv = Receiver(self.rctx, VICTIM)
        self.to_victim: list[AnyMessage] = []
        frame = frame_of(hello)
        assert frame is not None
        self._rogue_hears(self.node.connect(ROGUE, frame))

    def _victim_takes(self, frame: bytes | None) -> None:
        """One frame through the victim's conversation; only RemoteProtocolError may end it,
        and that inside the conversation (anything else fails the machine here)."""
        sent = self.node.receive(frame)
        self._rogue_hears(sent)
        if not self.node.connected:
            self.to_victim = []  # the connection is gone, and what was in flight with it

    def _rogue_hears(self, msgs: list[AnyMessage]) -> None:
        """The victim's messages reach the rogue's real sessions, which answer at once."""
        for msg in msgs:
            if not isinstance(msg, Message):
                continue  # the victim's Hello, Route, Peers, Bye: nothing to answer
            session: Requester | Receiver = self.r_rcv if isinstance(msg, REQUESTS) else self.r_req
            try:
                out = session.receive(msg, self.now)
            except RemoteProtocolError:
                continue  # what the rogue did to the victim upset its own session: its problem
            self.history = [*self.history, *out][-MAX_HISTORY:]
            self.to_victim = (self.to_victim + list(out))[-MAX_IN_FLIGHT:]

    def _round_id(self) -> bytes:
        self.rounds += 1
        return round_id(b"adversary", self.rounds)

    # -- rules -------------------------------------------------------------------------------

    @precondition(lambda self: not self.node.connected)
    @rule(data=st.data())
    def rogue_reconnects(self, data: st.DataObject) -> None:
        """A new connection, opened with an honest Hello or a hostile one."""
        self._connect(hostile.hello(data))

    @precondition(lambda self: self.node.connected and not self.node.rt.round_running(ROGUE))
    @rule()
    def victim_starts_a_round(self) -> None:
        self._rogue_hears(self.node.begin_round())

    @precondition(
        lambda self: self.node.connected and self.r_req.state not in (State.SYNCING, State.POSTSYNC)
    )
    @rule()
    def rogue_starts_a_round(self) -> None:
        self.to_victim += self.r_req.start(self.now, self._round_id())

    @precondition(lambda self: self.node.connected and bool(self.to_victim))
    @rule(data=st.data(), action=st.sampled_from(ACTIONS))
    def victim_reads(self, data: st.DataObject, action: str) -> None:
        """The next message the rogue sends, in any order, and what it does to it."""
        i = data.draw(st.integers(0, len(self.to_victim) - 1))
        msg = self.to_victim.pop(i)
        if action == "drop":
            return
        if action == "duplicate":
            self.to_victim.insert(i, msg)
        elif action == "replay" and self.history:
            msg = data.draw(st.sampled_from(self.history))
        elif action == "mutate":
            field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(msg)]))
            value = hostile.hostile_value(field, getattr(msg, field), data)
            msg = dataclasses.replace(msg, **{field: value})
        elif action == "smuggle" and hasattr(msg, "oplogs"):
            value = hostile.hostile_value("oplogs", msg.oplogs, data)
            msg = dataclasses.replace(msg, oplogs=value)  # type: ignore[call-arg]
        frame = frame_of(msg)
        if frame is None:
            return
        if action == "garble":
            where = data.draw(st.integers(0, len(frame) - 1))
            frame = (
                frame[:where]
                + bytes([frame[where] ^ data.draw(st.integers(1, 255))])
                + frame[where + 1 :]
            )
        self._victim_takes(frame)

    @precondition(lambda self: self.node.connected and bool(self.to_victim))
    @rule()
    def honest_exchange(self) -> None:
        """The rogue behaves for a while: rounds run on to postsync and end."""
        for _ in range(200):
            if not self.to_victim or not self.node.connected:
                return
            frame = frame_of(self.to_victim.pop(0))
            assert frame is not None
            self._victim_takes(frame)

    @precondition(lambda self: self.node.connected)
    @rule(data=st.data(), kind=st.sampled_from(NODE_MESSAGES))
    def rogue_sends_a_node_message(self, data: st.DataObject, kind: str) -> None:
        """Push (its own records and hostile ones), Peers, Route, IHave/IWant/Prune, a
        second Hello, Bye; or it closes the connection."""
        msg: AnyMessage
        if kind == "hang-up":
            self._victim_takes(None)
            return
        if kind == "push":
            mine = tuple(encode_oplog(o) for o in (*rogue_only(), *rogue_pending()))
            msg = hostile.push(data, mine)
        elif kind == "peers":
            msg = hostile.peers(data, VICTIM)
        elif kind == "route":
            msg = hostile.route(data)
        elif kind == "lazy":
            mine = tuple(encode_oplog(o) for o in rogue_only())
            msg = hostile.lazy(data, mine)
        elif kind == "hello":
            msg = hostile.hello(data)
        else:
            msg = Bye(data.draw(st.text(max_size=50)))
        frame = frame_of(msg)
        if frame is not None:
            self._victim_takes(frame)

    @rule(role=st.sampled_from([Role.NONE, Role.MEMBER, Role.MEMBER, Role.MEMBER]))
    def victim_sets_the_rogues_role(self, role: Role) -> None:
        """The victim (a master) removes the rogue, or admits it again; the door re-checks."""
        self.node.rt.replica.set_role(ROGUE, role, now=self.now)
        self.node.check_link()

    @rule(minutes=st.integers(1, 120))
    def time_passes(self, minutes: int) -> None:
        self.now += minutes * 60 * 10**9
        self.node.rt.handle_failed_oplogs()

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def store_holds_only_valid_oplogs_and_loses_none(self) -> None:
        assert self.victim.check(TID) == []
        now_held = ids(self.victim)
        assert self.held <= now_held, f"lost {len(self.held - now_held)} valid oplogs"
        replica = self.node.rt.replica
        for oid in now_held - self.verified:
            stored = self.victim.get(TID, oid)
            assert stored is not None and stored.status is OplogStatus.VALID
            decode_oplog(encode_oplog(stored.oplog))  # every signature verifies
            assert replica.assess(stored.oplog) is OplogStatus.VALID
            self.verified.add(oid)
        self.held = now_held

    @invariant()
    def per_peer_state_is_bounded(self) -> None:
        node, rt = self.node, self.node.rt
        assert rt.ctx.handler.waiting <= MAX_WAITING
        req = rt.requesters.get(ROGUE)
        if req is not None:
            assert len(req._out) <= CONFIG.pipeline + 1
            assert req._f.queued <= CONFIG.max_queued
        assert set(rt.requesters) <= {ROGUE} and set(rt.receivers) <= {ROGUE}
        assert len(node.links) <= 1 and len(rt.routes) <= 1
        assert len(node.book) <= BOOK_SIZE
        assert len(node.refusals) <= REFUSALS
        assert len(rt.seen) <= SEEN_CACHE
        assert rt.pusher.queued() <= PUSH_QUEUE
        if node.link is not None:
            assert node.link.stats.refused <= MAX_REFUSED_PUSHED + MAX_PUSH_OPLOGS
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
        self.node.rt.close()
        SyncAdversary.examples_run += 1


STEPS = 50
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


class AdversaryTarget:
    """tools/fuzz.py's `adversary` target: the state machine in batches of seeded examples.

    `budget.inputs` counts examples (of STEPS steps each).  A failure is
    reported with its batch seed (8 bytes, big-endian) as the input; Hypothesis
    prints the shortest failing program of steps above it, and `run_one` runs
    that batch again (`tools/fuzz.py --replay adversary SEED`).
    """

    def __call__(self, rng: random.Random, budget: Budget) -> Outcome:
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

    def run_one(self, data: bytes) -> BaseException | None:
        """Run the batch whose seed `data` is again: None if it passes; a failure raises."""
        if len(data) != 8:
            raise UnusableInput(
                f"an adversary input is an 8-byte batch seed, not {len(data)} bytes"
            )
        run_adversary(BATCH, int.from_bytes(data, "big"))
        return None


adversary_target = AdversaryTarget()


BATCH = 20
"""Examples per seeded batch of the `adversary` target."""
