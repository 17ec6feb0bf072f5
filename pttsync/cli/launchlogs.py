"""`pttsync launch logs --dir DIR [PEER] [-f] [--tail N]`: the peers' logs, each line prefixed.

Each peer logs to DIR/peer-i/node.log: the peers DIR/launch.json names, or
with no launch.json the peer-i directories there are.  What the logs hold
now (whole, or their last N lines) is printed interleaved in time order,
as `docker compose logs` does: by the time stamp that starts a log line
(text or JSON format), a line without one (a traceback's, the node's
banner) keeping its place after the line before it; the files are merged
as they are read, never loaded whole.  With -f the logs are then followed
together, their new lines interleaved as they come, until Ctrl-C.
Following polls the files every `POLL` seconds and reads at most
`MAX_READ` bytes of each at a time: a log that appears later is picked
up, and one truncated or replaced is read again from its start.
A line is `peer-1 | ...`, or with --json {"peer": "peer-1", "line": "..."},
one JSON object a line.
"""

from __future__ import annotations

import heapq
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import UsageError
from . import launchstate
from .options import add_command, add_json, count
from .output import tell

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterator

    from .options import Subparsers

POLL = 0.25  # seconds between looks at the followed logs
MAX_READ = 1 << 20  # bytes read from one log at one look
BLOCK = 1 << 16  # bytes read at a time when looking for the last lines


def register(forms: Subparsers) -> None:
    p = add_command(
        forms,
        "logs",
        cmd_logs,
        help="the peers' logs, each line prefixed with its peer; -f follows them",
        description=(
            "Print every peer's log (DIR/peer-i/node.log), or PEER's, each line prefixed"
            " with its peer's name, interleaved in time order.  With -f, then follow them"
            " all, printing new lines as"
            " they come, interleaved, until Ctrl-C; a log that appears later or is"
            " truncated is picked up."
        ),
        data=False,
        topic=False,
    )
    p.add_argument(
        "peer", metavar="PEER", nargs="?", help="only this peer: its name (peer-1) or number (1)"
    )
    p.add_argument("--dir", required=True, metavar="DIR", help="the launch's directory")
    p.add_argument("-f", "--follow", action="store_true", help="follow the logs until Ctrl-C")
    p.add_argument(
        "--tail", type=count, metavar="N", help="only the last N lines of each log, to begin with"
    )
    add_json(p)


class _Log:
    """One peer's log file, and how far it has been read."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        self.inode: int | None = None
        self.offset = 0
        self.partial = b""  # the start of a line whose end has not been written yet

    def first(self, tail: int | None) -> Iterator[str]:
        """The lines there are now (the last `tail` of them); the rest is for `new`."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below; a generator reads it
        except FileNotFoundError:
            return
        with f:
            st = os.fstat(f.fileno())
            self.inode = st.st_ino
            start = _tail_start(f, st.st_size, tail) if tail is not None else 0
            f.seek(start)
            # Only what was there when it was opened: what a peer writes meanwhile
            # is `new`'s, once (the catch-up is read lazily, as it is merged).
            left = st.st_size - start
            for line in f:
                if left <= 0:
                    break
                raw, left = line[:left], left - len(line)
                if raw.endswith(b"\n"):
                    yield _text(raw)
                else:
                    self.partial = raw
            self.offset = st.st_size

    def new(self) -> list[str]:
        """The lines written since the last look."""
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return []
        with f:
            st = os.fstat(f.fileno())
            if st.st_ino != self.inode or st.st_size < self.offset:
                if self.inode is not None:
                    tell(f"pttsync: {self.path} was truncated or replaced: reading it again")
                self.inode, self.offset, self.partial = st.st_ino, 0, b""
            if st.st_size == self.offset:
                return []
            f.seek(self.offset)
            data = f.read(MAX_READ)
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        return [_text(line) for line in lines]

    def rest(self) -> list[str]:
        """A last line without its newline, at the end."""
        line, self.partial = self.partial, b""
        return [_text(line)] if line else []


_TEXT_STAMP = re.compile(r"(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)[,.](\d{3})")
_JSON_STAMP = re.compile(r'\{"ts":\s*"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})')


def stamped(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(sort key, line): the line's own time stamp, or the last one before it ("" at first)."""
    last = ""
    for line in lines:
        m = _TEXT_STAMP.match(line)
        if m is not None:
            last = f"{m[1]}T{m[2]}.{m[3]}"
        elif (j := _JSON_STAMP.match(line)) is not None:
            last = j[1]
        yield last, line


def _now(log: _Log, tail: int | None, follow: bool) -> Iterator[str]:
    """What `log` holds now; without `follow`, its unfinished last line too."""
    yield from log.first(tail)
    if not follow:
        yield from log.rest()


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")


def _tail_start(f: IO[bytes], size: int, n: int) -> int:
    """Where the last `n` lines of `f` (`size` bytes) begin; a last line may lack its newline."""
    if n == 0 or size == 0:
        return size
    f.seek(size - 1)
    end = size - 1 if f.read(1) == b"\n" else size  # the final newline ends the last line
    found = 0
    while end > 0:
        start = max(0, end - BLOCK)
        f.seek(start)
        chunk = f.read(end - start)
        i = len(chunk)
        while (i := chunk.rfind(b"\n", 0, i)) >= 0:
            found += 1
            if found == n:
                return start + i + 1
        end = start
    return 0


def _logs(root: Path) -> list[_Log]:
    state = launchstate.read_state(root)
    if state is not None:
        return [_Log(str(p["name"]), Path(p["log"])) for p in state["peers"]]
    found = [d for d in root.iterdir() if re.fullmatch(r"peer-\d+", d.name) and d.is_dir()]
    if not found:
        raise UsageError(f"no launch on {root}: no {launchstate.STATE_FILE}, no peer-i directories")
    found.sort(key=lambda d: int(d.name.removeprefix("peer-")))
    return [_Log(d.name, d / "node.log") for d in found]


def cmd_logs(args: argparse.Namespace) -> int:
    root = launchstate.launch_dir(args.dir)
    logs = _logs(root)
    if args.peer is not None:
        view = {"dir": str(root), "peers": [{"name": log.name} for log in logs]}
        name = launchstate.resolve_peer(view, args.peer)["name"]
        logs = [log for log in logs if log.name == name]
    width = max(len(log.name) for log in logs)

    def emit(log: _Log, lines: Iterator[str] | list[str]) -> None:
        for line in lines:
            if args.json:
                print(json.dumps({"peer": log.name, "line": line}, separators=(",", ":")))
            else:
                print(f"{log.name:<{width}} | {line}")

    def keyed(i: int, log: _Log) -> Iterator[tuple[str, int, int, str]]:
        for n, (key, line) in enumerate(stamped(_now(log, args.tail, args.follow))):
            yield key, i, n, line

    try:
        for _key, i, _n, line in heapq.merge(*(keyed(i, log) for i, log in enumerate(logs))):
            emit(logs[i], [line])
        sys.stdout.flush()
        if args.follow:
            _follow(logs, emit)
    except KeyboardInterrupt:
        if not args.follow:
            raise
        return 0  # Ctrl-C is how following ends, during the catch-up too
    return 0


def _follow(logs: list[_Log], emit: Callable[[_Log, Any], None]) -> None:
    while True:
        for log in logs:
            emit(log, log.new())
        sys.stdout.flush()
        time.sleep(POLL)
