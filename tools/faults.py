"""Real faults on real processes: `pttsync run` peers in Linux network namespaces.

    python tools/faults.py --scenario NAME [--peers 5] [--seed S] [--seconds 20] [--json]

Each peer is a `pttsync run` process in its own network namespace, joined to
the others through a bridge (tools/faultlab/netlab.py).  Peer 0 founds the
topic and is its only master; the others are members.  While every peer
writes through its control socket (concurrent updates of shared keys, and
members' writes that need the master's signature), the scenario injects its
faults with real tools:

| scenario | faults |
|---|---|
| partition-heal | the peers split in two halves by nftables drops, then healed |
| crash-restart | kill -9 of a random peer, five times, each restarted a second later |
| master-paused-until-expiry | SIGSTOP of the master until members' pending writes expire |
| skewed-clocks | every peer's clock off by up to 140 s (libfaketime), any two within 5 min |
| bandwidth-capped-catch-up | a late peer behind a 2 Mbit/s tc tbf cap catches up on 3,000+ oplogs |
| bit-rot | a bit flipped in three stored records of a stopped member, which then restarts |

Then every fault ends, the run waits for convergence (one digest, nothing
pending, on every peer), stops the peers and checks the invariants on their
stores (tools/faultlab/checks.py).  With --json it prints one object:

    {"scenario", "peers", "seed", "ok", "converged", "convergence_s",
     "invariants": {NAME: "ok" | what failed}, "lost_writes": [...],
     "acknowledged", "attempted", "valid", "rolled_back", "quarantined",
     "timeline": [[seconds, what], ...], "wall_s", "dir"}

`convergence_s` is counted from the end of the last fault.  Exit 0 when
every invariant holds, 1 when one is violated, 2 when network namespaces
cannot be made here (not root, no `ip netns`, no nftables), saying why.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import trio

from tools.faultlab.checks import check
from tools.faultlab.cluster import Cluster
from tools.faultlab.netlab import LabError, NetLab, unavailable
from tools.faultlab.scenarios import SCENARIOS, Timeline, prepare

CONVERGE_S = 90.0  # after the last fault, on top of any expiry still to run


async def run(args: argparse.Namespace, root: Path) -> dict[str, Any] | None:
    """The scenario and its checks; None if SIGINT or SIGTERM cut it short (the
    peers are stopped and the namespaces removed either way)."""
    lab = NetLab(args.peers)
    cluster = Cluster(lab, root)
    rng = random.Random(args.seed)
    timeline = Timeline(cluster)
    convergence: float | None = None
    interrupted = False
    lab.up()
    try:
        first = prepare(args.scenario, cluster, args.seconds)
        cluster.started = trio.current_time()
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:

                async def until_signal() -> None:
                    nonlocal interrupted
                    async for _ in signals:
                        interrupted = True
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(until_signal)
                try:
                    for i in first:
                        await cluster.start(i)
                    await SCENARIOS[args.scenario](cluster, timeline, rng, args.seconds)
                    timeline.note("faults over")
                    limit = CONVERGE_S + (cluster.expiry_s or 0)
                    convergence = await cluster.wait_converged(limit)
                    timeline.note("converged" if convergence is not None else "not converged")
                    nursery.cancel_scope.cancel()
                finally:
                    with trio.CancelScope(shield=True):
                        await cluster.stop_all()
        if interrupted:
            return None
    finally:
        lab.down()
    verdict = check([p.data for p in cluster.peers], cluster.history)
    if convergence is None:
        verdict.invariants["converged"] = f"not within {CONVERGE_S:.0f} s of the last fault"
    return {
        "scenario": args.scenario,
        "peers": args.peers,
        "seed": args.seed,
        "ok": verdict.ok,
        "converged": convergence is not None,
        "convergence_s": None if convergence is None else round(convergence, 2),
        "invariants": verdict.invariants,
        "lost_writes": verdict.lost,
        "acknowledged": len(cluster.history),
        "attempted": cluster.attempts,
        "valid": verdict.valid,
        "rolled_back": verdict.rolled_back,
        "quarantined": verdict.quarantined,
        "timeline": timeline.events,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    parser.add_argument("--peers", type=int, default=5, help="peers (2..20, default 5)")
    parser.add_argument("--seed", type=int, default=0, help="the workload's and faults' seed")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of the fault phase (default 20)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args(argv)
    if not 2 <= args.peers <= 20:
        parser.error("--peers is 2..20")
    if not 4 <= args.seconds <= 3600:
        parser.error("--seconds is 4..3600")
    reason = unavailable()
    if reason is not None:
        print(f"faults: cannot make network namespaces here: {reason}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="ptf-", dir="/tmp"))
    started = time.monotonic()

    try:
        report = trio.run(run, args, root)
    except LabError as exc:
        print(f"faults: the network lab failed: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if report is None:
        print("faults: interrupted; the peers are stopped and the namespaces gone", file=sys.stderr)
        return 130
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["dir"] = str(root) if args.keep else None
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['scenario']}, {args.peers} peers, seed {args.seed}:"
              f" {'ok' if report['ok'] else 'FAILED'}")  # fmt: skip
        conv = report["convergence_s"]
        print(f"  converged: {'no' if conv is None else f'{conv} s after the last fault'}")
        print(f"  writes: {report['acknowledged']} acknowledged of {report['attempted']},"
              f" {report['valid']} valid everywhere, {report['rolled_back']} rolled back"
              f" everywhere, {len(report['lost_writes'])} lost")  # fmt: skip
        if report["quarantined"]:
            print(f"  records quarantined as damaged (and replaced): {report['quarantined']}")
        for name, result in report["invariants"].items():
            print(f"  {name}: {result}")
        for at, what in report["timeline"]:
            print(f"  {at:7.2f} s  {what}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
