"""`pttsync inspect diff A B`: why two peers disagree, read-only.

A is a data directory; B is another, or a running peer's HOST:PORT, whose
tree is fetched over the peer protocol with A's identity into memory
(net/fetchtree.py: pull-only, nothing is sent to B, nothing is written to
A).  core/store/diff.py finds the differing nodes and oplogs; this module
prints them as a tree, or as JSON.
"""

from __future__ import annotations

import argparse
import functools
import logging
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.identity import peer_id_text
from ..core.oplog import OplogStatus
from ..core.store.diff import DEFAULT_LIMIT, diff_stores
from ..core.store.memory import MemoryStore
from ..core.timeutil import to_iso
from ..datadir import DataDir, select_topic
from ..errors import LocalError, PttsyncError, UsageError
from ..net.fetchtree import DEFAULT_TIMEOUT, RefusedError, fetch_tree
from ..net.wire import check_address
from .options import add_command, add_json, count, seconds
from .output import emit_json, short_hash, tell
from .triorun import run_trio

if TYPE_CHECKING:
    from ..core.merkle import MerkleNode
    from ..core.store import Store
    from ..core.store.diff import Copy, Listing, NodeDiff, OplogDiff, TreeDiff
    from ..core.topic import TopicInfo
    from ..net.fetchtree import FetchReport
    from .options import Subparsers

EPILOG = """\
exit status: 0 if A and B hold the same oplogs, 1 if they differ, 2 on trouble
(a bad argument, a path that is not a data directory, an unknown topic, B
unreachable, refusing or breaking the protocol, or no answer within --timeout).

B as HOST:PORT: A's identity connects to the peer there, as a node would,
and pulls its tree into memory: B must already know A's peer as a member of
the topic, and is sent no oplog.  Only B's valid oplogs (its Merkle tree)
are fetched, so its pending ones are not compared.  If a node runs on A and
is connected to B, B refuses a second connection from A's peer ("already
connected"), or takes it in place of the node's, which then reconnects.
"""


def register(sub: Subparsers) -> None:
    """Add `diff` to the `inspect` subcommands."""
    q = add_command(
        sub,
        "diff",
        cmd_diff,
        help="where two peers' trees and oplogs differ",
        description=(
            "Compare one topic in A and B: walk both Merkle trees from the years down,"
            " through the nodes whose hashes differ or that one side lacks, down to the"
            " oplogs each side lacks or holds differently (another hash or status).  A is"
            " a data directory; B is a data directory or a running peer's HOST:PORT."
            "  Writes neither store; works while nodes run on them."
        ),
        data=False,
    )
    q.formatter_class = argparse.RawDescriptionHelpFormatter
    q.epilog = EPILOG
    q.add_argument("a", metavar="A", help="a data directory")
    q.add_argument("b", metavar="B", help="a data directory, or a running peer's HOST:PORT")
    q.add_argument(
        "--limit",
        type=count,
        default=DEFAULT_LIMIT,
        metavar="N",
        help="list at most N nodes and N oplogs of each kind; totals are always exact"
        " (default: %(default)s; 0: list everything)",
    )
    q.add_argument(
        "--timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="B as HOST:PORT: give up after this long (default: %(default)g)",
    )
    add_json(q)


def cmd_diff(args: argparse.Namespace) -> int:
    dir_a = DataDir(args.a)
    with ExitStack() as stack:
        store_a = stack.enter_context(dir_a.open_store())
        topic = select_topic(store_a, args.topic)
        tid = topic.topic_id
        side_a = _side(str(dir_a.path), store_a, tid)
        fetched: FetchReport | None = None
        if _is_address(args.b):
            store_b: Store = stack.enter_context(MemoryStore())
            store_b.add_topic(topic)
            identity = dir_a.identity()
            try:
                fetched = run_trio(
                    functools.partial(fetch_tree, timeout=args.timeout),
                    store_b, topic, identity, args.b,
                )  # fmt: skip
            except LocalError:
                raise
            except PttsyncError as exc:  # B's doing, or the network's: trouble (2), not "differ"
                tell(f"pttsync: error: {exc}{_hint(exc, dir_a)}", level=logging.ERROR)
                return 2
            side_b = _side(args.b, store_b, tid, pending=False)
            fetch = asdict(fetched)
            del fetch["address"], fetch["peer_id"]
            fetch["seconds"] = round(fetched.seconds, 3)
            side_b.update(peer_id=peer_id_text(fetched.peer_id), fetch=fetch)
        else:
            dir_b = DataDir(args.b)
            store_b = stack.enter_context(dir_b.open_store())
            if tid not in {t.topic_id for t in store_b.topics()}:
                raise UsageError(f"{dir_b.path} does not hold topic {tid.hex()}")
            side_b = _side(str(dir_b.path), store_b, tid)
        result = diff_stores(store_a, store_b, tid, limit=args.limit, pending=fetched is None)
    if fetched is not None and not fetched.settled:
        tell(
            f"pttsync: warning: {args.b}'s tree still changed after {fetched.rounds} rounds"
            f" ({fetched.rejected} of its oplogs refused here): B is shown as fetched"
        )
    side_a["digest"], side_b["digest"] = result.digest_a.hex(), result.digest_b.hex()
    if args.json:
        emit_json(_json(result, topic, side_a, side_b))
    else:
        _print(result, topic, side_a, side_b)
    return 0 if result.equal else 1


def _is_address(text: str) -> bool:
    """True for HOST:PORT; a path that exists is a data directory.  UsageError for neither."""
    if Path(text).exists():
        return False
    try:
        check_address(text)
    except ValueError:
        raise UsageError(
            f"no data directory at {text}, and {text!r} is not a peer's HOST:PORT"
        ) from None
    return True


def _hint(exc: PttsyncError, dir_a: DataDir) -> str:
    if not isinstance(exc, RefusedError):
        return ""
    if "not a member" in exc.reason:
        return f" (it must know A's peer {dir_a.identity().text} as a member of the topic)"
    if "already connected" in exc.reason:
        return (
            " (a node running on A is connected to it as A's peer; stop that node, or diff"
            " against B's data directory)"
        )
    return ""


def _side(source: str, store: Store, tid: bytes, *, pending: bool = True) -> dict[str, object]:
    waiting = store.count(tid, OplogStatus.PENDING) + store.count(tid, OplogStatus.INTERNAL_PENDING)
    return {
        "source": source,
        "valid": store.count(tid, OplogStatus.VALID),
        "pending": waiting if pending else None,  # None: not fetched
    }


# -- JSON -------------------------------------------------------------------------


def _json(
    result: TreeDiff, topic: TopicInfo, a: dict[str, object], b: dict[str, object]
) -> dict[str, object]:
    return {
        "topic_id": topic.topic_id.hex(),
        "equal": result.equal,
        "a": a,
        "b": b,
        "pending_compared": result.pending_compared,
        "pending_truncated": result.pending_truncated,
        "nodes": {
            "total": result.nodes.total,
            "by_level": result.nodes_by_level,
            "omitted": result.nodes.omitted,
            "listed": [_node_json(n) for n in result.nodes.items],
        },
        "only_in_a": _oplogs_json(result.only_a),
        "only_in_b": _oplogs_json(result.only_b),
        "different": _oplogs_json(result.different),
    }


def _node_json(n: NodeDiff) -> dict[str, object]:
    def side(node: MerkleNode | None) -> dict[str, object] | None:
        if node is None:
            return None
        return {"hash": node.hash.hex(), "children": node.children, "leaves": node.leaves}

    return {
        "level": n.level.name.lower(),
        "depth": n.depth,
        "nesting": n.nesting,
        "start": to_iso(n.start),
        "end": to_iso(n.end),
        "a": side(n.a),
        "b": side(n.b),
    }


def _oplogs_json(listing: Listing[OplogDiff]) -> dict[str, object]:
    def side(c: Copy | None) -> dict[str, object] | None:
        if c is None:
            return None
        return {
            "status": _status(c.status),
            "hash": c.hash.hex(),
            "update_time": to_iso(c.update_time),
            "update_time_ns": c.update_time,
        }

    return {
        "total": listing.total,
        "omitted": listing.omitted,
        "oplogs": [
            {"oplog_id": d.oplog_id.hex(), "a": side(d.a), "b": side(d.b)} for d in listing.items
        ],
    }


# -- text -------------------------------------------------------------------------


def _print(result: TreeDiff, topic: TopicInfo, a: dict[str, object], b: dict[str, object]) -> None:
    print(f"topic  {topic.topic_id.hex()}  ({topic.name})")
    for name, side in (("A", a), ("B", b)):
        pending = side["pending"]
        waiting = "pending not fetched" if pending is None else f"{pending:,} pending"
        peer = f" (peer {side['peer_id']})" if "peer_id" in side else ""
        print(f"{name}      {side['source']}{peer}: {side['valid']:,} valid, {waiting}")
        print(f"       digest {side['digest']}")
    if result.equal:
        what = "valid oplogs" if not result.pending_compared else "oplogs, valid and pending"
        print(f"equal: A and B hold the same {what}")
        return
    levels = ", ".join(_count(n, k) for k, n in result.nodes_by_level.items())
    print(
        f"differ: {_count(result.nodes.total, 'node')} ({levels or 'none'}); oplogs:"
        f" {result.only_a.total:,} only in A, {result.only_b.total:,} only in B,"
        f" {result.different.total:,} held differently"
    )
    _print_tree(result.nodes.items)
    if result.nodes.omitted:
        print(f"… and {result.nodes.omitted:,} more differing nodes (--limit)")
    for title, listing in (
        ("only in A", result.only_a),
        ("only in B", result.only_b),
        ("held differently", result.different),
    ):
        if not listing.total:
            continue
        print(f"{title} ({listing.total:,}):")
        for d in listing.items:
            if d.a is not None and d.b is not None:
                print(f"  {d.oplog_id.hex()}  A {_copy(d.a)}  B {_copy(d.b)}")
            else:
                c = d.a or d.b
                assert c is not None
                print(f"  {d.oplog_id.hex()}  {_copy(c)}")
        if listing.omitted:
            print(f"  … and {listing.omitted:,} more (--limit)")
    if result.pending_truncated:
        print("(not-yet-valid oplogs were compared in part: a side holds too many to list)")


def _print_tree(nodes: list[NodeDiff]) -> None:
    """The nodes (in walk order) as a tree: each below its parent, with its two sides."""
    last = _last_flags(nodes)
    open_at: list[bool] = []  # for each ancestor of the row: does its branch go on below?
    for n, is_last in zip(nodes, last, strict=True):
        del open_at[n.nesting :]
        rails = "".join("│   " if more else "    " for more in open_at)
        print(rails + ("└── " if is_last else "├── ") + _node_line(n))
        open_at.append(not is_last)


def _last_flags(nodes: list[NodeDiff]) -> list[bool]:
    """For each row, whether it is the last of its siblings (one pass, from the end)."""
    flags = [False] * len(nodes)
    later: list[bool] = []  # at each nesting: a sibling follows, before the parent's next
    for i in range(len(nodes) - 1, -1, -1):
        n = nodes[i].nesting
        later.extend([False] * (n + 1 - len(later)))
        flags[i] = not later[n]
        later[n] = True
        del later[n + 1 :]
    return flags


def _node_line(n: NodeDiff) -> str:
    def side(name: str, node: MerkleNode | None) -> str:
        if node is None:
            return f"{name} absent"
        return f"{name} {short_hash(node.hash)} {_count(node.leaves, 'leaf', 'leaves'):>13}"

    return f"{n.level.name.lower():<5}  {to_iso(n.start)}  {side('A', n.a)}  {side('B', n.b)}"


def _copy(c: Copy) -> str:
    return f"{_status(c.status):<7} {to_iso(c.update_time)}  hash {short_hash(c.hash)}"


def _status(status: OplogStatus) -> str:
    return status.name.lower().replace("_", "-")


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"
