"""Logs and progress of the CLI: --log-format json, -v/-q anywhere, live lines only on a terminal.

The commands run in process (main() in a worker thread with a deadline, so a
hang fails the test instead of stalling the run), but for `demo`, which runs
as a process with its output piped, to see what a file or a pipe receives.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pttsync.cli import build_parser, client, demo, documents, init, main, run, simulate, sync
from pttsync.cli import inspect as inspect_cmd
from pttsync.cli.logformat import JsonFormatter, StderrHandler, iso_utc
from pttsync.cli.options import CommandParser, merge_common
from pttsync.cli.output import LiveLine, configure_output, tell

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DEADLINE = 30.0  # seconds for one in-process command (each takes well under one)

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """main() sets the root logger's level and puts its handler on it: undo both."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        yield
    finally:
        for h in root.handlers:
            if h not in handlers:
                root.removeHandler(h)
        root.setLevel(level)
        configure_output(quiet=False, json_stderr=False)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Run:
    """`cli(*argv) -> (exit code, stdout, stderr)`: main() in process, with a deadline."""

    def run(*argv: str) -> tuple[int, str, str]:
        result: list[int] = []
        failure: list[BaseException] = []

        def target() -> None:
            try:
                result.append(main(list(argv)))
            except BaseException as exc:  # handed to the test below
                failure.append(exc)

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(DEADLINE)
        assert not worker.is_alive(), f"pttsync {' '.join(argv)} took over {DEADLINE} s"
        if failure:
            raise failure[0]
        out, err = capsys.readouterr()
        return result[0], out, err

    return run


def json_lines(text: str) -> list[dict[str, object]]:
    """Every line of `text` as a JSON object (the test fails on any other line)."""
    records = []
    for line in text.splitlines():
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert TS.match(str(record["ts"])), record
        assert {"ts", "level", "logger", "message"} <= record.keys(), record
        records.append(record)
    return records


@pytest.fixture
def two_peers(tmp_path: Path, cli: Run) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("init", "--data", str(a))[0] == 0
    assert cli("init", "--data", str(b), "--topic-of", str(a))[0] == 0
    return a, b


# -- --log-format json ----------------------------------------------------------------


def test_json_formatter_fields_extra_and_exception() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        record = logging.getLogger("pttsync.test").makeRecord(
            "pttsync.test",
            logging.WARNING,
            __file__,
            1,
            "peer %s said %d",
            ("p1", 3),
            sys.exc_info(),
            extra={"peer": "p1", "count": 3, "raw": b"\x01\xff", "where": Path("/x"), "ok": True},
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert TS.match(entry["ts"])
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "pttsync.test"
    assert entry["message"] == "peer p1 said 3"
    assert "ValueError: bad value" in entry["exc_info"]
    assert entry["peer"] == "p1"
    assert entry["count"] == 3
    assert entry["ok"] is True
    assert entry["raw"] == "01ff"  # bytes as hex
    assert entry["where"] == "/x"  # anything else as its text
    assert "args" not in entry
    assert "msg" not in entry


def test_iso_utc_has_milliseconds() -> None:
    assert iso_utc(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(1735732800.9999) == "2025-01-01T12:00:00.999Z"


def test_an_error_is_one_json_line(cli: Run, tmp_path: Path) -> None:
    code, out, err = cli("--log-format", "json", "invite", "--data", str(tmp_path / "none"))
    assert code == 2
    assert out == ""
    [record] = json_lines(err)
    assert record["level"] == "ERROR"
    assert record["logger"] == "pttsync"
    assert "no pttsync data directory" in str(record["message"])
    assert record["exit_code"] == 2


def test_verbose_logs_are_json_lines(cli: Run, two_peers: tuple[Path, Path]) -> None:
    a, b = two_peers
    code, out, err = cli("sync", "--local", str(a), str(b), "-v", "--log-format", "json")
    assert code == 0
    assert out.startswith("converged")  # the command's own output stays on stdout, as text
    records = json_lines(err)
    assert any(r["logger"] == "pttsync.localsync" and r["level"] == "INFO" for r in records)


def test_a_bug_is_one_json_line_with_its_traceback(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(init, "cmd_invite", broken)
    code, _, err = cli("invite", "--data", str(tmp_path), "--log-format=json")
    assert code == 1
    [record] = json_lines(err)
    assert record["level"] == "CRITICAL"
    assert "RuntimeError: boom" in str(record["exc_info"])


def test_text_format_and_a_bug_still_raises(
    cli: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = cli("invite", "--data", str(tmp_path / "none"))
    assert code == 2
    assert err.startswith("pttsync: error: no pttsync data directory")

    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(init, "cmd_invite", broken)
    with pytest.raises(RuntimeError, match="boom"):
        cli("invite", "--data", str(tmp_path))


def test_main_leaves_logging_as_it_found_it(
    cli: Run, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = logging.getLogger()
    level = root.level
    for argv in (["-v"], ["-q"], ["--log-format", "json", "-vv"]):
        cli(*argv, "invite", "--data", str(tmp_path / "none"))
        assert root.level == level
        assert not [h for h in root.handlers if isinstance(h, StderrHandler)]
    assert caplog.handler in root.handlers  # pytest's handler stays, and still works
    logging.getLogger("pttsync.test").error("seen by caplog")
    assert "seen by caplog" in caplog.text


# -- -v, -q and --log-format before or after the command --------------------------------

Seen = list[dict[str, object]]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Seen:
    """The commands below do nothing but note the logging set-up they run under."""
    notes: Seen = []

    def note(args: argparse.Namespace) -> int:
        mine = [h for h in logging.getLogger().handlers if isinstance(h, StderrHandler)]
        assert len(mine) == 1
        notes.append(
            {
                "level": logging.getLogger().level,
                "json": isinstance(mine[0].formatter, JsonFormatter),
                "quiet": args.quiet,
            }
        )
        return 0

    for module, name in [
        (init, "cmd_init"),
        (init, "cmd_invite"),
        (inspect_cmd, "cmd_merkle"),
        (sync, "cmd_sync"),
        (run, "cmd_run"),
        (documents, "cmd_put"),
        (client, "cmd_member"),
        (demo, "cmd_demo"),
        (simulate, "cmd_simulate"),
    ]:
        monkeypatch.setattr(module, name, note)
    return notes


@pytest.mark.parametrize(
    ("argv", "level"),
    [
        (["init", "--data", "D"], logging.WARNING),
        (["-v", "run", "--data", "D"], logging.INFO),
        (["run", "--data", "D", "-v"], logging.INFO),
        (["-v", "run", "--data", "D", "-v"], logging.DEBUG),  # the counts add up
        (["run", "-vv", "--data", "D"], logging.DEBUG),
        (["-q", "put", "--data", "D", "k", "1"], logging.ERROR),
        (["put", "--data", "D", "k", "1", "-q"], logging.ERROR),
        (["put", "--data", "D", "--quiet", "k", "1", "--verbose"], logging.ERROR),  # -q wins
        (["inspect", "merkle", "--data", "D", "-v"], logging.INFO),
        (["-v", "inspect", "-v", "merkle", "--data", "D", "-v"], logging.DEBUG),
        (["member", "add", "--data", "D", "PEER", "-v"], logging.INFO),
        (["member", "-q", "add", "--data", "D", "PEER"], logging.ERROR),
        (["sync", "--local", "A", "B", "-v"], logging.INFO),
        (["invite", "--data", "D", "-q"], logging.ERROR),
        (["demo", "-v"], logging.INFO),
        (["simulate", "--peers", "3", "-q"], logging.ERROR),
    ],
)
def test_verbose_and_quiet_before_or_after_the_command(
    cli: Run, seen: Seen, argv: list[str], level: int
) -> None:
    assert cli(*argv)[0] == 0
    assert seen == [{"level": level, "json": False, "quiet": level == logging.ERROR}]


@pytest.mark.parametrize(
    ("argv", "json_logs"),
    [
        (["--log-format", "json", "invite", "--data", "D"], True),
        (["invite", "--data", "D", "--log-format", "json"], True),
        (["inspect", "merkle", "--data", "D", "--log-format=json"], True),
        (["--log-format", "json", "invite", "--data", "D", "--log-format", "text"], False),
        (["--log-format", "text", "demo", "--log-format", "json"], True),  # the last one wins
    ],
)
def test_log_format_before_or_after_the_command(
    cli: Run, seen: Seen, argv: list[str], json_logs: bool
) -> None:
    assert cli(*argv)[0] == 0
    assert seen == [{"level": logging.WARNING, "json": json_logs, "quiet": False}]


def test_the_verbose_counts_are_merged_into_one() -> None:
    args = build_parser().parse_args(["--log-format", "text", "demo", "--log-format", "json", "-v"])
    merge_common(args)
    assert args.log_format == "json"
    assert args.verbose == 1
    assert not any(key.startswith("verbose_") for key in vars(args))


def _leaves(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaves(child, f"{path} {name}".strip())


def test_every_command_takes_the_common_options() -> None:
    leaves = dict(_leaves(build_parser()))
    assert {"init", "demo", "put", "inspect merkle", "member add", "simulate"} <= leaves.keys()
    for name, parser in leaves.items():
        assert isinstance(parser, CommandParser), name
        for flag in ("-v", "-q", "--log-format"):
            assert flag in parser._option_string_actions, (name, flag)
        if parser.usage is None:  # (launch writes its own usage line)
            usage = " ".join(parser.format_usage().split())
            assert "[-v] [-q] [--log-format {text,json}]" in usage, name


def test_a_bad_log_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["init", "--data", "x", "--log-format", "xml"])
    assert exit_.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


# -- progress: live on a terminal, plain lines elsewhere ---------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_line_off_a_terminal_prints_plain_lines_at_a_pace() -> None:
    stream = io.StringIO()
    with LiveLine(stream, interval=3600) as line:
        line.show("joining 1", state="joining")
        line.show("joining 2", state="joining")  # same state, within the interval: not shown
        line.show("write 1", state="writing")
        line.show("write 2", state="writing")
        line.show("write 3", state="writing", final=True)
    assert stream.getvalue() == "joining 1\nwrite 1\nwrite 3\n"


def test_live_line_on_a_terminal_is_redrawn_in_place() -> None:
    stream = _Terminal()
    with LiveLine(stream, redraw=0) as line:
        line.show("a longer line", state="one")
        line.show("short", state="two")
    assert stream.getvalue() == "\ra longer line\rshort        \n"


def test_quiet_hides_progress_and_json_logs_take_it(caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    configure_output(quiet=True, json_stderr=False)
    LiveLine(stream).show("hidden", final=True)
    assert stream.getvalue() == ""
    configure_output(quiet=False, json_stderr=True)
    caplog.set_level(logging.INFO)
    LiveLine(sys.stderr).show("progress as a record", final=True)
    tell("pttsync: a note", level=logging.WARNING)
    messages = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert ("pttsync.cli", "INFO", "progress as a record") in messages
    assert ("pttsync.cli", "WARNING", "a note") in messages


def test_demo_into_a_pipe_has_no_carriage_returns_and_explains_its_marks(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pttsync", "demo", "--peers", "2", "--writes", "2", "--seed", "1"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("marks: i:= peer i holds the common tree")
    assert any(line.startswith("converged ") and "agree 2/2 [0:= 1:=]" in line for line in lines)
    assert lines[-1].startswith("converged: 2 peers, 2 writes")
    assert len(lines) <= 10  # a line per phase, not a flood


def test_watch_says_watching_only_with_a_node_to_watch(
    cli: Run, two_peers: tuple[Path, Path]
) -> None:
    a, _ = two_peers
    code, out, err = cli("watch", "--data", str(a))
    assert code == 2
    assert out == ""
    assert err.startswith("pttsync: error: no node is running on")
    assert "watching (Ctrl-C" not in err


def test_sigterm_under_trio_with_sigint_ignored_ends_cleanly(tmp_path: Path) -> None:
    """A script's `pttsync demo &` has SIGINT ignored, so SIGTERM cannot travel as SIGINT:
    it is taken inside trio (cli/triorun.py). Exit 143, one line, no trio traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pttsync", "demo", "--peers", "2", "--writes", "100000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        process_group=0,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        writes = 0
        while writes < 3:  # writing: mostly waiting in trio's scheduler, where a raise breaks it
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            assert ready, "the demo wrote nothing within 60 s"
            line = proc.stdout.readline()
            assert line, "the demo ended early"
            writes += line.startswith(b"write ")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, err
    assert b"Traceback" not in err and err.endswith(b"pttsync: terminated\n"), err


def test_the_library_prints_no_log_records_unless_the_program_asks() -> None:
    """Was: `simulate(...)` from a program with no logging configured printed each
    simulated peer's "cannot join" warnings (Python's last-resort handler).  The
    library's loggers end in a NullHandler; a program's own config still gets them."""
    code = (
        "import logging, sys, pttsync\n"
        "log = logging.getLogger('pttsync.net.addressbook')\n"
        "log.warning('not shown')\n"
        "if sys.argv[1] == 'configured':\n"
        "    logging.basicConfig(format='%(name)s: %(message)s')\n"
        "    log.warning('shown')\n"
    )
    for mode, expect in (("bare", ""), ("configured", "pttsync.net.addressbook: shown\n")):
        done = subprocess.run(
            [sys.executable, "-c", code, mode],
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and done.stderr == expect, done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-format", "json", "put"],  # before the command
        ["put", "--log-format=json"],  # after it
        ["--log-format", "json", "nosuch"],  # no such command
    ],
)
def test_a_bad_command_line_is_one_json_line_too(argv: list[str]) -> None:
    """Was: argparse's usage and error came as text even with --log-format json."""
    done = subprocess.run(
        [sys.executable, "-m", "pttsync", *argv],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    [record] = json_lines(done.stderr)
    assert record["level"] == "ERROR" and record["exit_code"] == 2
    assert str(record["message"]).startswith(("pttsync put: ", "pttsync: argument COMMAND"))
    assert str(record["usage"]).startswith("usage: pttsync")


def test_a_bad_command_line_is_text_without_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pttsync", "put", "--data"],
        check=False, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("usage: pttsync put ")
    assert done.stderr.endswith("pttsync put: error: argument --data: expected one argument\n")
