"""Log lines on stderr: as text for people, or one JSON object per line for log shippers.

`--log-format json` gives, per record, an object with `ts` (ISO 8601, UTC,
milliseconds), `level`, `logger` and `message`; `exc_info` (the formatted
traceback) and `stack_info` when the record has them; and every field the
record was given with `extra=` (JSON values as they are, bytes as hex,
anything else as its text).  main.py installs the handler; nothing else in
pttsync configures logging.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import TextIO

from . import output

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# A record's own attributes; the others came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def iso_utc(created: float) -> str:
    """A record's time as ISO 8601 in UTC, to the millisecond: 2025-01-01T12:00:00.123Z."""
    seconds = int(created)
    millis = min(int((created - seconds) * 1000), 999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _field(value: object) -> object:
    """An `extra=` value as JSON: as it is if JSON can hold it, bytes as hex, else its text."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return str(value)
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = _field(value)
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for `--log-format` text or json."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is when a record comes (tests swap it), and
    moves a live progress line out of the way: it is erased, the record written,
    and the line drawn again under it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # always the current sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        with output.live_line_aside():
            super().emit(record)
