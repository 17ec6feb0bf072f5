"""A node's settings, with the defaults and the reasons for them.

* `sync_interval` 10 s: one anti-entropy round per topic with one random
  peer, the interval jittered uniformly in [0.5, 1.5]x so peers do not
  synchronise.  go-pttai uses 5-30 s by entity kind; 10 s repairs a missed
  push within seconds, and a round between peers in sync costs ~350 bytes.
* `max_peers` 16: connections kept, in and out; enough for an epidemic to
  cross a network in a few hops, few enough to stay cheap.
* `visit_interval` 60 s: about this often (jittered like `sync_interval`)
  a node visits a known peer it has no link to: one sync round over a
  connection outside the slots, then closed (connections.py, network.md
  "Visits").  Rounds between linked peers cannot leave the part of the
  network their links form; a visit crosses to a random known peer, so
  parts whose links never meet still converge, whatever their slots.  A
  visit that moved nothing doubles the wait for the next, up to 16x (a
  quarter hour); one that moved an oplog brings it back.  Each costs a
  handshake and a round.  0 turns visits off.
* `push` on: best-effort push of new oplogs; off leaves anti-entropy alone.
* `push_every` 0.1 s: at most one push batch per topic this often; under a
  stream of writes each message carries many oplogs instead of one, at the
  cost of up to this much delay per hop (none after a quiet spell).
* `announce_every` 0.25 s: lazy push's announcements (`IHave`, lazypush.py)
  are gathered like push batches, but longer: the first after a quiet spell
  goes at once, then at most one per lazy link this often.  They only
  repair what the tree missed, so they may wait; riak_core's Plumtree
  sends them once a second, libp2p's gossipsub at its 1 s heartbeat.
* `push_mesh` 3: each node picks this many of its peers for the push mesh
  (routing.py); a link is in the mesh if either end picked it.  Valid
  oplogs are pushed over the mesh only (0: to every peer, i.e. flooding).
* `push_max_age` 10 min: oplogs older than this that arrive by sync are
  not pushed on; old history is anti-entropy's work, so one big catch-up
  does not flood every peer.
* `handshake_timeout` 10 s: the Noise handshake, and then the Hello.
* `max_handshakes` 64, `max_handshakes_per_host` 8: inbound connections
  not yet admitted (in the handshake or waiting for the Hello) at once, in
  all and from one host; one more is closed at once, unread.  Each costs a
  task and a socket for up to two handshake timeouts, so without a cap a
  flood of idle connections (or a slowloris) would hold without bound; an
  honest peer has one such connection at a time, and a host behind a NAT a
  few.
* `connect_timeout` 10 s: a dial that takes longer counts as failed.
* `round_timeout` 120 s: a longer sync round is abandoned (what it stored
  stays stored).
* `failed_interval` 30 s: HandleFailedOplogs runs at least this often,
  even with no peers.
* `scrub_batch` 2,000 records per topic every `failed_interval`: the node
  reads its stored records round and round (core/store/integrity.py), so
  a record damaged on disk is quarantined and a peer's copy replaces it
  even if nothing reads it: 1M records a pass in about 4 hours, for about
  40 ms of CPU a batch.  The first batch runs at start.  0 turns it off.
* `backoff_base`, `backoff_max` 1 s and 300 s: redial delays, exponential,
  jittered, capped (addressbook.py).
* `send_queue` 256 frames per peer: replies wait for room, pushes are dropped.
* `send_timeout` 60 s: a frame the peer has not taken in this long closes
  the connection (backed off, not a violation).  A peer that stops reading
  would otherwise keep its slot, and its reader stalled, for as long as its
  TCP connection lives; an honest one takes a 256 KiB frame in far less,
  even on a slow link.
* `verify_ahead` off: on, each connection reads one frame ahead and
  verifies its records on worker threads (one per core, shared by all
  connections) while the previous frame is handled (inbox.py).  Off by
  default until it pays: a first sync of 100k oplogs between two nodes on
  this 2-core machine keeps both cores busy already, and measured no
  faster with it (network.md, "Verifying ahead").  Never on
  in the simulator or under trio's MockClock: a thread's real time would
  let virtual time jump.
* `push_queue` 4,096 oplogs per topic: beyond it pushes are dropped and
  anti-entropy repairs.
* `seen_cache` 16,384 oplog copies per topic: which peers hold which copy,
  so a push goes at most once to each peer.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..core.sync.session import SyncConfig
from ..core.timeutil import NS_PER_SECOND
from ..errors import UsageError
from .wire import check_address

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """How a node runs.  Every field has a sensible default (see the module table)."""

    listen: str | None = None  # "host:port" to accept peers on; port 0 picks a free one
    join: tuple[str, ...] = ()  # addresses to bootstrap from
    max_peers: int = 16
    sync_interval: float = 10.0
    visit_interval: float = 60.0  # 0: no visits
    push: bool = True
    push_mesh: int = 3
    push_every: float = 0.1
    announce_every: float = 0.25
    push_max_age: int = 600 * NS_PER_SECOND
    handshake_timeout: float = 10.0
    max_handshakes: int = 64
    max_handshakes_per_host: int = 8
    connect_timeout: float = 10.0
    round_timeout: float = 120.0
    failed_interval: float = 30.0
    scrub_batch: int = 2000
    backoff_base: float = 1.0
    backoff_max: float = 300.0
    send_queue: int = 256
    send_timeout: float = 60.0
    push_queue: int = 4096
    seen_cache: int = 16384
    control: bool = True  # serve the control socket in the data directory
    verify_ahead: bool = False
    restarts: int = 0  # times a supervisor (launch) restarted this node; status shows it
    seed: int | None = None  # randomness (jitter, peer choice, round IDs); None: from the OS
    sync: SyncConfig = field(default_factory=SyncConfig)
    clock: Callable[[], int] = time.time_ns  # wall-clock nanoseconds (tests pass trio's)

    def __post_init__(self) -> None:
        """Raises UsageError for a setting out of its range."""
        for address in ([self.listen] if self.listen else []) + list(self.join):
            try:
                check_address(address[:-2] + ":1" if address.endswith(":0") else address)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        for name in ("push_every", "announce_every"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 60:
                raise UsageError(f"NodeConfig.{name} must be a number in [0, 60]")
        if not isinstance(self.visit_interval, int | float) or not (
            self.visit_interval == 0 or 0.001 <= self.visit_interval <= 86400
        ):
            raise UsageError("NodeConfig.visit_interval must be 0 (no visits) or in [0.001, 86400]")
        positive = {
            "sync_interval": (0.001, 86400.0),
            "handshake_timeout": (0.001, 3600.0),
            "connect_timeout": (0.001, 3600.0),
            "round_timeout": (0.001, 86400.0),
            "send_timeout": (0.001, 86400.0),
            "failed_interval": (0.001, 86400.0),
            "backoff_base": (0.001, 3600.0),
            "backoff_max": (0.001, 86400.0),
        }
        for name, (lo, hi) in positive.items():
            value = getattr(self, name)
            if not isinstance(value, int | float) or not lo <= value <= hi:
                raise UsageError(f"NodeConfig.{name} must be a number in [{lo}, {hi}]")
        counts = {
            "max_peers": (1, 1024),
            "max_handshakes": (1, 65536),
            "max_handshakes_per_host": (1, 65536),
            "push_mesh": (0, 1024),
            "send_queue": (1, 65536),
            "push_queue": (1, 1_000_000),
            "seen_cache": (16, 10_000_000),
            "push_max_age": (0, 2**62),
            "restarts": (0, 2**62),
            "scrub_batch": (0, 1_000_000),
        }
        for name, (lo, hi) in counts.items():
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise UsageError(f"NodeConfig.{name} must be an integer in [{lo}, {hi}]")

    def replace(self, **changes: object) -> NodeConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


def trio_wall_clock(start_ns: int, clock: trio.abc.Clock | None = None) -> Callable[[], int]:
    """A wall clock that follows trio's clock (for MockClock tests and simulation).

    With `clock`, the run's own (`trio.lowlevel.current_clock()`), it is read
    directly rather than through `trio.current_time`: the same reading, two calls
    fewer (a simulated node reads it several times a message).  Such a clock is
    only good within that run.
    """
    if clock is None:
        return lambda: start_ns + int(trio.current_time() * NS_PER_SECOND)
    read = clock.current_time
    return lambda: start_ns + int(read() * NS_PER_SECOND)
