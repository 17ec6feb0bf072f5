"""`pttsync init --topic-of` and `pttsync sync --local`: the issue's demo, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pttsync.core.store.sqlite import SqliteStore as Store
from tools.bench_sync import negentropy_ready

Run = Any  # the `run` fixture of test_cli.py, shared through conftest
GEN = ["--from", "2025-01-01", "--to", "2026-01-01", "--sign-workers", "0"]


@pytest.fixture
def pair(tmp_path: Path, run: Run) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("init", "--data", str(a))[0] == 0
    code, out, _ = run("init", "--data", str(b), "--topic-of", str(a), "--json")
    assert code == 0
    third = run("init", "--data", str(tmp_path / "c"), "--topic-of", str(a), "--json")[1]
    info_b, info_c = json.loads(out), json.loads(third)
    assert info_b["topic_id"] == info_c["topic_id"] and info_b["peer_id"] != info_c["peer_id"]
    return a, b


def _topics(d: Path) -> list[bytes]:
    with Store.open(d / "store.sqlite3") as s:
        return [t.topic_id for t in s.topics()]


def test_init_topic_of_joins_the_same_topic(pair: tuple[Path, Path]) -> None:
    a, b = pair
    assert _topics(a) == _topics(b)


def test_the_issue_demo(pair: tuple[Path, Path], run: Run) -> None:
    a, b = pair
    assert run("gen", "--data", str(a), "--count", "1500", "--seed", "1", *GEN)[0] == 0
    # B is a member (init --topic-of admitted it): its writes would need A's
    # co-signature, so it cannot write valid history with gen.
    code, _, err = run("gen", "--data", str(b), "--count", "300", "--seed", "2", *GEN)
    assert code == 2 and "only a master" in err
    code, out, _ = run("sync", "--local", str(a), str(b), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["converged"] and report["digest_a"] == report["digest_b"]
    assert report["rounds"] == 1
    # 1,500 oplogs, the genesis, and the ROLE oplogs admitting B and C.
    assert report["oplogs_sent"] == 1503 and report["oplogs_received"] == 0
    assert report["oplogs_a"] == report["oplogs_b"] == 1503
    assert report["bytes_a_to_b"] > report["oplog_bytes"] * 0.8 > 0
    assert report["bytes_b_to_a"] > 0 and report["round_trips"] >= 2
    for d in (a, b):
        assert run("inspect", "check", "--data", str(d))[0] == 0
    # In sync now: one round trip, a few hundred bytes, nothing moves.
    code, out, _ = run("sync", "--local", str(a), str(b), "--json")
    again = json.loads(out)
    assert code == 0 and again["round_trips"] == 1 and again["messages"] == 2
    assert again["bytes_a_to_b"] + again["bytes_b_to_a"] < 1024
    assert again["oplogs_sent"] == again["oplogs_received"] == 0
    code, out, _ = run("sync", "--local", str(b), str(a))
    assert code == 0 and out.startswith("converged in 1 round(s), 1 round trip(s)")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sync", "--local", "{a}", "{a}"], "the same data directory"),
        (["sync", "--local", "{a}", "{missing}"], "no pttsync data directory"),
        (["sync", "--local", "{a}", "{other}"], "does not hold topic"),
        (["init", "--data", "{new}", "--topic-of", "{missing}"], "no pttsync data directory"),
        (["init", "--data", "{new}", "--topic-of", "{a}", "--topic", "ffff"], "no topic"),
    ],
)
def test_sync_usage_errors(
    pair: tuple[Path, Path], tmp_path: Path, run: Run, argv: list[str], message: str
) -> None:
    a, _ = pair
    other = tmp_path / "other"
    assert run("init", "--data", str(other))[0] == 0
    names = {"a": a, "missing": tmp_path / "missing", "other": other, "new": tmp_path / "new"}
    code, _, err = run(*[x.format(**names) for x in argv])
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_bench_sync_runs(tmp_path: Path) -> None:
    """tools/bench_sync.py at a tiny size: it runs, converges and reports what it should."""
    tool = Path(__file__).parent.parent / "tools" / "bench_sync.py"
    why = negentropy_ready()
    args = ["--n", "300", "--d", "10", "--cache", str(tmp_path)]
    if why is not None:
        print(f"bench_sync runs without negentropy here: {why}")
        args.append("--no-negentropy")
    done = subprocess.run(
        [sys.executable, str(tool), *args], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout)
    assert report["converged"] and report["n"] == 300 and report["d"] == 10
    assert report["bytes_total"] == report["bytes_oplogs"] + report["bytes_overhead"]
    assert 1 <= report["round_trips"] <= 5
    if why is None:  # negentropy ran on the same sets: it found the same differences
        assert report["neg_round_trips"] >= 1 and report["neg_bytes"] > 0
        assert report["neg_need"] == 5 and report["ratio"] > 0
