"""Benchmark the lifecycle: co-signing in postsync, and a governance change's re-judging.

    python tools/bench_lifecycle.py                 # 1,000 pending writes, 20,000 valid oplogs
    python tools/bench_lifecycle.py --pending 5000 --valid 100000

Reports, from one run:

* `cosign`: a member's peer holds `--pending` pending writes; sync rounds with
  the master's peer until all are valid on both.  Rounds needed (each
  postsync carries at most 256), seconds, and writes made valid per second
  against a plain valid-oplog sync of the same count (the ratio is the cost
  of the lifecycle: HandlePendingOplogs, the master's signature, the copy
  sent back).
* `regovern`: the store also holds `--valid` valid oplogs by the master; the
  member is then removed, dated before its writes.  Seconds for that one
  commit, which re-judges every oplog after the change and rolls back the
  member's writes.
"""

from __future__ import annotations

import argparse
import json
import time

import pttsync
from pttsync.core.docop import put_payload
from pttsync.synthetic import populate

HOUR = 3600 * 10**9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pending", type=int, default=1000, help="member writes (default 1,000)")
    p.add_argument("--valid", type=int, default=20_000, help="master's oplogs (default 20,000)")
    args = p.parse_args(argv)
    t0 = pttsync.parse_iso("2026-01-05T00:00Z")
    master, member = pttsync.Identity.from_seed(b"m" * 32), pttsync.Identity.from_seed(b"b" * 32)
    topic = pttsync.new_topic(master, name="bench", create_time=t0, nonce=bytes(16))
    a, b = pttsync.Store.memory(), pttsync.Store.memory()
    ra = pttsync.found_topic(a, master, topic)
    b.add_topic(topic)
    rb = pttsync.Replica(b, topic.topic_id, identity=member)
    ra.set_role(member.peer_id, pttsync.Role.MEMBER, now=t0 + 1)
    populate(a, master, topic.topic_id, count=args.valid, start=t0 - 24 * HOUR, end=t0, seed=1)

    def sync(now: int, rounds: int = 64) -> pttsync.LocalSyncReport:
        return pttsync.sync_local(
            b,
            a,
            topic.topic_id,
            peer_a=member.peer_id,
            peer_b=master.peer_id,
            now=now,
            replica_a=rb,
            replica_b=ra,
            max_rounds=rounds,
        )

    sync(t0 + 2)
    now = t0 + 10**9
    for i in range(args.pending):
        rb.create(object_id=f"k{i}".encode(), op=1, value=put_payload(i), now=now + i)
    now += args.pending + 10**9
    started = time.perf_counter()
    rounds = 0
    while b.has_pending(topic.topic_id) and rounds < 64:
        rounds += len(sync(now, 1).rounds)
    cosign_s = time.perf_counter() - started
    valid = b.count(topic.topic_id, pttsync.OplogStatus.VALID)

    # The same number of already-valid oplogs, synced to an empty peer, for the ratio.
    c, d = pttsync.Store.memory(), pttsync.Store.memory()
    for s in (c, d):
        s.add_topic(topic)
    populate(c, master, topic.topic_id, count=args.pending, start=now - HOUR, end=now, seed=2)
    started = time.perf_counter()
    pttsync.sync_local(c, d, topic.topic_id, peer_a=b"c" * 32, peer_b=b"d" * 32, now=now + HOUR)
    plain_s = time.perf_counter() - started

    removal = pttsync.create_oplog(
        master,
        topic_id=topic.topic_id,
        object_id=member.peer_id,
        op=0x101,
        value={"role": 0},
        create_time=t0 + 3,
    )
    started = time.perf_counter()
    ra.commit([(removal, ra.assess(removal))], now=now + HOUR)
    regovern_s = time.perf_counter() - started
    rolled = len(a.failed(topic.topic_id, limit=10**6))
    report = {
        "pending": args.pending,
        "valid": args.valid,
        "cosign_rounds": rounds,
        "cosign_seconds": round(cosign_s, 3),
        "made_valid": valid - args.valid - 2,  # less the master's oplogs, genesis and role
        "cosign_per_second": round(args.pending / cosign_s),
        "plain_sync_seconds": round(plain_s, 3),
        "cosign_vs_plain": round(cosign_s / plain_s, 2),
        "regovern_seconds": round(regovern_s, 3),
        "rolled_back_by_removal": rolled,
    }
    print(json.dumps(report))
    return 0 if report["made_valid"] == args.pending and rolled == args.pending else 1


if __name__ == "__main__":
    raise SystemExit(main())
