"""`pttsync put`, `get`, `delete` and `list`: documents, through the running node.

Each sends its request to the node on DIR (see client.py) and prints the
answer: plain text for people, JSON with --json.  A value is JSON text on the
command line, on stdin (`-`) or in a file (`@FILE`), or with --raw the bytes
of stdin or a file, a byte string; `get --raw` writes a value's own bytes.
The key and the value are checked here as the node checks them (the limits
are core/docop.py's), so that a bad one is refused with the node's message
before anything is sent, and a huge input before it is read through.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from typing import TYPE_CHECKING, Any

from ..core.docop import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    key_to_object,
    value_size,
    value_too_large,
)
from ..core.documents.docstore import MAX_LIST
from ..errors import UsageError
from ..net.controlcodec import ListPager
from ..net.controlwire import BYTES_KEY, MAX_LINE, NonFiniteNumberError, decode_json, json_value
from .client import call
from .options import add_command, add_json, bounded
from .output import emit_json, tell

if TYPE_CHECKING:
    import argparse

    from .options import Subparsers

MAX_INPUT = MAX_LINE
"""The most JSON text read for a value from stdin or a file, in bytes (2 MiB).  A value
within the limit is far shorter as JSON (controlwire.MAX_VALUE_JSON); more is refused
unread."""
# A VALUE that starts with "-" and a digit (-1e5, -.5) or is -Infinity is a value,
# not an option: argparse's own test takes -1 and -1.5, not -1e5.
_NEGATIVE_NUMBER = re.compile(r"^-(\d|\.\d|Infinity$)")

LIMITS = (
    f"Limits: a key is at most {MAX_KEY_BYTES} bytes of UTF-8; a value at most"
    f" {MAX_VALUE_BYTES:,} bytes ({MAX_VALUE_BYTES // 1024} KiB) encoded, in CBOR as the"
    " node stores it (text and a byte string take their length and up to 3 bytes more,"
    f" a number 1 to 9 bytes), with lists and maps nested at most {MAX_VALUE_DEPTH} deep."
)


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "put",
        cmd_put,
        help="write a document through the running node",
        description=(
            "Write VALUE as the document KEY's new version, through the node running on"
            " DIR, which pushes it to its peers.  VALUE is JSON text: a string needs JSON"
            """ quotes (pttsync put --data DIR greeting '"hello"'); a negative number needs"""
            " no `--` (put --data DIR n -1e5).  VALUE `-` reads the JSON text from standard"
            " input, and `@FILE` from FILE; the strings - and @home, like any string, are"
            """ written in JSON quotes ('"-"', '"@home"').  A byte string is"""
            ' {"$bytes": "<base64>"} in JSON, or with --raw the bytes of standard input'
            " or of FILE as they are.  " + LIMITS
        ),
    )
    p._negative_number_matcher = _NEGATIVE_NUMBER
    p.add_argument(
        "key",
        metavar="KEY",
        help=f"the document's key: printable text, at most {MAX_KEY_BYTES} bytes of UTF-8",
    )
    p.add_argument(
        "value",
        metavar="VALUE",
        help=(
            "the new value: JSON text, or - (standard input) or @FILE holding it;"
            f" at most {MAX_VALUE_BYTES:,} bytes encoded"
        ),
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="VALUE (- or @FILE) holds the bytes of a byte string, not JSON text",
    )
    add_json(p)

    p = add_command(
        sub,
        "get",
        cmd_get,
        help="read a document from the running node",
        description=(
            "Print the value of document KEY as JSON (exit 1 if there is no such document);"
            ' a byte string is {"$bytes": "<base64>"}.  With --raw, write the value\'s own'
            " bytes instead, nothing added: a byte string's bytes, a string's UTF-8, any"
            " other value's JSON text and a newline, as without --raw.  With --json, print"
            " the document's whole state: the shown version, whether it is pending, and"
            " any conflicting versions."
        ),
    )
    p.add_argument("key", metavar="KEY", help="the document's key")
    p.add_argument(
        "--raw",
        action="store_true",
        help="write a byte string's bytes, or a string's UTF-8, with no quotes or newline",
    )
    add_json(p)

    p = add_command(
        sub,
        "delete",
        cmd_delete,
        help="delete a document through the running node",
        description="Delete document KEY (a tombstone version: it can be put again).",
    )
    p.add_argument("key", metavar="KEY", help="the document's key")
    add_json(p)

    p = add_command(
        sub,
        "list",
        cmd_list,
        help="list documents from the running node",
        description="List documents in key order: key, value, and any pending or conflict flag.",
    )
    p.add_argument("--prefix", default="", help="only keys that start with this")
    p.add_argument("--after", metavar="KEY", help="only keys after this one (to page on)")
    p.add_argument(
        "--limit",
        type=bounded(1, MAX_LIST),
        default=100,
        metavar="N",
        help=f"list at most this many (1..{MAX_LIST:,}, default: %(default)s)",
    )
    p.add_argument("--deleted", action="store_true", help="list deleted documents too")
    add_json(p)


def short(value: Any, width: int = 60) -> str:
    """`value` as JSON, cut to `width` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def _flags(doc: dict[str, Any]) -> str:
    flags = []
    if not doc.get("exists", True):
        flags.append("deleted")
    if doc.get("pending"):
        flags.append("pending")
    if doc.get("in_conflict"):
        flags.append(f"conflict: {len(doc.get('conflicts', []))} other version(s)")
    return f"  [{', '.join(flags)}]" if flags else ""


# -- the value to put ------------------------------------------------------------


def parse_value(text: str | bytes, source: str = "") -> Any:
    """The JSON value of the text a command line gives (`source` names stdin or a file).

    Raises:
        UsageError: the text is not JSON (with a hint: strings need quotes), or a
            number in it is not finite.
    """
    try:
        return decode_json(text)
    except NonFiniteNumberError as exc:
        raise UsageError(f"{source or 'VALUE'}: {exc}") from None
    except UsageError as exc:
        if source:
            raise UsageError(f"{source} does not hold JSON text ({exc})") from None
        assert isinstance(text, str)
        raise UsageError(
            f"VALUE is JSON text, and {text[:40]!r} is not ({exc}); a string needs JSON"
            """ quotes inside shell quotes, e.g. '"hello"'"""
        ) from None


def read_source(spec: str, limit: int) -> tuple[bytes, str]:
    """At most `limit` + 1 bytes of standard input (`spec` "-") or of the file "@FILE",
    and the source's name for messages.

    Raises:
        UsageError: `spec` is neither, or the file cannot be read.
    """
    if spec == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise UsageError("VALUE is -, and there is no standard input to read it from")
        return stream.read(limit + 1), "standard input"
    if not spec.startswith("@") or spec == "@":
        raise UsageError("VALUE is - (standard input) or @FILE here")
    path = spec[1:]
    try:
        with open(path, "rb") as file:
            return file.read(limit + 1), path
    except OSError as exc:
        raise UsageError(f"cannot read the value from {path}: {exc.strerror or exc}") from None


def value_to_put(args: argparse.Namespace) -> Any:
    """The value `put` sends, in its JSON form, checked as the node will check it.

    Raises:
        UsageError: no value can be read, it is not JSON, or it breaks a limit.
    """
    spec: str = args.value
    if args.raw:
        if spec != "-" and not spec.startswith("@"):
            raise UsageError(
                "--raw takes the bytes from standard input (VALUE -) or a file (@FILE);"
                """ text on the command line is a JSON string: '"text"'"""
            )
        data, source = read_source(spec, MAX_VALUE_BYTES)
        if len(data) > MAX_VALUE_BYTES:
            raise UsageError(f"{source}: {value_too_large(MAX_VALUE_BYTES, over=True)}")
        try:
            value_size(data)
        except UsageError as exc:
            raise UsageError(f"{source}: {exc}") from None
        return {BYTES_KEY: base64.b64encode(data).decode("ascii")}
    if spec == "-" or spec.startswith("@"):
        text, source = read_source(spec, MAX_INPUT)
        if len(text) > MAX_INPUT:
            raise UsageError(
                f"{source}: over {MAX_INPUT:,} bytes of JSON text, which no value within"
                f" the limit needs (a document value is at most {MAX_VALUE_BYTES:,} bytes"
                " encoded, in CBOR as stored)"
            )
        form = parse_value(text, source)
    else:
        source, form = "VALUE", parse_value(spec)
    try:
        value_size(json_value(form))
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return form


# -- the commands ---------------------------------------------------------------


def cmd_put(args: argparse.Namespace) -> int:
    key_to_object(args.key)  # the node's own check, before a value is read
    value = value_to_put(args)
    write = call(args, "put", key=args.key, value=value)
    if args.json:
        emit_json(write)
    else:
        print(f"put {write['key']}: {write['status']} (oplog {write['oplog_id']})")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    if args.raw and args.json:
        raise UsageError("get takes --raw or --json, not both")
    doc = call(args, "get", key=args.key)
    if doc is None:
        tell(f"pttsync: not found: {args.key}", level=logging.ERROR)
        return 1
    if args.json:
        emit_json(doc)
        return 0 if doc["exists"] else 1
    if not doc["exists"]:
        tell(
            f"pttsync: not found: {args.key} (deleted by {doc['version']['creator']}"
            f" at {doc['version']['create_time']})",
            level=logging.ERROR,
        )
        return 1
    if args.raw:
        write_raw(doc["value"])
    else:
        print(json.dumps(doc["value"], ensure_ascii=False))
    notes = _flags(doc).strip()
    if notes:
        tell(f"pttsync: {args.key}: {notes.strip('[]')} (see --json)")
    return 0


def write_raw(form: Any) -> None:
    """A value's own bytes on stdout: a byte string's, a string's UTF-8, else JSON text."""
    if isinstance(form, str):
        data = form.encode("utf-8", "surrogateescape")
    elif isinstance(form, dict) and len(form) == 1 and BYTES_KEY in form:
        data = json_value(form)
    else:
        data = (json.dumps(form, ensure_ascii=False) + "\n").encode()
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_delete(args: argparse.Namespace) -> int:
    write = call(args, "delete", key=args.key)
    if args.json:
        emit_json(write)
    else:
        print(f"deleted {write['key']}: {write['status']} (oplog {write['oplog_id']})")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    docs: list[dict[str, Any]] = []
    # The node answers with as many documents as fit in one line; the pager asks on.
    pager = ListPager(args.prefix, after=args.after, limit=args.limit, deleted=args.deleted)
    while pager.request is not None:
        docs += pager.take(call(args, **pager.request))
    if args.json:
        emit_json(docs)
        return 0
    if not docs:
        print("no documents" + (f" under {args.prefix!r}" if args.prefix else ""))
    for doc in docs:
        print(f"{doc['key']}  {short(doc['value'])}{_flags(doc)}")
    return 0
