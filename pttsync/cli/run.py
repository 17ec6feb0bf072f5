"""`pttsync run`, `pttsync launch` and `pttsync demo`: nodes that serve peers.

* `run` serves one data directory until Ctrl-C or SIGTERM, then stops
  cleanly (the store is closed; a kill -9 loses nothing acknowledged).
* `launch N` makes N data directories in one topic (peer 0 its master,
  the others members admitted by peer 0) if they do not exist yet, starts
  one `pttsync run` process per peer on consecutive ports, prints a table,
  and stops them all on Ctrl-C or SIGTERM.  Each peer logs to
  DIR/peer-i/node.log.
* `demo` runs N nodes in this process over loopback TCP, writes on random
  peers, and shows live which peers hold the same tree, until all agree.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ..core.identity import peer_id_text
from ..datadir import DataDir
from ..errors import DataDirError, UsageError
from ..net.config import NodeConfig
from ..net.network import format_address
from ..net.serve import serve_node
from .commands import admit
from .output import emit_json

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from ..net.node import Node

log = logging.getLogger(__name__)

READY_TIMEOUT = 20.0  # seconds for a launched peer to open its control socket
STOP_TIMEOUT = 10.0  # seconds for a peer to stop after SIGTERM before it is killed


def _addr(value: tuple[str, int] | str) -> str:
    return value if isinstance(value, str) else format_address(*value)


# -- run ----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    config = NodeConfig(
        listen=_addr(args.listen) if args.listen else None,
        join=tuple(_addr(a) for a in args.join or ()),
        max_peers=args.max_peers,
        sync_interval=args.sync_interval,
        push=not args.no_push,
    )
    DataDir(args.data).check()
    trio.run(_run, Path(args.data), config)
    return 0


async def _run(data: Path, config: NodeConfig) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            node: Node = await nursery.start(functools.partial(serve_node, data, config=config))
            print(
                f"pttsync node {peer_id_text(node.peer_id)} listening on"
                f" {node.listen_address or '(not listening)'}; data in {data}",
                flush=True,
            )
            async for signum in signals:
                print(f"stopping ({signal.Signals(signum).name})", flush=True)
                nursery.cancel_scope.cancel()
                break


# -- launch ---------------------------------------------------------------------------


def make_peers(root: Path, n: int) -> list[DataDir]:
    """DIR/peer-0 .. peer-(n-1) in one topic: made if missing, checked if present."""
    dirs = [DataDir(root / f"peer-{i}") for i in range(n)]
    for i, d in enumerate(dirs):
        if d.path.exists() and any(d.path.iterdir()):
            d.check()
            continue
        now = time.time_ns()
        if i == 0:
            DataDir.init(d.path, topic_name="main", now=now, nonce=os.urandom(16))
            continue
        topic = dirs[0].topic()
        _, identity, _ = DataDir.init(
            d.path, topic_name="main", now=now, nonce=os.urandom(16), topic=topic
        )
        if admit(dirs[0], topic, identity.peer_id, now) is None:
            raise DataDirError(f"{dirs[0].path} is not a master of its topic: cannot admit peers")
    topics = {d.topic().topic_id for d in dirs}
    if len(topics) != 1:
        raise DataDirError(f"the data directories under {root} are not all in one topic")
    return dirs


def cmd_launch(args: argparse.Namespace) -> int:
    root = Path(args.dir)
    n, host, base = args.n, args.host, args.base_port
    if not 0 < base <= 65535 - n + 1:
        raise UsageError(f"ports {base}..{base + n - 1} are not all valid")
    dirs = make_peers(root, n)
    procs: list[subprocess.Popen[bytes]] = []
    join = format_address(host, base)
    with _stop_on(signal.SIGTERM):
        try:
            for i, d in enumerate(dirs):
                cmd = [sys.executable, "-m", "pttsync", "-v", "run", "--data", str(d.path)]
                cmd += ["--listen", format_address(host, base + i)]
                if args.sync_interval is not None:
                    cmd += ["--sync-interval", str(args.sync_interval)]
                if i:
                    cmd += ["--join", join]
                with open(d.path / "node.log", "ab") as logfile:
                    procs.append(
                        subprocess.Popen(
                            cmd, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
                        )
                    )
            _wait_ready(dirs, procs)
            _print_table(dirs, procs, host, base)
            print("all peers are up; Ctrl-C (or SIGTERM) stops them", flush=True)
            while True:
                for i, p in enumerate(procs):
                    if p.poll() is not None:
                        print(
                            f"peer-{i} exited with code {p.returncode}"
                            f" (see {dirs[i].path / 'node.log'})",
                            file=sys.stderr,
                        )
                        return 1
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("stopping all peers", flush=True)
            return 0
        finally:
            _stop_all(procs)


@contextlib.contextmanager
def _stop_on(signum: int) -> Iterator[None]:
    """Turn `signum` into KeyboardInterrupt for the duration."""

    def handler(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signum, handler)
    try:
        yield
    finally:
        signal.signal(signum, old)


def _wait_ready(dirs: list[DataDir], procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for d, p in zip(dirs, procs, strict=True):
        while not (d.path / "control.sock").exists():
            if p.poll() is not None:
                raise DataDirError(f"{d.path}: the node exited (see {d.path / 'node.log'})")
            if time.monotonic() > deadline:
                raise DataDirError(f"{d.path}: the node did not start within {READY_TIMEOUT} s")
            time.sleep(0.05)


def _print_table(
    dirs: list[DataDir], procs: list[subprocess.Popen[bytes]], host: str, base: int
) -> None:
    print(f"{'peer':<8} {'role':<7} {'listen':<22} {'pid':>7}  {'peer id':<54} data")
    for i, (d, p) in enumerate(zip(dirs, procs, strict=True)):
        role = "master" if i == 0 else "member"
        listen = format_address(host, base + i)
        print(f"peer-{i:<3} {role:<7} {listen:<22} {p.pid:>7}  {d.identity().text:<54} {d.path}")
    sys.stdout.flush()


def _stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# -- demo -----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        root = (
            Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        dirs = make_peers(root, args.peers)
        seed = args.seed if args.seed is not None else random.randrange(2**32)
        report = trio.run(_demo, dirs, args.writes, args.base_port, seed, not args.json)
    if args.json:
        emit_json(report)
    else:
        state = "converged" if report["converged"] else "did NOT converge"
        print(
            f"{state}: {report['peers']} peers, {report['writes']} writes,"
            f" {report['seconds']:.2f} s after the last write (seed {seed})"
        )
    return 0 if report["converged"] else 1


async def _demo(
    dirs: list[DataDir], writes: int, base_port: int, seed: int, live: bool
) -> dict[str, Any]:
    rng = random.Random(seed)
    n = len(dirs)
    nodes: list[Node] = []
    async with trio.open_nursery() as nursery:
        for i, d in enumerate(dirs):
            port = base_port + i if base_port else 0
            cfg = NodeConfig(
                listen=f"127.0.0.1:{port}",
                join=(nodes[0].listen_address,) if nodes and nodes[0].listen_address else (),
                sync_interval=2.0,
                control=False,
                seed=rng.randrange(2**32),
            )
            nodes.append(await nursery.start(functools.partial(serve_node, d.path, config=cfg)))
        with trio.fail_after(60):  # every peer learns its admission from peer 0
            while not (_agree(nodes) and all(x.links for x in nodes)):
                _show(nodes, live, "joining")
                with trio.move_on_after(0.25):
                    await nodes[-1].wait_for(lambda: False)
        last_write = trio.current_time()
        keys = max(1, writes // 2)  # about two writes per key: some overwrite, some conflict
        for w in range(writes):
            i = rng.randrange(n)
            await nodes[i].put(f"key-{rng.randrange(keys)}", {"write": w, "peer": i})
            last_write = trio.current_time()
            _show(nodes, live, f"write {w + 1}/{writes} on peer-{i}")
            if w + 1 < writes:
                await trio.sleep(rng.uniform(0.0, 0.1))
        converged = False
        with trio.move_on_after(120):
            while not converged:
                converged = _agree(nodes)
                _show(nodes, live, "converged" if converged else "converging")
                if not converged:
                    with trio.move_on_after(0.25):
                        await nodes[0].wait_for(lambda: False)
        report = {
            "peers": n,
            "writes": writes,
            "seed": seed,
            "converged": converged,
            "seconds": round(trio.current_time() - last_write, 3),
            "digests": [next(iter(x.digests().values())).hex() for x in nodes],
            "valid": [x.status()["topics"][0]["valid"] for x in nodes],
        }
        nursery.cancel_scope.cancel()
    if live:
        print()
    return report


def _agree(nodes: list[Node]) -> bool:
    digests = {bytes(next(iter(x.digests().values()))) for x in nodes}
    return len(digests) == 1 and all(x.pending_count() == 0 for x in nodes)


def _show(nodes: list[Node], live: bool, what: str) -> None:
    if not live:
        return
    digests = [next(iter(x.digests().values())) for x in nodes]
    common = max(set(digests), key=digests.count)
    marks = " ".join(
        f"{i}:{'=' if d == common and x.pending_count() == 0 else '.'}"
        for i, (x, d) in enumerate(zip(nodes, digests, strict=True))
    )
    agree = sum(1 for d in digests if d == common)
    line = f"\r{what:<28} agree {agree}/{len(nodes)} [{marks}] tree {common.hex()[:8]}"
    sys.stdout.write(line[:200])
    sys.stdout.flush()
