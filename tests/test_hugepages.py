"""`pttsync simulate --huge-pages` (pttsync/cli/hugepages.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pttsync.cli import hugepages
from pttsync.cli.hugepages import MARK, PEERS_PER_PROCESS, environment, glibc_version, thp_mode
from pttsync.cli.main import main

LINUX = {"platform": "linux", "mode": "madvise", "glibc": (2, 36)}


def test_a_large_run_goes_on_huge_pages() -> None:
    env, why = environment("auto", PEERS_PER_PROCESS, {"PATH": "/bin"}, **LINUX)  # type: ignore[arg-type]
    assert env is not None, why
    assert env["PYTHONMALLOC"] == "malloc"
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    assert env[MARK] == "1"
    assert env["PATH"] == "/bin"  # the rest as it was


def test_the_users_tunables_are_kept() -> None:
    given = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    env, _ = environment("on", 10, given, **LINUX)  # type: ignore[arg-type]
    assert env is not None
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"


@pytest.mark.parametrize(
    ("choice", "peers", "environ", "machine", "reason"),
    [
        ("off", 10_000, {}, LINUX, "--huge-pages off"),
        ("auto", PEERS_PER_PROCESS - 1, {}, LINUX, "no gain"),
        ("on", 10, {MARK: "1"}, LINUX, "already"),
        ("on", 10, {"PYTHONMALLOC": "pymalloc"}, LINUX, "user's choice"),
        ("on", 10, {}, {**LINUX, "platform": "darwin"}, "Linux's"),
        ("on", 10, {}, {**LINUX, "mode": "never"}, "are never"),
        ("on", 10, {}, {**LINUX, "glibc": (2, 31)}, "glibc 2.35"),
    ],
)
def test_where_it_is_not_done_it_says_why(
    choice: str, peers: int, environ: dict[str, str], machine: dict[str, object], reason: str
) -> None:
    env, why = environment(choice, peers, environ, **machine)  # type: ignore[arg-type]
    assert env is None
    assert reason in why


def test_the_machine_is_read(tmp_path: Path) -> None:
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert thp_mode(path) == "madvise"
    assert thp_mode(tmp_path / "missing") is None
    version = glibc_version()
    assert version is None or version >= (2, 0)


def test_in_process_the_command_runs_as_it_is(capsys: pytest.CaptureFixture[str]) -> None:
    """A program calling `main` is not exec'd, whatever the choice."""
    code = main(["simulate", "--peers", "4", "--writes", "2", "--huge-pages", "on", "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["ok"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", MARK)}
    cmd = [sys.executable, "-m", "pttsync", "-v", "simulate", "--peers", "6", "--writes", "3"]
    return subprocess.run(
        [*cmd, "--seed", "2", "--json", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_command_runs_itself_again_on_huge_pages_with_the_same_report() -> None:
    env, why = environment("on", 6, {})
    if env is None:
        pytest.skip(f"this machine cannot: {why}")
    on, off = _run("--huge-pages", "on"), _run("--huge-pages", "off")
    assert on.returncode == off.returncode == 0, on.stderr + off.stderr
    assert "running again on huge pages" in on.stderr
    assert "running on transparent huge pages" in on.stderr
    assert "running again" not in off.stderr
    reports = [json.loads(r.stdout) for r in (on, off)]
    for report in reports:
        del report["wall_s"], report["phases_s"]
    assert reports[0] == reports[1]


def test_a_run_on_huge_pages_does_not_run_itself_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hugepages, "is_entry", lambda: True)
    monkeypatch.setenv(MARK, "1")

    def no_exec(*args: object) -> None:
        raise AssertionError("exec'd again")

    monkeypatch.setattr(os, "execve", no_exec)
    hugepages.run_again_if_worth_it("on", 10_000)


def test_if_it_cannot_run_again_it_runs_as_it_is(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(hugepages, "is_entry", lambda: True)
    monkeypatch.delenv(MARK, raising=False)
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setattr(hugepages, "environment", lambda *a: ({"X": "1"}, "on huge pages"))

    def failing(*args: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "execve", failing)
    hugepages.run_again_if_worth_it("on", 10_000)
    assert "could not run" in caplog.text
