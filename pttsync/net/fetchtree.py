"""A running peer's tree, fetched read-only: `pttsync inspect diff DIR HOST:PORT`.

`fetch_tree(store, topic, identity, address)` connects to a peer as a node
dials one (TCP, the Noise XX handshake bound to `identity`'s peer ID, a
`Hello`), and runs PIP-11 sync rounds as the requester into `store`, an
empty store of the caller's (in memory), until a round brings nothing new.
The store then holds the peer's valid oplogs of the topic: its Merkle
tree, which the caller diffs against its own (core/store/diff.py).

It is **pull-only**: the peer is sent no oplog.

* The requester starts from an empty store, so it has nothing the peer
  lacks; and every message it would send is checked on the way out:
  records in a SyncOplogNewOplogs (possible only if the peer's tree lost
  an oplog during the fetch) are stripped, and counted as `withheld`.
* Postsync is never run: the SyncPendingOplog that would open it is not
  sent (the sync phase is over by then, so the round's data is stored).
  So the peer's pending oplogs are not fetched, and none is co-signed:
  the store's replica has no identity.
* The Hello lists only the topic and carries no credentials (a node's
  Hello carries the governance oplogs that make it a member, which the
  door may store): the peer must already know `identity` as a member.
* It comes as a **visit** (network.md, "Visits"): let in whatever the
  peer's slots (a full peer refused a fetch before), taking none, and
  pushed nothing; the peer closes it after its `round_timeout` at the
  latest.
* Whatever the peer sends beside the replies is dropped: pushes,
  announcements, routes, addresses.  A sync round the peer starts with us
  is rejected as BUSY, so it never waits on us.

The whole fetch runs under one deadline, `timeout` seconds.  Errors: the
peer refused us (its Bye) → `RefusedError`; unreachable, gone, or too slow
→ `ConnectionLostError`; it broke the protocol → `RemoteProtocolError`;
it does not serve the topic → `UsageError`.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import trio

from ..core.sync.messages import (
    Message,
    RejectCode,
    SyncOplogNewOplogs,
    SyncOplogReject,
    SyncPendingOplog,
)
from ..core.sync.requester import Requester
from ..core.sync.session import State, SyncConfig, SyncContext
from ..errors import ConnectionLostError, RemoteProtocolError, UsageError
from .dispatch import REQUESTS
from .door import AGENT
from .network import Network, TcpNetwork
from .peer import Direction, PeerLink
from .transport import HANDSHAKE_TIMEOUT
from .wire import MAX_REASON, Bye, Hello, Push
from .wirecodec import decode_any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..core.identity import Identity
    from ..core.store import Store
    from ..core.topic import TopicInfo

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0
MAX_ROUNDS = 8
"""Rounds before giving up on a peer whose tree keeps bringing something new."""


class RefusedError(ConnectionLostError):
    """The peer closed the connection with a reason (its Bye): not a violation of ours."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address} refused: {reason}")
        self.reason = reason


@dataclass(slots=True)
class FetchReport:
    """What `fetch_tree` did."""

    address: str
    peer_id: bytes = b""
    agent: str = ""
    rounds: int = 0
    settled: bool = False  # the last round brought nothing new: the store holds the peer's tree
    oplogs_received: int = 0
    oplogs_stored: int = 0
    rejected: int = 0  # records the peer sent that failed verification here
    withheld: int = 0  # records the requester would have sent the peer (stripped)
    bytes_sent: int = 0
    bytes_received: int = 0
    rounds_declined: int = 0  # rounds the peer started with us, rejected
    ignored: int = 0  # pushes and other node messages dropped
    seconds: float = 0.0


async def fetch_tree(
    store: Store,
    topic: TopicInfo,
    identity: Identity,
    address: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109 - one deadline over dial, handshake, rounds
    network: Network | None = None,
    config: SyncConfig | None = None,
    clock: Callable[[], int] = time.time_ns,
    max_rounds: int = MAX_ROUNDS,
) -> FetchReport:
    """Fetch the peer's valid oplogs of `topic` into `store` (see the module text).

    `store` must hold the topic and no oplog of it.

    Raises:
        UsageError: `store` is not empty, or the peer does not serve the topic.
        RefusedError: the peer turned us away (not a member there, already
            connected, no room): its reason is in the message.
        ConnectionLostError: nothing answers at `address`, the connection
            broke, or the fetch took more than `timeout` seconds.
        RemoteProtocolError: the peer broke the protocol (HandshakeError: the
            handshake failed, e.g. not a pttsync peer).
    """
    if store.count(topic.topic_id):
        raise UsageError("fetch_tree needs an empty store: it must have nothing to send")
    report = FetchReport(address)
    started = trio.current_time()
    try:
        with trio.fail_after(timeout):
            await _fetch(
                store, topic, identity, address, network or TcpNetwork(), report,
                config=config, clock=clock, max_rounds=max_rounds,
            )  # fmt: skip
    except trio.TooSlowError:
        raise ConnectionLostError(
            f"{address} did not answer in time: gave up after {timeout:g} s"
            f" ({report.rounds} round(s) begun, {report.oplogs_stored:,} oplogs fetched)"
        ) from None
    finally:
        report.seconds = trio.current_time() - started
    return report


async def _fetch(
    store: Store,
    topic: TopicInfo,
    identity: Identity,
    address: str,
    network: Network,
    report: FetchReport,
    *,
    config: SyncConfig | None,
    clock: Callable[[], int],
    max_rounds: int,
) -> None:
    stream = await network.connect(address)
    channel = await network.secure(
        stream, identity, initiator=True, expect=None, timeout=HANDSHAKE_TIMEOUT
    )  # the caller's deadline over the whole fetch binds first when it is shorter
    link = PeerLink(
        channel, direction=Direction.OUTBOUND, address=address, local_id=identity.peer_id,
        started=trio.current_time(),
    )  # fmt: skip
    report.peer_id = link.peer_id
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run_writer)
            try:
                client = _Client(link, store, topic.topic_id, report, config, clock)
                await client.hello()
                await client.rounds(max_rounds)
                link.try_send(Bye("done: a read-only fetch"))
            except RemoteProtocolError as exc:  # tell the peer why we hang up
                link.try_send(Bye(str(exc)[:MAX_REASON]))
                raise
            finally:
                link.close("fetch over")
                nursery.cancel_scope.deadline = trio.current_time() + 1  # flush a Bye, briefly
    except BaseExceptionGroup as group:  # one error from the nursery: raise it as itself
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
    finally:
        report.bytes_sent, report.bytes_received = link.stats.bytes_sent, link.stats.bytes_received
        await link.aclose()


class _Client:
    """The requester's side of one connection, pull-only (see the module text)."""

    def __init__(
        self,
        link: PeerLink,
        store: Store,
        topic_id: bytes,
        report: FetchReport,
        config: SyncConfig | None,
        clock: Callable[[], int],
    ) -> None:
        self.link, self.topic_id, self.report, self.clock = link, topic_id, report, clock
        # No identity: this replica never co-signs, so it makes nothing to send.
        self.req = Requester(SyncContext(store, topic_id, config=config), link.peer_id)

    async def hello(self) -> None:
        """Hellos both ways; UsageError if the peer does not serve the topic."""
        await self.link.send(Hello("", (self.topic_id,), AGENT, (), visit=True))
        frame = await self.link.receive_frame()
        msg = None if frame is None else decode_any(frame)
        if isinstance(msg, Bye):
            raise RefusedError(self.report.address, msg.reason)
        if not isinstance(msg, Hello):
            what = "closed the connection" if msg is None else f"sent {type(msg).__name__}"
            raise RemoteProtocolError(f"{self.report.address} {what} before its Hello")
        self.report.agent = msg.agent
        if self.topic_id not in msg.topics:
            raise UsageError(
                f"{self.report.address} does not serve topic {self.topic_id.hex()[:16]}…"
            )

    async def rounds(self, max_rounds: int) -> None:
        """Rounds until one stores nothing new and refuses nothing (or `max_rounds`)."""
        stats = self.req.stats
        for _ in range(max_rounds):
            before = (stats.oplogs_stored, stats.rejected)
            await self.round()
            self.report.rounds += 1
            self.report.oplogs_received = stats.oplogs_received
            self.report.oplogs_stored = stats.oplogs_stored
            self.report.rejected = stats.rejected
            if (stats.oplogs_stored, stats.rejected) == before:
                self.report.settled = True
                return
            log.info("fetch from %s: round %d stored %d oplogs", self.report.address,
                     self.report.rounds, stats.oplogs_stored - before[0])  # fmt: skip

    async def round(self) -> None:
        """One round, up to the end of its sync phase (postsync is never opened)."""
        req = self.req
        if await self._send(req.start(self.clock(), secrets.token_bytes(16))):
            return
        while req.state is State.SYNCING:
            msg = await self._next_reply()
            if await self._send(req.receive(msg, self.clock())):
                req.abort()  # the sync phase is over and stored; postsync stays closed
                return
        if req.state is State.FAILED:
            raise RefusedError(self.report.address, f"the sync round: {req.reject_reason}")

    async def _send(self, msgs: Sequence[Message]) -> bool:
        """Send the requester's messages, pull-only; True if it wanted to open postsync."""
        for msg in msgs:
            m = msg
            if isinstance(m, SyncPendingOplog):
                return True
            if isinstance(m, SyncOplogNewOplogs) and m.oplogs:
                self.report.withheld += len(m.oplogs)
                log.warning("withheld %d oplogs from %s: a fetch sends none",
                            len(m.oplogs), self.report.address)  # fmt: skip
                m = replace(m, oplogs=())
            await self.link.send(m)
        return False

    async def _next_reply(self) -> Message:
        """The next reply to our round; everything else the peer sends is dealt with here."""
        address = self.report.address
        while True:
            frame = await self.link.receive_frame()
            if frame is None:
                raise ConnectionLostError(f"{address} closed the connection during the fetch")
            msg = decode_any(frame)
            if isinstance(msg, Bye):
                raise RefusedError(address, msg.reason)
            if isinstance(msg, Hello):
                raise RemoteProtocolError(f"{address} sent a second Hello")
            if isinstance(msg, REQUESTS):
                self.report.rounds_declined += 1
                reason = "a read-only fetch serves no rounds"
                await self.link.send(
                    SyncOplogReject(msg.topic, msg.round, msg.seq, RejectCode.BUSY, reason)
                )
            elif isinstance(msg, Message):
                return msg
            else:  # pushes, announcements, routes, addresses: not asked for
                self.report.ignored += len(msg.oplogs) if isinstance(msg, Push) else 1
