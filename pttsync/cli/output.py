"""Printing: JSON for scripts, plain text for people, progress for long work."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from ..core.identity import peer_id_text
from ..core.timeutil import to_iso
from ..jsonutil import jsonable

if TYPE_CHECKING:
    from ..core.merkle import MerkleNode
    from ..core.oplog import Oplog, OplogStatus


def emit_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2, sort_keys=False, allow_nan=False)
    sys.stdout.write("\n")


def node_json(node: MerkleNode) -> dict[str, object]:
    return {
        "level": node.level.name.lower(),
        "start": to_iso(node.start),
        "end": to_iso(node.end),
        "hash": node.hash.hex(),
        "children": node.children,
        "leaves": node.leaves,
    }


def node_line(node: MerkleNode) -> str:
    return (
        f"{node.level.name.lower():<5}  {to_iso(node.start)}  {node.hash.hex()}"
        f"  children {node.children:>3}  leaves {node.leaves}"
    )


def oplog_json(oplog: Oplog, status: OplogStatus) -> dict[str, object]:
    try:
        data: object = jsonable(oplog.decoded_data())
    except Exception:  # stored data is checked on write; show the bytes if it ever is not
        data = None
    return {
        "oplog_id": oplog.oplog_id.hex(),
        "status": status.name.lower(),
        "version": oplog.version,
        "topic_id": oplog.topic_id.hex(),
        "creator": peer_id_text(oplog.creator),
        "create_time": to_iso(oplog.create_time),
        "create_time_ns": oplog.create_time,
        "object_id": oplog.object_id.decode("utf-8", "backslashreplace"),
        "object_id_hex": oplog.object_id.hex(),
        "op": oplog.op,
        "prev_id": oplog.prev_id.hex() if oplog.prev_id else None,
        "data": data,
        "data_hex": oplog.data.hex(),
        "creator_sig": oplog.creator_sig.hex(),
        "master_sigs": [_sig_json(s.signer, s.time, s.sig) for s in oplog.master_sigs],
        "internal_sigs": [_sig_json(s.signer, s.time, s.sig) for s in oplog.internal_sigs],
        "update_time": to_iso(oplog.update_time),
        "update_time_ns": oplog.update_time,
        "hash": oplog.hash.hex(),
    }


def _sig_json(signer: bytes, t: int, sig: bytes) -> dict[str, object]:
    return {"signer": peer_id_text(signer), "time": to_iso(t), "sig": sig.hex()}


class Progress:
    """Progress lines on stderr: rewritten in place on a terminal, one per step otherwise."""

    def __init__(self, label: str, *, enabled: bool = True, min_interval: float = 0.5) -> None:
        self.label = label
        self.enabled = enabled
        self._tty = sys.stderr.isatty()
        self._started = time.monotonic()
        self._last = 0.0
        self._min_interval = min_interval

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < self._min_interval:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        pct = 100 * done / total if total else 100.0
        line = f"{self.label}: {done:,}/{total:,} ({pct:.0f}%), {done / elapsed:,.0f}/s"
        if self._tty:
            end = "\n" if done >= total else ""
            sys.stderr.write("\r" + line + end)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
