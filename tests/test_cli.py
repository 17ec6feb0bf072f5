"""The command line, end to end, through `main(argv)` and as a real process."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from pttsync.cli import build_parser
from pttsync.core.store.sqlite import SqliteStore as Store

Run = Any


@pytest.fixture
def data(tmp_path: Path, run: Run) -> Path:
    d = tmp_path / "peer"
    code, _, _ = run("init", "--data", str(d))
    assert code == 0
    return d


def test_init_prints_the_ids(tmp_path: Path, run: Run) -> None:
    code, out, _ = run("init", "--data", str(tmp_path / "a"), "--json")
    assert code == 0
    info = json.loads(out)
    assert len(info["peer_id"]) == 52 and len(info["topic_id"]) == 64
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    code, out, _ = run("init", "--data", str(tmp_path / "b"))
    assert code == 0 and "peer id:" in out and "topic id:" in out


def test_init_refuses_an_existing_directory(data: Path, run: Run) -> None:
    code, _, err = run("init", "--data", str(data))
    assert code == 2 and "already a pttsync data directory" in err


def test_the_issue_demo(data: Path, run: Run) -> None:
    """gen 1000 over 2025, then 12 month nodes whose leaves add up to 1000."""
    code, _, _ = run(
        "gen",
        "--data",
        str(data),
        "--count",
        "1000",
        "--from",
        "2025-01-01",
        "--to",
        "2026-01-01",
    )
    assert code == 0
    code, out, _ = run("inspect", "merkle", "--data", str(data), "--level", "month", "--json")
    assert code == 0
    tree = json.loads(out)
    months = tree["nodes"]
    # The twelve months of 2025, then the month of the topic's genesis oplog (made by init).
    assert len(months) == 13
    assert sum(m["leaves"] for m in months[:12]) == 1000 == tree["leaves"] - 1
    assert [m["start"][:7] for m in months[:12]] == [f"2025-{i:02d}" for i in range(1, 13)]
    assert months[12]["leaves"] == 1 and months[12]["start"] > "2026"
    assert all(len(m["hash"]) == 64 and m["children"] > 0 for m in months)

    code, out, _ = run("inspect", "merkle", "--data", str(data), "--level", "month")
    lines = out.splitlines()
    assert sum(1 for line in lines if " month " in line) == 13
    assert any(line.startswith("└── year") for line in lines)
    assert any("├── month" in line for line in lines)
    assert f"digest {tree['digest']}" in out


def test_gen_is_reproducible_with_a_seed(data: Path, run: Run) -> None:
    args = [
        "gen",
        "--data",
        str(data),
        "--count",
        "50",
        "--from",
        "2025-01-01",
        "--to",
        "2025-01-02",
        "--seed",
        "7",
        "--json",
    ]
    code, out, _ = run(*args)
    assert code == 0 and json.loads(out)["added"] == 50
    code, out, _ = run(*args)
    assert json.loads(out)["added"] == 0 and json.loads(out)["already_present"] == 50


def test_gen_shows_progress(data: Path, run: Run) -> None:
    code, _, err = run(
        "gen",
        "--data",
        str(data),
        "--count",
        "300",
        "--batch",
        "100",
        "--from",
        "2025-01-01",
        "--to",
        "2025-02-01",
        "--seed",
        "3",
    )
    assert code == 0
    assert "gen: 100/300" in err and "gen: 300/300 (100%)" in err
    assert run("inspect", "check", "--data", str(data))[0] == 0


def test_gen_in_a_worker_writes_exactly_what_inline_writes(data: Path, run: Run) -> None:
    common = [
        "--count",
        "250",
        "--batch",
        "100",
        "--from",
        "2025-01-01",
        "--to",
        "2025-03-01",
        "--seed",
        "11",
        "--json",
    ]
    run("gen", "--data", str(data), "--sign-workers", "1", *common)
    _, out, _ = run("inspect", "merkle", "--data", str(data), "--json")
    with_worker = json.loads(out)["digest"]
    with Store.open(data / "store.sqlite3") as s:
        topic = s.topics()[0].topic_id
        s.write_batch(
            topic,
            deletes=[r[0] for r in s._conn.execute("SELECT oplog_id FROM oplogs WHERE op<256")],
        )
    _, out, _ = run("gen", "--data", str(data), "--sign-workers", "0", *common)
    assert json.loads(out)["added"] == 250
    _, out, _ = run("inspect", "merkle", "--data", str(data), "--json")
    assert json.loads(out)["digest"] == with_worker


def test_tree_list(data: Path, run: Run) -> None:
    run(
        "gen",
        "--data",
        str(data),
        "--count",
        "200",
        "--from",
        "2024-01-01",
        "--to",
        "2025-06-01",
        "--seed",
        "1",
    )
    code, out, _ = run(
        "inspect", "tree-list", "--data", str(data), "--at", "2025-03-15T10:30:00Z", "--json"
    )
    assert code == 0
    nodes = json.loads(out)["nodes"]
    assert [n["level"] for n in nodes][:1] == ["year"]
    assert {n["level"] for n in nodes} <= {"year", "month", "day", "hour"}
    starts = [n["start"] for n in nodes]
    assert starts == sorted(starts)
    code, out, _ = run("inspect", "tree-list", "--data", str(data), "--at", "2025-03-15")
    assert code == 0 and out.startswith("tree list for to-sync-time 2025-03-15T00:00:00Z")


def test_inspect_oplog(data: Path, run: Run) -> None:
    run(
        "gen",
        "--data",
        str(data),
        "--count",
        "20",
        "--from",
        "2025-01-01",
        "--to",
        "2025-01-02",
        "--seed",
        "1",
    )
    with Store.open(data / "store.sqlite3") as s:
        oid = s._conn.execute("SELECT oplog_id FROM oplogs WHERE op=1 LIMIT 1").fetchone()[0].hex()
    code, out, _ = run("inspect", "oplog", "--data", str(data), oid[:12], "--json")
    assert code == 0
    info = json.loads(out)
    assert info["oplog_id"] == oid and info["status"] == "valid"
    assert info["data"]["v"]["seed"] == 1 and info["object_id"].startswith("doc-")
    code, out, _ = run("inspect", "oplog", "--data", str(data), oid)
    fields = dict(line.split(None, 1) for line in out.splitlines() if line[:1] != " ")
    assert code == 0 and fields["oplog_id"] == oid and fields["status"] == "valid"


@pytest.mark.parametrize(
    ("oplog_id", "message"),
    [("xyz", "not a hex oplog ID"), ("ab", "at least 4"), ("0" * 64, "no oplog")],
)
def test_inspect_oplog_errors(data: Path, run: Run, oplog_id: str, message: str) -> None:
    code, _, err = run("inspect", "oplog", "--data", str(data), oplog_id)
    assert code == 2 and message in err


def test_inspect_check_reports_damage(data: Path, run: Run) -> None:
    run(
        "gen",
        "--data",
        str(data),
        "--count",
        "40",
        "--from",
        "2025-01-01",
        "--to",
        "2025-01-03",
        "--seed",
        "1",
    )
    assert run("inspect", "check", "--data", str(data))[0] == 0
    with Store.open(data / "store.sqlite3") as s:
        s._conn.execute("UPDATE nodes SET hash=zeroblob(32) WHERE level=4")  # every day node
    code, out, _ = run("inspect", "check", "--data", str(data))
    assert code == 1 and "problems" in out and "stale" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["inspect", "merkle", "--data", "{missing}"], "no pttsync data directory"),
        (
            [
                "gen",
                "--data",
                "{data}",
                "--count",
                "5",
                "--from",
                "2025-02-01",
                "--to",
                "2025-01-01",
            ],
            "time range is empty",
        ),
        (["inspect", "merkle", "--data", "{data}", "--topic", "ffff"], "no topic"),
    ],
)
def test_usage_errors_are_clear(
    data: Path, tmp_path: Path, run: Run, argv: list[str], message: str
) -> None:
    argv = [a.format(data=data, missing=tmp_path / "missing") for a in argv]
    code, _, err = run(*argv)
    assert code == 2 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["gen", "--data", "x", "--count", "-1", "--from", "2025-01-01", "--to", "2026-01-01"],
        ["gen", "--data", "x", "--count", "5", "--from", "soon", "--to", "2026-01-01"],
        ["inspect", "merkle", "--data", "x", "--level", "minute"],
        [
            "gen",
            "--data",
            "x",
            "--count",
            "5",
            "--from",
            "2025-01-01",
            "--to",
            "2026-01-01",
            "--batch",
            "999999999",
        ],
        ["inspect", "tree-list", "--data", "x"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_exit_2(run: Run, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(*argv)
    assert info.value.code == 2


def test_a_key_file_readable_by_others_is_refused(data: Path, run: Run) -> None:
    os.chmod(data / "identity.key", 0o644)
    code, _, err = run(
        "gen", "--data", str(data), "--count", "1", "--from", "2025-01-01", "--to", "2026-01-01"
    )
    assert code == 2 and "chmod 600" in err


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    if parser._subparsers is None:
        return {}
    action = parser._subparsers._group_actions[0]
    assert isinstance(action, argparse._SubParsersAction)
    return dict(action.choices)


def _commands() -> list[list[str]]:
    found: list[list[str]] = [[]]
    for name, sub in _subcommands(build_parser()).items():
        found.append([name])
        found.extend([name, inner] for inner in _subcommands(sub))
    return found


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c) or "pttsync")
def test_every_command_has_help(run: Run, command: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(*command, "--help")
    assert info.value.code == 0


def test_every_command_that_prints_data_has_json() -> None:
    for command in _commands():
        # Groups print nothing themselves; run and launch print a banner or a table, not data.
        if not command or command in (["inspect"], ["member"], ["run"], ["launch"]):
            continue
        sub = build_parser()
        for name in command:
            sub = _subcommands(sub)[name]
        assert "--json" in sub._option_string_actions, command


def test_python_dash_m_works() -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "pttsync", "inspect", "merkle", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--json" in usage and "--level" in usage


def test_kill_9_during_gen_leaves_a_consistent_store(data: Path) -> None:
    """A crash mid-batch loses at most the batch in flight, never consistency."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pttsync",
            "gen",
            "--data",
            str(data),
            "--count",
            "400000",
            "--batch",
            "2000",
            "--from",
            "2025-01-01",
            "--to",
            "2026-01-01",
            "--sign-workers",
            "0",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    deadline = threading.Timer(120, proc.kill)  # readline() must not wait forever
    deadline.start()
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline(), proc.stderr.readline()]  # two batches committed
        assert all(line.startswith("gen: ") for line in lines), lines
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        deadline.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()
    with Store.open(data / "store.sqlite3") as s:
        topic = s.topics()[0].topic_id
        count = s.count(topic) - 1  # the genesis oplog, written by init
        assert count >= 4000 and count % 2000 == 0
        assert s.check(topic) == []


def test_invite_then_init_with_the_token_joins_the_topic(
    tmp_path: Path, run: Run, data: Path
) -> None:
    code, token, _ = run("invite", "--data", str(data))
    assert code == 0 and token.strip().startswith("ptt1")
    code, out, _ = run("init", "--data", str(tmp_path / "new"), "--invite", token.strip(), "--json")
    assert code == 0
    joined = json.loads(out)
    code, out, _ = run("invite", "--data", str(data), "--json")
    assert joined["topic_id"] == json.loads(out)["topic_id"]
    assert joined["admitted_by"] is None
    code, _, err = run("init", "--data", str(tmp_path / "bad"), "--invite", "ptt1zzz")
    assert code == 2 and "not a topic token" in err
