"""One writer per data directory, and no helper process left behind (issue 15, part 6).

`gen` and `sync --local` write a store directly: with a node running on the
directory they refuse and say what to do instead.  `init --topic-of` admits
the new peer through the running node, so the node knows its new member at
once.  `gen`'s signing worker (and multiprocessing's resource tracker) end
when gen gets SIGTERM, and when it is killed with -9.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from pttsync.core.identity import parse_peer_id
from pttsync.datadir import DataDir
from pttsync.errors import BusyError
from pttsync.net.serve import open_node

from .prochelpers import PTTSYNC, alive, cli, new_data_dir, short_root

if TYPE_CHECKING:
    from collections.abc import Iterator

GEN = ["gen", "--from", "2025-01-01", "--to", "2025-12-01"]


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with short_root(tmp_path) as path:
        yield path


def valid_count(d: Path) -> int:
    with DataDir(d).open_store() as store:
        return store.count(store.topics()[0].topic_id)


async def test_commands_that_write_a_store_refuse_while_a_node_runs_on_it(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy, other = new_data_dir(root / "busy").path, new_data_dir(root / "other").path
    before = valid_count(busy)
    with trio.fail_after(30):
        async with open_node(busy):
            assert await cli(*GEN, "--data", str(busy), "--count", "5") == 2
            err = capsys.readouterr().err
            assert f"a node is running on {busy}" in err
            assert "gen writes the store directly (`pttsync put` writes through" in err
            assert await cli("sync", "--local", str(other), str(busy)) == 2
            assert "running nodes sync over the network" in capsys.readouterr().err
            assert valid_count(busy) == before
    # With the node stopped, both work.
    assert await cli(*GEN, "--data", str(busy), "--count", "5") == 0
    assert valid_count(busy) == before + 5


def test_a_writer_holds_the_directory_against_a_node_and_other_writers(root: Path) -> None:
    d = DataDir(new_data_dir(root / "d").path)
    with d.writer("unused"):
        with pytest.raises(BusyError, match=r"another command is writing it\): try later"):
            d.writer("try later").__enter__()
        # A node cannot start on it meanwhile.
        done = subprocess.run(
            [*PTTSYNC, "run", "--data", str(d.path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 2 and "already running" in done.stderr
    with d.writer("free again") as store:
        assert store.topics()


async def test_init_topic_of_a_running_master_admits_through_the_node(
    root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    master = new_data_dir(root / "master").path
    with trio.fail_after(30):
        async with open_node(master) as node:
            capsys.readouterr()
            assert await cli("init", "--data", str(root / "new"), "--topic-of", str(master)) == 0
            out = capsys.readouterr().out
            assert "admitted by" in out
            peer = parse_peer_id(out.split("peer id:", 1)[1].split()[0])
            # The node knows its new member at once, without a restart.
            assert node.topic().admits(peer)


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def gen_with_worker(d: Path) -> tuple[subprocess.Popen[bytes], set[int]]:
    """A long `gen` whose signing worker and resource tracker have started."""
    with (d.parent / "gen.stderr").open("wb") as err:  # shown if the test fails
        proc = subprocess.Popen(
            [*PTTSYNC, *GEN, "--data", str(d), "--count", "1000000"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    deadline = time.monotonic() + 30
    while len(kids := children_of(proc.pid)) < 2:  # the worker and the resource tracker
        assert proc.poll() is None and time.monotonic() < deadline, "gen's worker never started"
        time.sleep(0.05)
    return proc, kids


def wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to find children")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_gen_leaves_no_helper_process_behind(root: Path, how: signal.Signals) -> None:
    d = new_data_dir(root / "gen").path
    proc, kids = gen_with_worker(d)
    try:
        os.kill(proc.pid, how)
        code = proc.wait(timeout=30)
        said = (d.parent / "gen.stderr").read_text(errors="replace")[-2000:]
        assert code == (143 if how == signal.SIGTERM else -signal.SIGKILL), said
        assert wait_gone(kids, 10) == set()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in kids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    # What was committed is consistent, and the directory is free.
    done = subprocess.run(
        [*PTTSYNC, "inspect", "check", "--data", str(d), "--no-signatures"],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
