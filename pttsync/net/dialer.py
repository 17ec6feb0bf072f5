"""The dialer: which known addresses a node dials, and when.

A node's `Dialer` runs as one task.  Each time it wakes (an address was
learnt, a dial or a connection ended, or an address's backoff ran out) it
dials the addresses the address book (addressbook.py) says are due,
skipping the node's own, and those of peers already connected or being
dialed.  It dials out to at most half the peer slots, so the rest stay open
for peers dialing in and a newcomer always finds room somewhere, and to at
most `MAX_CONCURRENT_DIALS` addresses at once.  While the node wants masters
it has no way to (the links split the network into parts, and its part has
none, or too few to sign a write: node.py), it dials them first, and the
peers such a master named as it refused it, on every free slot: go-pttai's
`ConnectMaster`, where a route cannot do.  A visit (node.py; network.md,
"Visits") is dialed apart from all this, whatever the room, one at a time.
Each dial runs as a task:
the TCP connect under `connect_timeout` (a failure is backed off in the
book), then the connection's whole life (the node's `run_link`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import trio

from ..errors import ConnectionLostError
from .peer import Direction

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from .addressbook import AddressBook
    from .config import NodeConfig
    from .network import Network
    from .peer import PeerLink

MAX_CONCURRENT_DIALS = 8


class Dialer:
    """Keeps dialing the addresses that are due while there is room (see the module text).

    `book` is the node's address book and `links` its connected peers by
    peer ID (the dialer reads them); `listen_address()` is the node's own
    address now; `run_link(stream, address, direction, expect)` runs a
    connection to its end.
    """

    def __init__(
        self,
        peer_id: bytes,
        *,
        book: AddressBook,
        links: Mapping[bytes, PeerLink],
        config: NodeConfig,
        network: Network,
        listen_address: Callable[[], str | None],
        run_link: Callable[[trio.abc.Stream, str, Direction, bytes | None, bool], Awaitable[None]],
        out_of_reach: Callable[[], frozenset[bytes]] = frozenset,
    ) -> None:
        self.peer_id = peer_id
        self.book = book
        self.links = links
        self.config = config
        self.network = network
        self.listen_address = listen_address
        self._run_link = run_link
        self._out_of_reach = out_of_reach  # the masters it wants, and the peers they named
        self.dialing: set[str] = set()  # addresses being dialed (or connected through)
        self.visiting: str | None = None  # the address of our visit under way
        self._nursery: trio.Nursery | None = None
        self.changed = trio.Event()  # set to wake the dialer; replaced as it wakes

    def wake(self) -> None:
        """The book or the links changed: look again at what is due."""
        self.changed.set()

    async def run(
        self,
        nursery: trio.Nursery,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Dial what is due, forever, each dial a task in `nursery` (run this as a task;
        started once it can take a visit)."""
        cfg = self.config
        self._nursery = nursery
        task_status.started()
        while True:
            now = trio.current_time()
            busy = self.dialing | {ln.address for ln in self.links.values()}
            if self.visiting is not None:
                busy.add(self.visiting)
            busy |= {ln.listen for ln in self.links.values()}
            outbound = sum(1 for ln in self.links.values() if ln.direction is Direction.OUTBOUND)
            wanted = self._out_of_reach()
            # No room to dial: wait for a link or a dial to end, not for the clock (and
            # do not sort the whole book, up to a thousand addresses, for nothing).
            full = self._no_room(outbound, stranded=bool(wanted))
            due = [] if full else self.book.due(now)
            # Stranded from masters whose addresses it does not know (nor any peer such
            # a master named), a node may dial any peer on its free slots: one of them
            # may have a way down.  With its outbound share taken it waited for a dial
            # in, and a part that had formed apart in a partition stayed apart after
            # the heal, its members' writes pending for good (the simulator, three
            # slots a node: `--peers 40 --writes 20 --seed 734 --masters 2 --write-by
            # members --max-peers 3 --partition 7:13`).
            lost = bool(wanted) and not any(e.peer_id in wanted for e in self.book.entries())
            if wanted:
                due.sort(key=lambda e: e.peer_id not in wanted)  # the wanted first
            for entry in due:
                if full := self._no_room(outbound, stranded=lost or entry.peer_id in wanted):
                    break
                if entry.peer_id == self.peer_id or entry.address == self.listen_address():
                    entry.next_try = math.inf
                elif entry.address in busy or entry.peer_id in self.links:
                    entry.next_try = now + cfg.sync_interval
                else:
                    self.dialing.add(entry.address)
                    entry.next_try = now + cfg.connect_timeout + cfg.handshake_timeout
                    nursery.start_soon(self._dial, entry.address, entry.peer_id)
            self.changed = trio.Event()
            nxt = self.book.next_due()
            wake = now + 60 if full or nxt is None or math.isinf(nxt) else max(nxt, now + 0.05)
            with trio.move_on_at(wake):
                await self.changed.wait()

    def _no_room(self, outbound: int, stranded: bool = False) -> bool:
        """Whether a dial now would exceed the outbound share, the peers or the dials.

        `dialing` holds the address of each outbound connection for its whole life,
        so outbound links count twice here: in effect a node dials a quarter of its
        slots, not half.  A master it is `stranded` from (or a peer such a master
        named) it may dial on every free slot, each link and each dial counted once.
        Only those: a part that filled its slots with each other while the masters
        were offline left none for a newcomer, nor a master coming back (the
        simulator: `--max-peers 6 --churn 2 --masters-offline 12:40`)."""
        cfg = self.config
        if stranded:
            connected = sum(1 for ln in self.links.values() if ln.address in self.dialing)
            dials = len(self.dialing) - connected
            return len(self.links) + dials >= cfg.max_peers or dials >= MAX_CONCURRENT_DIALS
        return (
            outbound + len(self.dialing) >= max(1, cfg.max_peers // 2)
            or len(self.links) + len(self.dialing) >= cfg.max_peers
            or len(self.dialing) >= MAX_CONCURRENT_DIALS
        )

    def visit(self, address: str, peer_id: bytes | None) -> bool:
        """Dial `address` for a visit now, outside the slots; False if a visit is under
        way, the address is dialed or linked already, or the dialer is not running."""
        busy = self.visiting is not None or address in self.dialing
        if busy or self._nursery is None or (peer_id is not None and peer_id in self.links):
            return False
        self.visiting = address
        self._nursery.start_soon(self._dial, address, peer_id, True)
        return True

    async def _dial(self, address: str, expect: bytes | None, visit: bool = False) -> None:
        try:
            try:
                with trio.fail_after(self.config.connect_timeout):
                    stream = await self.network.connect(address)
            except ConnectionLostError as exc:
                reason = str(exc).removeprefix(f"cannot connect to {address}: ")
                self.book.failed(address, trio.current_time(), reason=reason)
                return
            except trio.TooSlowError:
                reason = f"no answer within {self.config.connect_timeout:g} s"
                self.book.failed(address, trio.current_time(), reason=reason)
                return
            await self._run_link(stream, address, Direction.OUTBOUND, expect, visit)
        finally:
            if visit:
                self.visiting = None
            else:
                self.dialing.discard(address)
            self.wake()
