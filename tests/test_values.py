"""Values and limits, as a new user meets them (issue 19): through the CLI against a
running node, and over its control socket.

Each finding is a regression test: a non-finite number is a usage error, not a
traceback; a value comes from stdin (`-`) or a file (`@FILE`), and a huge one is
refused unread; `put --raw` and `get --raw` carry bytes; -1e5 needs no `--`; a
key's limit is one, in bytes of UTF-8, with one message; printed IDs paste into
`inspect oplog`.  Then the limits' arithmetic, and a property: any JSON value
within the limit comes back from the document store unchanged.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pttsync
from pttsync.cli import main
from pttsync.core import codec
from pttsync.core.docop import (
    MAX_KEY_BYTES,
    MAX_RESOLVES,
    MAX_VALUE_BYTES,
    MAX_VALUE_DEPTH,
    put_payload,
    value_size,
)
from pttsync.core.oplog import MAX_DATA_SIZE
from pttsync.errors import NodeNotRunningError, UsageError
from pttsync.net.controlclient import control_call
from pttsync.net.controlwire import (
    MAX_LINE,
    MAX_VALUE_JSON,
    NonFiniteNumberError,
    decode_json,
    encode_line,
    json_value,
    value_json,
)

from .helpers import make_identity
from .prochelpers import PTTSYNC, append_fd, log_of, new_data_dir, short_root

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    Run = Callable[..., tuple[int, str, str]]

KEY_MESSAGE = "a document key is at most 128 bytes of UTF-8; this one is {:,}"
VALUE_MESSAGE = "a document value is at most 61,440 bytes encoded (CBOR, as stored); this one is"
OPLOG_LINE = re.compile(r"^(put|deleted) (\S+): (\w+) \(oplog ([0-9a-f]{64})\)$")


# -- one node for the module --------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The directory of a `pttsync run` process, a fresh founder's (so its writes are valid)."""
    with short_root(tmp_path_factory.mktemp("values")) as root:
        d = root / "n"
        new_data_dir(d)
        fd = append_fd(d / "node.log")
        try:
            cmd = [*PTTSYNC, "-v", "run", "--data", str(d), "--listen", "127.0.0.1:0"]
            proc = subprocess.Popen(cmd, stdout=fd, stderr=subprocess.STDOUT)
        finally:
            os.close(fd)
        try:
            deadline = time.monotonic() + 20
            while True:
                assert proc.poll() is None, log_of(d)
                try:
                    trio.run(control_call, d, {"op": "ping"})
                    break
                except NodeNotRunningError:
                    assert time.monotonic() < deadline, log_of(d)
                    time.sleep(0.05)
            yield str(d)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        assert "Traceback" not in log_of(d), log_of(d)  # no bad input was a bug of ours


def _oplog_id(out: str) -> str:
    match = OPLOG_LINE.match(out.strip())
    assert match, out
    return match.group(4)


def _valid(d: str) -> int:
    status = trio.run(control_call, Path(d), {"op": "status"})
    return int(status["topics"][0]["valid"])


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))


def _ask(d: str, *lines: bytes) -> list[dict[str, Any]]:
    """Raw request lines over the control socket, one answer each."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(Path(d) / "control.sock"))
        f = s.makefile("rwb")
        answers = []
        for line in lines:
            f.write(line + b"\n")
            f.flush()
            answers.append(json.loads(f.readline()))
        return answers


# -- 1. numbers that are not finite ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1e999", "1e999 is out of a 64-bit float's range"),
        ('{"a": [-1E400]}', "-1E400 is out of a 64-bit float's range"),
        ("NaN", "NaN is not JSON"),
        ("[1, Infinity]", "Infinity is not JSON"),
        ("-Infinity", "-Infinity is not JSON"),  # a value, not an unknown option
    ],
)
def test_a_number_that_is_not_finite_is_a_usage_error(
    run: Run, data: str, text: str, why: str
) -> None:
    code, out, err = run("put", "--data", data, "n", text)
    assert (code, out) == (2, "")
    assert err == f"pttsync: error: VALUE: JSON numbers must be finite: {why}\n"


def test_a_client_sending_nan_over_the_socket_gets_a_usage_error(data: str) -> None:
    answers = _ask(
        data,
        b'{"op": "put", "key": "n", "value": NaN}',
        b'{"op": "put", "key": "n", "value": {"a": [1e999]}}',
        b'{"op": "put", "key": "n", "value": -Infinity}',
        b'{"op": "ping"}',  # and the connection still serves
    )
    for answer in answers[:3]:
        assert answer["ok"] is False and answer["kind"] == "usage"
        assert answer["error"].startswith("JSON numbers must be finite: ")
    assert answers[3]["ok"] is True


def test_decode_json_says_which_number() -> None:
    with pytest.raises(NonFiniteNumberError, match="1e999 is out of"):
        decode_json("[1e999]")
    assert decode_json("[1e308, -0.0, 5e-324]") == [1e308, -0.0, 5e-324]


# -- 2. values from stdin and files ------------------------------------------------


def test_put_reads_the_value_from_stdin(
    run: Run, data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, b'{"from": "stdin", "n": [1, 2]}\n')
    code, out, _ = run("put", "--data", data, "from-stdin", "-")
    assert code == 0 and _oplog_id(out)
    code, out, _ = run("get", "--data", data, "from-stdin")
    assert code == 0 and json.loads(out) == {"from": "stdin", "n": [1, 2]}


def test_put_reads_the_value_from_a_file(run: Run, data: str, tmp_path: Path) -> None:
    path = tmp_path / "v.json"
    path.write_text('  "from a file"  \n')
    assert run("put", "--data", data, "from-file", f"@{path}")[0] == 0
    assert run("get", "--data", data, "from-file")[:2] == (0, '"from a file"\n')
    # The strings "-" and "@file" are JSON strings, in quotes, like any string.
    assert run("put", "--data", data, "literal", '"@file"')[0] == 0
    assert run("get", "--data", data, "literal")[1] == '"@file"\n'
    assert run("put", "--data", data, "-", '"-"')[0] == 0
    assert run("get", "--data", data, "-")[1] == '"-"\n'


def test_a_missing_or_unreadable_file_is_a_clear_error(run: Run, data: str, tmp_path: Path) -> None:
    for spec, why in [
        (f"@{tmp_path / 'nope.json'}", "No such file or directory"),
        (f"@{tmp_path}", "Is a directory"),
    ]:
        code, out, err = run("put", "--data", data, "k", spec)
        assert code == 2 and out == ""
        assert err == f"pttsync: error: cannot read the value from {spec[1:]}: {why}\n"
    (tmp_path / "bad.json").write_text("hello")
    code, _, err = run("put", "--data", data, "k", f"@{tmp_path / 'bad.json'}")
    assert code == 2 and f"{tmp_path / 'bad.json'} does not hold JSON text" in err


def test_a_value_over_the_limit_in_a_file_is_refused_and_nothing_is_written(
    run: Run, data: str, tmp_path: Path
) -> None:
    before = _valid(data)
    path = tmp_path / "big.json"
    path.write_text(json.dumps("x" * 100_000))
    code, out, err = run("put", "--data", data, "big", f"@{path}")
    assert code == 2 and out == ""
    assert err == f"pttsync: error: {path}: {VALUE_MESSAGE} 100,005\n"
    assert run("get", "--data", data, "big")[0] == 1
    assert _valid(data) == before


def test_a_value_at_the_limit_goes_through_and_one_byte_more_does_not(
    run: Run, data: str, tmp_path: Path
) -> None:
    at_limit = "x" * (MAX_VALUE_BYTES - 3)  # text of n bytes takes n + 3 from 256 on
    assert value_size(at_limit) == MAX_VALUE_BYTES
    path = tmp_path / "limit.json"
    path.write_text(json.dumps(at_limit))
    assert run("put", "--data", data, "at-limit", f"@{path}")[0] == 0
    assert run("get", "--data", data, "at-limit")[1] == json.dumps(at_limit) + "\n"
    path.write_text(json.dumps(at_limit + "x"))
    code, _, err = run("put", "--data", data, "at-limit", f"@{path}")
    assert code == 2 and err.endswith(f"{VALUE_MESSAGE} 61,441\n")


def test_ten_megabytes_on_stdin_are_refused_unread(data: str) -> None:
    """The finding: a 10 MB argument was "Argument list too long"; on stdin it is
    refused after 2 MiB + 1 bytes, with no traceback, and nothing is written."""
    before = _valid(data)
    huge = b'"' + b"x" * 10_000_000 + b'"'
    done = subprocess.run(
        [*PTTSYNC, "put", "--data", data, "huge", "-"],
        input=huge,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == b""
    assert done.stderr.decode() == (
        "pttsync: error: standard input: over 2,097,152 bytes of JSON text, which no value"
        " within the limit needs (a document value is at most 61,440 bytes encoded, in CBOR"
        " as stored)\n"
    )
    assert _valid(data) == before


# -- 3. bytes: put --raw, get --raw ---------------------------------------------------


def test_put_raw_and_get_raw_carry_bytes(
    data: str,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = bytes(range(256)) * 100
    (tmp_path / "blob").write_bytes(blob)
    assert main(["put", "--data", data, "blob", f"@{tmp_path / 'blob'}", "--raw"]) == 0
    capsysbinary.readouterr()
    assert main(["get", "--data", data, "blob", "--raw"]) == 0
    assert capsysbinary.readouterr().out == blob
    # Without --raw a byte string is {"$bytes": base64}, and that JSON puts it back.
    assert main(["get", "--data", data, "blob"]) == 0
    shown = capsysbinary.readouterr().out.decode()
    assert json.loads(shown) == {"$bytes": base64.b64encode(blob).decode()}
    assert main(["put", "--data", data, "blob2", shown]) == 0
    capsysbinary.readouterr()
    assert main(["get", "--data", data, "blob2", "--raw"]) == 0
    assert capsysbinary.readouterr().out == blob

    _stdin(monkeypatch, b"\x00\xffbinary\n")
    assert main(["put", "--data", data, "stdin-blob", "--raw", "-"]) == 0
    capsysbinary.readouterr()
    assert main(["get", "--data", data, "stdin-blob", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b"\x00\xffbinary\n"


def test_get_raw_of_a_string_writes_its_utf8_and_of_other_values_their_json(
    data: str, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["put", "--data", data, "text", '"héllo\\nworld"']) == 0
    assert main(["put", "--data", data, "obj", '{"a": 1}']) == 0
    capsysbinary.readouterr()
    assert main(["get", "--data", data, "text", "--raw"]) == 0
    assert capsysbinary.readouterr().out == "héllo\nworld".encode()
    assert main(["get", "--data", data, "obj", "--raw"]) == 0
    assert capsysbinary.readouterr().out == b'{"a": 1}\n'


def test_raw_limits_and_mistakes(
    run: Run, data: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _valid(data)
    _stdin(monkeypatch, b"\x00" * (MAX_VALUE_BYTES - 2))  # 3 bytes of head: one over
    code, _, err = run("put", "--data", data, "r", "--raw", "-")
    assert code == 2 and err == f"pttsync: error: standard input: {VALUE_MESSAGE} 61,441\n"
    (tmp_path / "huge").write_bytes(b"\x00" * 1_000_000)
    code, _, err = run("put", "--data", data, "r", "--raw", f"@{tmp_path / 'huge'}")
    assert code == 2 and err.endswith(f"{VALUE_MESSAGE} over 61,440\n")
    code, _, err = run("put", "--data", data, "r", "--raw", "text")
    assert code == 2 and "--raw takes the bytes from standard input" in err
    code, _, err = run("get", "--data", data, "r", "--raw", "--json")
    assert code == 2 and "--raw or --json, not both" in err
    code, _, err = run("put", "--data", data, "r", '{"$bytes": "not base64"}')
    assert code == 2 and '{"$bytes": ...} is a byte string' in err
    assert _valid(data) == before


# -- 4. negative numbers need no "--" ---------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["put", "--data", "{d}", "neg", "-1e5"],
        ["put", "neg", "-1e5", "--data", "{d}", "--json"],
        ["put", "--json", "neg", "--data", "{d}", "-1e5"],
        ["put", "--data", "{d}", "neg", "--", "-1e5"],  # -- still works
    ],
)
def test_a_negative_number_needs_no_double_dash(run: Run, data: str, argv: list[str]) -> None:
    code, out, err = run(*(a.replace("{d}", data) for a in argv))
    assert code == 0, err
    if "--json" in argv:
        assert re.fullmatch(r"[0-9a-f]{64}", json.loads(out)["oplog_id"])
    assert run("get", "--data", data, "neg")[1] == "-100000.0\n"
    for text, shown in [("-1", "-1"), ("-0.5", "-0.5"), ("-.5e1", None)]:
        code, _, err = run("put", "--data", data, "neg2", text)
        if shown is None:  # not JSON: refused as JSON, not as an unknown option
            assert code == 2 and "VALUE is JSON text" in err
        else:
            assert code == 0 and run("get", "--data", data, "neg2")[1] == shown + "\n"


# -- 5. the key's limit: one, in bytes of UTF-8, with one message ------------------------


def test_long_keys_get_one_message_whatever_their_length(run: Run, data: str) -> None:
    for length in (MAX_KEY_BYTES + 1, 200, 10_000):
        for argv in (
            ["put", "--data", data, "k" * length, "1"],
            ["get", "--data", data, "k" * length],
        ):
            code, out, err = run(*argv)
            assert (code, out) == (2, "")
            assert err == f"pttsync: error: {KEY_MESSAGE.format(length)}\n"
    # Over the socket too: the node's message is the same, for any length.
    for length in (200, 10_000, 500_000):
        line = b'{"op": "get", "key": "%s"}' % (b"k" * length)
        [answer] = _ask(data, line)
        assert answer == {"ok": False, "error": KEY_MESSAGE.format(length), "kind": "usage"}
    # The limit counts bytes: 64 two-byte characters fit, 65 do not.
    assert run("put", "--data", data, "é" * 64, "1")[0] == 0
    assert run("put", "--data", data, "é" * 65, "1")[2].endswith(KEY_MESSAGE.format(130) + "\n")
    code, _, err = run("list", "--data", data, "--prefix", "p" * 300)
    assert code == 2 and "'prefix' is at most 128 bytes of UTF-8; this one is 300" in err


def test_put_help_states_every_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["put", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a key is at most 128 bytes of UTF-8" in text
    assert "a value at most 61,440 bytes (60 KiB) encoded" in text
    assert "nested at most 31 deep" in text
    assert "-1e5" in text and "@FILE" in text and "--raw" in text


# -- 6. printed IDs paste into other commands --------------------------------------------


def test_printed_ids_are_whole_and_paste_into_inspect_oplog(run: Run, data: str) -> None:
    code, out, _ = run("put", "--data", data, "pasted", '"hello"')
    put_id = _oplog_id(out)
    code, out, _ = run("delete", "--data", data, "pasted")
    assert code == 0
    delete_id = _oplog_id(out)
    for oplog_id in (put_id, delete_id):
        code, out, err = run("inspect", "oplog", "--data", data, oplog_id)
        assert code == 0, err
        assert out.splitlines()[0].split() == ["oplog_id", oplog_id]
    code, _, err = run("get", "--data", data, "pasted")
    peer_id = trio.run(control_call, Path(data), {"op": "ping"})["peer_id"]
    assert code == 1 and f"(deleted by {peer_id} at " in err
    code, out, _ = run("status", "--data", data)
    topic_line = next(line for line in out.splitlines() if line.startswith("topic "))
    assert re.match(r"topic [0-9a-f]{64}  main: .* digest [0-9a-f]{8}…[0-9a-f]{4}$", topic_line)


# -- 7. the limits' arithmetic --------------------------------------------------------------


def test_a_value_at_the_limit_can_also_close_a_conflict() -> None:
    """The oplog's 64 KiB hold the value and the most IDs a resolving write names."""
    ids = [bytes([i]) * 32 for i in range(MAX_RESOLVES)]
    for value in ("x" * (MAX_VALUE_BYTES - 3), b"x" * (MAX_VALUE_BYTES - 3), [0] * 61_437):
        assert value_size(value) == MAX_VALUE_BYTES
        assert len(codec.dumps(put_payload(value, ids))) <= MAX_DATA_SIZE
    with pytest.raises(UsageError, match="61,440 bytes encoded"):
        put_payload("x" * (MAX_VALUE_BYTES - 2))


def test_the_longest_json_forms_fit_the_control_line() -> None:
    """A value at the limit, at its worst as JSON, fits MAX_VALUE_JSON; a put of it fits
    MAX_LINE, and so does a get's answer holding it twice (its value and its version's),
    or four times (two more versions) if it holds no byte strings."""
    n = MAX_VALUE_BYTES - 3  # the list's or the text's head takes 3 bytes
    worst = [
        ([b""] * n, 2),  # {"$bytes":""}, 14 characters a byte
        ([-1.7881393432617188e-07] * (n // 3), 4),  # 3 bytes, 23 characters and a comma
        ([False] * n, 4),
        ("\x01" * n, 4),
        ("\U0001f600" * (n // 4), 4),
    ]
    for value, copies in worst:
        assert value_size(value) <= MAX_VALUE_BYTES
        form = value_json(value)
        assert len(encode_line(form)) - 1 <= MAX_VALUE_JSON
        put = encode_line({"op": "put", "key": "é" * 64, "value": form})
        assert len(put) <= MAX_LINE
        versions = [{"oplog_id": "ab" * 32, "value": form}] * (copies - 1)
        answer = encode_line({"ok": True, "result": {"value": form, "versions": versions}})
        assert len(answer) <= MAX_LINE
        assert json_value(decode_json(encode_line(form))) == value


def test_nesting_is_limited_alike_in_json_and_in_the_store() -> None:
    def nest(n: int) -> Any:
        v: Any = 1
        for _ in range(n):
            v = [v]
        return v

    assert value_size(nest(MAX_VALUE_DEPTH)) > 0
    assert json_value(nest(MAX_VALUE_DEPTH)) == nest(MAX_VALUE_DEPTH)
    for check in (value_size, json_value):
        with pytest.raises(UsageError, match=f"at most {MAX_VALUE_DEPTH} deep"):
            check(nest(MAX_VALUE_DEPTH + 1))


# -- 8. the property: JSON values round-trip ---------------------------------------------

_T0 = pttsync.parse_iso("2026-03-01T00:00Z")
_ME = make_identity("values-founder")
_TOPIC = pttsync.new_topic(_ME, name="values", create_time=_T0, nonce=b"v" * 16)

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.binary(max_size=40).map(lambda b: {"$bytes": base64.b64encode(b).decode()})
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.dictionaries(st.text(max_size=8).filter(lambda k: k != "$bytes"), inner, max_size=6)
    ),
    max_leaves=40,
)


@pytest.fixture(scope="module")
def docs() -> Iterator[tuple[pttsync.DocumentStore, Iterator[int]]]:
    with pttsync.Store.memory() as store:
        yield pttsync.DocumentStore(pttsync.found_topic(store, _ME, _TOPIC)), itertools.count(1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_values)
def test_any_json_value_within_the_limit_round_trips(
    docs: tuple[pttsync.DocumentStore, Iterator[int]], value: Any
) -> None:
    """JSON text -> the node's value -> stored -> read -> JSON text: the same JSON."""
    store, clock = docs
    text = json.dumps(value)
    stored = json_value(decode_json(text))
    assert value_size(stored) <= MAX_VALUE_BYTES
    store.put("k", stored, now=_T0 + next(clock))
    state = store.get("k")
    assert state is not None
    back = json.dumps(value_json(state.value), sort_keys=True)
    assert back == json.dumps(json.loads(text), sort_keys=True)
