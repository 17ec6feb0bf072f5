"""Printing: JSON for scripts, plain text for people, progress for long work.

Results go to stdout.  What else a command tells the person running it goes
to stderr through `tell` (which, under `--log-format json`, makes it a log
record, so that stderr stays one JSON object per line), and progress
through a `LiveLine`: redrawn in place on a terminal, plain lines elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..core.identity import peer_id_text
from ..core.timeutil import to_iso
from ..jsonutil import jsonable

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ..core.merkle import MerkleNode
    from ..core.oplog import Oplog, OplogStatus


# -- IDs and hashes in text output ------------------------------------------------
#
# The rule: an ID some command takes as input is printed in full, so that it can
# be pasted into that command as it is: oplog IDs (`inspect oplog`), peer IDs
# (`member add|remove`), topic IDs (`--topic`).  A hash or digest that no command
# takes may be shortened to save room, but then as `short_hash` writes it, its head
# and its tail around "…" (e9a1c07d…5f2e): that is no prefix of anything, so it
# does not look like something to paste.  No ID is printed as a prefix and "…".
# --json always carries every ID and hash in full.


def short_hash(value: bytes | str) -> str:
    """A hash or digest shortened for reading (never for pasting): head…tail."""
    text = value.hex() if isinstance(value, bytes) else value
    return text if len(text) <= 16 else f"{text[:8]}…{text[-4:]}"


def table_lines(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    """A header and rows in columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


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


# -- what the person running the command is told, on stderr ---------------------

_log = logging.getLogger("pttsync.cli")


class _State:
    quiet = False  # -q: no progress, and of `tell`, errors only
    json_stderr = False  # --log-format json: stderr carries JSON log records only
    drawn: LiveLine | None = None  # the live line on a terminal now, if any
    entry = False  # main() is the process's own entry (cli/main.py `entry`): it ends with it


def mark_entry() -> None:
    """main() is the process's entry (cli/main.py `entry`)."""
    _State.entry = True


def is_entry() -> bool:
    """Whether main() is the process's entry: a command may end it, or exec it anew."""
    return _State.entry


def configure_output(*, quiet: bool, json_stderr: bool) -> None:
    """Set from -q and --log-format (by main.py, before the command runs)."""
    _State.quiet = quiet
    _State.json_stderr = json_stderr


def json_stderr() -> bool:
    """Whether stderr carries JSON log records (--log-format json)."""
    return _State.json_stderr


def tell(text: str, *, level: int = logging.WARNING) -> None:
    """Say `text` on stderr: as it is, or with --log-format json as a log record at
    `level` (logger pttsync.cli; a leading "pttsync: " is dropped, the logger says
    it).  -q keeps only errors (`level` logging.ERROR or above)."""
    if _State.json_stderr:
        _log.log(level, text.removeprefix("pttsync: "))
    elif level >= logging.ERROR or not _State.quiet:
        with live_line_aside():
            print(text, file=sys.stderr, flush=True)


def end_process_now(code: int) -> None:
    """If the command line is this process's entry (`pttsync`, `python -m pttsync`), end
    the process with `code` at once: its output flushed and logging shut down, but
    without the interpreter's teardown, which frees every object one by one (a
    simulation's millions: 0.8 s at 1,000 peers, more than a minute at 10,000).  In
    process (tests, tools, a program calling `main`), nothing: the command returns."""
    if not _State.entry:
        return
    end_live_line()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


# -- progress ---------------------------------------------------------------------


class LiveLine:
    """A line that shows how long work goes on, on `stream` (stderr by default).

    On a terminal it is redrawn in place (at most every `redraw` seconds, and
    whenever the state changes); elsewhere each change of `state` prints a
    plain line, and so does a change of text once `interval` seconds have
    passed since the last line, so that a file or a pipe gets a short story,
    not a flood.  Nothing shows in the first `after` seconds but a `final`
    text (quick work needs no progress).  On stderr, with --log-format json
    and no terminal, the plain lines are log records instead (INFO, logger
    pttsync.cli).  -q or `enabled=False` shows nothing.  Use it as a context
    manager, or call `close`, to end the line.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        enabled: bool = True,
        interval: float = 1.0,
        redraw: float = 0.1,
        after: float = 0.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and not _State.quiet
        self.terminal = _isatty(self.stream)
        self._as_log = not self.terminal and _State.json_stderr and self.stream is sys.stderr
        self._interval = redraw if self.terminal else interval
        self._last = -float("inf")
        self._quiet_until = time.monotonic() + after
        self._state: str | None = None
        self._text = ""
        self._width = 0  # of the text drawn on the terminal, to blank it out

    def show(self, text: str, *, state: str | None = None, final: bool = False) -> None:
        """Show `text`; a new `state` (or `final`) always shows, other changes at a pace."""
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._quiet_until and not final:
            return
        due = final or state != self._state or now - self._last >= self._interval
        self._state = state
        if not due or (text == self._text and not self.terminal):
            return
        self._last = now
        self._text = text
        if self.terminal:
            self._draw()
        elif self._as_log:
            _log.info(text)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the line on a terminal (the next output starts on a line of its own)."""
        if self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        if _State.drawn is self:
            _State.drawn = None

    def __enter__(self) -> LiveLine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _draw(self) -> None:
        pad = " " * max(0, self._width - len(self._text))
        self.stream.write("\r" + self._text + pad)
        self.stream.flush()
        self._width = len(self._text)
        _State.drawn = self

    @contextlib.contextmanager
    def erased(self) -> Iterator[None]:
        """Blank the line on the terminal while something else is written, then redraw it."""
        if not self._width:
            yield
            return
        try:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
        except (OSError, ValueError):
            yield
            return
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                self._draw()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real file
        return False


def live_line_aside() -> contextlib.AbstractContextManager[None]:
    """Erase the live line while something else is written, then draw it again below."""
    line = _State.drawn
    return line.erased() if line is not None else contextlib.nullcontext()


def end_live_line() -> None:
    """End the live line, if one is drawn (before an error message, say)."""
    line = _State.drawn
    if line is not None:
        with contextlib.suppress(OSError, ValueError):
            line.close()


class Progress:
    """`progress(done, total)` for long work, as a `LiveLine` on stderr."""

    def __init__(self, label: str, *, enabled: bool = True, min_interval: float = 1.0) -> None:
        self.label = label
        self._line = LiveLine(enabled=enabled, interval=min_interval)
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        pct = 100 * done / total if total else 100.0
        final = done >= total
        self._line.show(
            f"{self.label}: {done:,}/{total:,} ({pct:.0f}%), {done / elapsed:,.0f}/s",
            state="done" if final else None,
            final=final,
        )
        if final:
            self._line.close()
