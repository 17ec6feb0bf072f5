"""A rogue member against a real node, over real TCP and Noise (issue 14, part 4).

    python tools/rogue.py --seconds 20 [--seed 1] [--json]

Starts, in this process on 127.0.0.1, a victim node (the topic's master,
with a real data directory and its control socket) and two honest members
that join it, write and sync through it.  A rogue identity is then admitted
to the topic (a member, so it passes the door) and, for `--seconds`, sends
the victim a random mix of hostile traffic, each over a fresh TCP
connection with the Noise handshake (transport.secure_handshake) and a
Hello that advertises a listen address of its own (a listener that hangs up):

* garbage: a frame that is not CBOR;
* replay: a sync round's SyncOplog, then the same one again (wrong state);
* forged: a push of records its creator never wrote to this topic;
* peers: a flood of Peers messages full of bogus addresses;
* unfinished: a round started and left;
* storm: a burst of raw TCP connections, some sending junk, some idle;
* junk: bytes that are not a Noise handshake at all.

At the end it checks that the victim is up and still answers its API and
its control socket, that it converged with the honest peers (same digest,
nothing pending, their last writes everywhere), that it closed the rogue
(violations > 0) and backed off the address the rogue advertised, and that
it logged no internal error.  It prints one JSON object (`--json`) or a
summary, with the peak RSS of this process (all three nodes and the rogue),
and exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from pttsync.cli.run import make_peers
from pttsync.core.identity import Identity
from pttsync.core.lifecycle.governance import Role
from pttsync.core.oplog import create_oplog
from pttsync.core.oplogcodec import encode_oplog
from pttsync.core.store.sqlite import SqliteStore
from pttsync.core.sync.msgcodec import encode_message
from pttsync.core.sync.requester import Requester
from pttsync.core.sync.session import SyncContext
from pttsync.errors import PttsyncError
from pttsync.net.changes import wait_until
from pttsync.net.config import NodeConfig
from pttsync.net.connections import INTERNAL_ERROR
from pttsync.net.controlclient import control_call
from pttsync.net.peer import PeerLink
from pttsync.net.serve import serve_node
from pttsync.net.transport import SecureChannel, secure_handshake
from pttsync.net.wire import MAX_PEERS_LISTED, Hello, Peers, Push
from pttsync.net.wirecodec import encode_node_message

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pttsync.core.topic import TopicInfo
    from pttsync.net.node import Node

KINDS = ("garbage", "replay", "forged", "peers", "unfinished", "storm", "junk")
BREAKING = ("garbage", "replay", "forged")  # a member's connection closed as a violation


class _Watcher(logging.Handler):
    """Counts errors a node contained (node.INTERNAL_ERROR), and links to `rogue` it closed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.internal_errors = 0
        self.rogue_closed = 0
        self.rogue: bytes | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, INTERNAL_ERROR, False):
            self.internal_errors += 1
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "closed %r: %s" and args and isinstance(args[0], PeerLink):
            self.rogue_closed += args[0].peer_id == self.rogue


class Rogue:
    """The rogue member: its identity, its traffic and what it sent."""

    def __init__(self, target: str, info: TopicInfo, rng: random.Random, listen: str) -> None:
        self.identity = Identity.generate()
        self.target = target
        self.info = info
        self.rng = rng
        self.listen = listen
        self.messages = 0
        self.connections = 0
        self.failures = 0  # actions the victim cut short (expected: it closes us)
        self.actions = dict.fromkeys(KINDS, 0)
        store = SqliteStore.memory()
        store.add_topic(info)
        self.requester = Requester(SyncContext(store, info.topic_id), b"\x00" * 32)

    def _now(self) -> int:
        return time.time_ns()

    async def _tcp(self) -> trio.SocketStream:
        host, _, port = self.target.rpartition(":")
        self.connections += 1
        return await trio.open_tcp_stream(host, int(port))

    async def _member(self) -> SecureChannel:
        channel = await secure_handshake(await self._tcp(), self.identity, initiator=True)
        await self._send(channel, encode_node_message(Hello(self.listen, (self.info.topic_id,))))
        return channel

    async def _send(self, channel: SecureChannel, frame: bytes) -> None:
        await channel.send_frame(frame)
        self.messages += 1

    async def _until_closed(self, channel: SecureChannel, limit: float) -> None:
        """Read (and drop) what the victim sends until it closes, or `limit` s."""
        with trio.move_on_after(limit):
            try:
                while await channel.receive_frame() is not None:
                    pass
            except PttsyncError:
                pass

    def _round(self) -> bytes:
        self.requester.abort()
        msgs = self.requester.start(self._now(), self.rng.randbytes(16))
        return encode_message(msgs[0])

    async def act(self, kind: str) -> None:
        self.actions[kind] += 1
        if kind == "junk":
            stream = await self._tcp()
            await stream.send_all(self.rng.randbytes(self.rng.randrange(1, 512)))
            self.messages += 1
            with trio.move_on_after(2):
                while await stream.receive_some(4096):
                    pass
            await stream.aclose()
            return
        if kind == "storm":
            streams = []
            for _ in range(self.rng.randrange(5, 30)):
                stream = await self._tcp()
                if self.rng.random() < 0.5:
                    await stream.send_all(b"\x00\x20" + self.rng.randbytes(8))  # a partial hello
                    self.messages += 1
                streams.append(stream)
            await trio.sleep(self.rng.uniform(0, 0.5))
            for stream in streams:
                await trio.aclose_forcefully(stream)
            return
        channel = await self._member()
        try:
            if kind == "garbage":
                await self._send(channel, b"\xff" + self.rng.randbytes(self.rng.randrange(64)))
            elif kind == "replay":
                frame = self._round()
                await self._send(channel, frame)
                await self._send(channel, frame)
            elif kind == "forged":
                stranger, tid = Identity.generate(), self.info.topic_id
                forged = tuple(
                    encode_oplog(
                        create_oplog(
                            stranger,
                            topic_id=tid,
                            object_id=f"f{k}".encode(),
                            op=1,
                            value={"v": k},
                            create_time=self._now(),
                        )
                    )
                    for k in range(100)
                )
                await self._send(channel, encode_node_message(Push(tid, forged, pending=True)))
            elif kind == "peers":
                for m in range(self.rng.randrange(5, 40)):
                    # Loopback addresses where nothing listens: a dial is refused at
                    # once (addresses elsewhere might answer, through a proxy say).
                    peers = tuple(
                        (self.rng.randbytes(32), f"127.{m}.{k}.{self.rng.randrange(2, 256)}:9")
                        for k in range(MAX_PEERS_LISTED)
                    )
                    await self._send(channel, encode_node_message(Peers(peers)))
            elif kind == "unfinished":
                await self._send(channel, self._round())
            await self._until_closed(channel, 1.0)
        finally:
            await channel.aclose()

    def kinds(self) -> Iterator[str]:
        """The actions, in shuffled blocks of one of each (so a short run has them all)."""
        first = True
        while True:
            block = list(KINDS)
            self.rng.shuffle(block)
            if first:  # one that breaks the protocol first: even a short run is closed once
                block.sort(key=lambda kind: kind not in BREAKING)
                first = False
            yield from block

    async def run(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            for kind in self.kinds():
                try:
                    await self.act(kind)
                except (PttsyncError, OSError, trio.BrokenResourceError):
                    self.failures += 1
                await trio.sleep(self.rng.uniform(0, 0.05))


async def _hang_up(stream: trio.SocketStream) -> None:
    await trio.aclose_forcefully(stream)


def _converged(nodes: list[Node]) -> bool:
    return len({tuple(sorted(n.digests().items())) for n in nodes}) == 1 and all(
        n.pending_count() == 0 for n in nodes
    )


def _valid_everywhere(nodes: list[Node], keys: list[str]) -> bool:
    for node in nodes:
        for key in keys:
            state = node.get(key)
            if state is None or state.pending:
                return False
    return True


async def _honest_writes(nodes: list[Node], rng: random.Random) -> None:
    k = 0
    while True:
        await rng.choice(nodes).put(f"honest-{k}", k)
        k += 1
        await trio.sleep(rng.uniform(0.05, 0.3))


async def run(seconds: float, *, seed: int | None = None) -> dict[str, Any]:
    """One run: `seconds` of rogue traffic; the report (see the module text)."""
    rng = random.Random(seed)
    counter = _Watcher()
    pttsync_log = logging.getLogger("pttsync")
    level = pttsync_log.level
    pttsync_log.addHandler(counter)
    pttsync_log.setLevel(min(logging.WARNING, pttsync_log.getEffectiveLevel()))
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="pttsync-rogue-") as tmp:
            dirs = make_peers(Path(tmp), 3)
            async with trio.open_nursery() as nursery:
                rogue_listeners = await nursery.start(
                    functools.partial(trio.serve_tcp, _hang_up, 0, host="127.0.0.1")
                )
                rogue_port = rogue_listeners[0].socket.getsockname()[1]
                nodes: list[Node] = []
                for i, d in enumerate(dirs):
                    cfg = NodeConfig(
                        listen="127.0.0.1:0",
                        join=(nodes[0].listen_address or "",) if nodes else (),
                        sync_interval=1.0,
                        control=i == 0,
                        seed=rng.randrange(2**32),
                    )
                    node = await nursery.start(functools.partial(serve_node, d.path, config=cfg))
                    nodes.append(node)
                victim = nodes[0]
                assert victim.listen_address is not None
                with trio.fail_after(30):
                    await wait_until(nodes, lambda: len(victim.links) == 2 and _converged(nodes))
                rogue = Rogue(
                    victim.listen_address,
                    victim.select_topic(),
                    random.Random(rng.randrange(2**32)),  # its own: the same actions per seed
                    f"127.0.0.1:{rogue_port}",
                )
                counter.rogue = rogue.identity.peer_id
                await victim.set_role(rogue.identity.peer_id, Role.MEMBER)
                async with trio.open_nursery() as traffic:
                    traffic.start_soon(_honest_writes, nodes[1:], rng)
                    await rogue.run(seconds)
                    traffic.cancel_scope.cancel()
                last = [f"last-{i}" for i in (1, 2)]
                for node, key in zip(nodes[1:], last, strict=True):
                    await node.put(key, "done")
                converged = False
                with trio.move_on_after(60):
                    await wait_until(
                        nodes, lambda: _converged(nodes) and _valid_everywhere(nodes, last)
                    )
                    converged = True
                status = victim.status()
                try:
                    with trio.fail_after(10):
                        control = await control_call(dirs[0].path, {"op": "status"})
                    control_ok = control.get("violations") == victim.violations
                except (PttsyncError, trio.TooSlowError):
                    control_ok = False
                entry = victim.book.get(rogue.listen)
                report: dict[str, Any] = {
                    "seconds": seconds,
                    "wall_s": round(time.monotonic() - started, 2),
                    "actions": rogue.actions,
                    "connections": rogue.connections,
                    "messages_sent": rogue.messages,
                    "rogue_cut_short": rogue.failures,
                    "violations": victim.violations,
                    "rogue_closed_for_violations": counter.rogue_closed,
                    "turned_away": victim.gate.turned_away,
                    "internal_errors": victim.internal_errors + counter.internal_errors,
                    "honest_links": sum(1 for n in nodes[1:] if n.peer_id in victim.links),
                    "rogue_connected": rogue.identity.peer_id in victim.links,
                    "rogue_address_failures": 0 if entry is None else entry.failures,
                    "address_book": len(victim.book),
                    "converged": converged,
                    "oplogs": status["topics"][0]["valid"],
                    "api_ok": status["connected"] >= 2,
                    "control_ok": control_ok,
                    "peak_rss_mb": round(
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
                    ),
                }
                nursery.cancel_scope.cancel()
    finally:
        pttsync_log.removeHandler(counter)
        pttsync_log.setLevel(level)
    report["ok"] = bool(
        report["converged"]
        and report["rogue_closed_for_violations"] > 0
        and report["internal_errors"] == 0
        and report["api_ok"]
        and report["control_ok"]
        and report["honest_links"] == 2
    )
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="how long the rogue attacks")
    p.add_argument("--seed", type=int, default=None, help="the rogue's (and the nodes') seed")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    root = logging.getLogger()
    if not root.handlers:  # the node's errors on stderr; its warnings only counted
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.ERROR)
        root.addHandler(handler)
    report = trio.run(functools.partial(run, args.seconds, seed=args.seed))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        for key, value in report.items():
            print(f"{key:>24}: {value}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
