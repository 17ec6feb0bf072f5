"""`pttsync demo`: peers in this process write at random and converge, shown live.

Runs N nodes in this process over loopback TCP, writes on random peers, and
shows live which peers hold the same tree, until all agree.  The live line
goes to stdout (it is what the demo shows): redrawn in place on a terminal,
elsewhere a plain line per change of phase and at most one a second.
"""

from __future__ import annotations

import contextlib
import functools
import random
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import add_command, add_json, bounded, port_or_zero
from .output import LiveLine, emit_json
from .run import make_peers
from .triorun import run_trio

LEGEND = (
    "marks: i:= peer i holds the common tree (its digest follows 'tree'),"
    " i:~ holds it with writes awaiting the master's co-signature, i:. not yet"
)

if TYPE_CHECKING:
    import argparse

    from ..datadir import DataDir
    from ..net.node import Node
    from .options import Subparsers


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "demo",
        cmd_demo,
        help="a self-contained demo: peers in one process write and converge",
        description=(
            "Start --peers nodes in this process over real TCP on localhost, make random"
            " writes on random peers, and show them converge: every peer ends with the"
            " same documents and the same Merkle digest.  A live line shows each phase"
            " (joining, write K/N, converging, converged), how many peers agree on the most"
            " common tree, a mark per peer and that tree's digest; "
            + LEGEND.replace("marks: ", "the marks: ")
            + ".  Off a terminal the line is printed again per change of phase, at most"
            " once a second; -q or --json hides it."
        ),
        data=False,
        topic=False,
    )
    p.add_argument(
        "--peers",
        type=bounded(1, 64),
        default=5,
        metavar="N",
        help="how many peers (1..64, default: %(default)s)",
    )
    p.add_argument(
        "--writes",
        type=bounded(1, 100_000),
        default=20,
        metavar="N",
        help="how many writes (1..100,000, default: %(default)s)",
    )
    p.add_argument(
        "--dir", metavar="DIR", help="keep the data directories here (default: a temporary one)"
    )
    p.add_argument(
        "--base-port",
        type=port_or_zero,
        default=0,
        metavar="PORT",
        help="the first peer's port (default: 0, free ports picked for you)",
    )
    p.add_argument(
        "--seed", type=int, metavar="N", help="random seed (default: a random one, printed)"
    )
    add_json(p)


def cmd_demo(args: argparse.Namespace) -> int:

    with contextlib.ExitStack() as stack:
        root = (
            Path(args.dir) if args.dir else Path(stack.enter_context(tempfile.TemporaryDirectory()))
        )
        dirs = make_peers(root, args.peers)
        seed = args.seed if args.seed is not None else random.randrange(2**32)
        with LiveLine(sys.stdout, enabled=not args.json) as live:
            if live.enabled:
                print(LEGEND, flush=True)
            report = run_trio(_demo, dirs, args.writes, args.base_port, seed, live)
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
    dirs: list[DataDir], writes: int, base_port: int, seed: int, live: LiveLine
) -> dict[str, Any]:
    import trio  # noqa: PLC0415

    from ..net.config import NodeConfig  # noqa: PLC0415
    from ..net.serve import serve_node  # noqa: PLC0415

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
                _show(nodes, live, "joining", "joining")
                with trio.move_on_after(0.25):
                    await nodes[-1].wait_for(lambda: False)
        last_write = trio.current_time()
        keys = max(1, writes // 2)  # about two writes per key: some overwrite, some conflict
        for w in range(writes):
            i = rng.randrange(n)
            await nodes[i].put(f"key-{rng.randrange(keys)}", {"write": w, "peer": i})
            last_write = trio.current_time()
            _show(nodes, live, "writing", f"write {w + 1}/{writes} on peer-{i}")
            if w + 1 < writes:
                await trio.sleep(rng.uniform(0.0, 0.1))
        converged = False
        with trio.move_on_after(120):
            while not converged:
                converged = _agree(nodes)
                state = "converged" if converged else "converging"
                _show(nodes, live, state, state)
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
    return report


def _agree(nodes: list[Node]) -> bool:
    digests = {bytes(next(iter(x.digests().values()))) for x in nodes}
    return len(digests) == 1 and all(x.pending_count() == 0 for x in nodes)


def _show(nodes: list[Node], live: LiveLine, state: str, what: str) -> None:
    """The live line: the phase, how many peers agree, a mark per peer (LEGEND), the tree."""
    if not live.enabled:
        return
    digests = [next(iter(x.digests().values())) for x in nodes]
    common = max(set(digests), key=digests.count)
    marks = " ".join(
        f"{i}:{'.' if d != common else '~' if x.pending_count() else '='}"
        for i, (x, d) in enumerate(zip(nodes, digests, strict=True))
    )
    agree = sum(1 for d in digests if d == common)
    line = f"{what:<28} agree {agree}/{len(nodes)} [{marks}] tree {common.hex()[:8]}"
    live.show(line[:200], state=state)
