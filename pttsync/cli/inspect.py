"""`pttsync inspect merkle | tree-list | oplog | check | diff`: read-only views of a store.

`inspect diff`, which compares two peers, is in diff.py; this module registers it.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..core.merkle import Level, MerkleNode, MerkleTree
from ..core.oplog import OplogStatus
from ..core.store.integrity import scan
from ..core.timeutil import to_iso
from ..datadir import DataDir, select_topic
from ..errors import UsageError
from . import diff
from .options import add_command, add_json, iso
from .output import Progress, emit_json, node_json, node_line, oplog_json

if TYPE_CHECKING:
    import argparse

    from ..core.store import Damage, Store, StoredOplog
    from .options import Subparsers

_LEVELS = {"year": Level.YEAR, "month": Level.MONTH, "day": Level.DAY, "hour": Level.HOUR}


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "inspect",
        help="look inside a store (works while no node runs)",
        description=(
            "Look at a store's Merkle tree, tree lists and oplogs, or compare two peers' (diff)."
        ),
    )
    isub = p.add_subparsers(dest="what", metavar="WHAT", required=True)

    q = add_command(
        isub,
        "merkle",
        cmd_merkle,
        help="the Merkle tree, down to a level",
        description=(
            "Print the Merkle tree from its years down to LEVEL: each node's level, start"
            " (ISO 8601, UTC), hash, number of children and number of leaves."
            "  With --json, print the nodes of LEVEL as a list."
        ),
    )
    q.add_argument(
        "--level",
        choices=list(_LEVELS),
        default="month",
        help="the deepest level to show (default: month)",
    )
    add_json(q)

    q = add_command(
        isub,
        "tree-list",
        cmd_tree_list,
        help="the PIP-11 tree list for a to-sync-time",
        description=(
            "Print the tree list a sync round compares for to-sync-time AT: past years,"
            " then this year's months, this month's days and today's hours before AT's hour."
        ),
    )
    q.add_argument("--at", type=iso, required=True, metavar="ISO", help="the to-sync-time")
    add_json(q)

    q = add_command(
        isub,
        "oplog",
        cmd_oplog,
        help="one decoded oplog and its status",
        description="Print one oplog, found by its hex ID or a unique prefix of it.",
    )
    q.add_argument("oplog_id", metavar="OPLOG_ID", help="hex oplog ID, or a unique prefix")
    add_json(q)

    q = add_command(
        isub,
        "check",
        cmd_check,
        help="verify every stored record and the tree",
        description=(
            "Decode every stored record and verify its ID, hash and signatures against its"
            " row; check that every valid oplog has its leaf, every leaf its oplog, and that"
            " every tree node matches a rebuild from the leaves.  Lists damaged records and"
            " exits 1 if anything is wrong.  Records a running node found damaged and"
            " quarantined (its peers' copies replace them) are listed too."
        ),
    )
    q.add_argument(
        "--no-signatures",
        action="store_true",
        help="skip the signatures: finds bit rot (IDs and hashes) several times faster",
    )
    add_json(q)

    diff.register(isub)


def cmd_merkle(args: argparse.Namespace) -> int:
    deepest = _LEVELS[args.level]
    with DataDir(args.data).open_store() as store:
        topic = select_topic(store, args.topic)
        tree = store.tree(topic.topic_id)
        years = tree.level_nodes(Level.YEAR)
        digest = tree.digest().hex()
        total = sum(y.leaves for y in years)
        if args.json:
            emit_json(
                {
                    "topic_id": topic.topic_id.hex(),
                    "digest": digest,
                    "leaves": total,
                    "level": args.level,
                    "nodes": [node_json(n) for n in tree.level_nodes(deepest)],
                }
            )
            return 0
        print(f"topic  {topic.topic_id.hex()}  ({topic.name})")
        print(f"digest {digest}  ({total:,} leaves)")
        if not years:
            print("(the tree is empty)")
        for i, year in enumerate(years):
            _print_subtree(tree, year, deepest, "", i == len(years) - 1)
    return 0


def _print_subtree(
    tree: MerkleTree, node: MerkleNode, deepest: Level, prefix: str, last: bool
) -> None:
    print(prefix + ("└── " if last else "├── ") + node_line(node))
    if node.level <= deepest:
        return
    kids = tree.children(node)
    child_prefix = prefix + ("    " if last else "│   ")
    for i, kid in enumerate(kids):
        assert isinstance(kid, MerkleNode)  # calendar levels above an hour have node children
        _print_subtree(tree, kid, deepest, child_prefix, i == len(kids) - 1)


def cmd_tree_list(args: argparse.Namespace) -> int:
    with DataDir(args.data).open_store() as store:
        topic = select_topic(store, args.topic)
        nodes = store.tree(topic.topic_id).tree_list(args.at)
    if args.json:
        emit_json(
            {
                "topic_id": topic.topic_id.hex(),
                "to_sync_time": to_iso(args.at),
                "nodes": [node_json(n) for n in nodes],
            }
        )
        return 0
    print(f"tree list for to-sync-time {to_iso(args.at)}: {len(nodes)} nodes")
    for node in nodes:
        print("  " + node_line(node))
    return 0


def cmd_oplog(args: argparse.Namespace) -> int:
    with DataDir(args.data).open_store() as store:
        topic = select_topic(store, args.topic)
        found = _find_oplog(store, topic.topic_id, args.oplog_id)
    info = oplog_json(found.oplog, found.status)
    if args.json:
        emit_json(info)
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key in ("master_sigs", "internal_sigs"):
            sigs = value if isinstance(value, list) else []
            print(f"{key:<{width}}  {len(sigs)}")
            for sig in sigs:
                print(f"{'':<{width}}    {sig['signer']} at {sig['time']}")
        else:
            print(f"{key:<{width}}  {'-' if value is None else value}")
    return 0


def _find_oplog(store: Store, topic_id: bytes, text: str) -> StoredOplog:
    wanted = text.strip().lower()
    if len(wanted) < 4:
        raise UsageError(f"{text!r} is not a hex oplog ID or a prefix of at least 4 hex digits")
    matches = store.find(topic_id, wanted, limit=2)  # checks that it is hex
    if not matches:
        raise UsageError(f"no oplog {text!r} in topic {topic_id.hex()}")
    if len(matches) > 1:
        raise UsageError(f"oplog prefix {text!r} is ambiguous; give more digits")
    return matches[0]


def cmd_check(args: argparse.Namespace) -> int:
    with DataDir(args.data).open_store() as store:
        topic = select_topic(store, args.topic)
        tid = topic.topic_id
        total = store.count(tid)
        bar = Progress("check", enabled=not args.quiet and sys.stderr.isatty())
        damaged = scan(
            store, tid, signatures=not args.no_signatures, progress=lambda n: bar(n, total)
        )
        problems = store.check(tid)
        quarantined = store.quarantined(tid)
        digest = store.tree(tid).digest().hex()
    ok = not problems and not damaged
    if args.json:
        emit_json(
            {
                "topic_id": tid.hex(),
                "ok": ok,
                "digest": digest,
                "records": total,
                "signatures": not args.no_signatures,
                "problems": problems,
                "damaged": [_damage_json(d) for d in damaged],
                "quarantined": [_damage_json(d) for d in quarantined],
            }
        )
        return 0 if ok else 1
    what = "IDs and hashes" if args.no_signatures else "IDs, hashes and signatures"
    if ok:
        print(f"ok: {total:,} records verified ({what}); store is consistent; digest {digest}")
    for d in damaged:
        status = _STATUS_NAMES.get(d.status, str(d.status))
        print(f"damaged: oplog {d.oplog_id.hex()} ({status}): {d.reason}")
    if problems:
        print(f"{len(problems)} problems:")
        for p in problems:
            print("  " + p)
    if damaged:
        print(
            f"{len(damaged)} of {total:,} records are damaged on disk.  A running node on this"
            " directory quarantines each when it reads it, and fetches a good copy from a peer."
        )
    for d in quarantined:
        print(f"quarantined earlier: oplog {d.oplog_id.hex()}: {d.reason}")
    return 0 if ok else 1


_STATUS_NAMES = {int(s): s.name.lower().replace("_", "-") for s in OplogStatus}


def _damage_json(d: Damage) -> dict[str, object]:
    status = _STATUS_NAMES.get(d.status, str(d.status))
    return {"oplog_id": d.oplog_id.hex(), "status": status, "reason": d.reason}
