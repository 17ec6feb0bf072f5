"""examples/todo.py runs end to end and shows what the issue asks of it."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import trio

EXAMPLE = Path(__file__).parent.parent / "examples" / "todo.py"


def test_todo_example(capsys: pytest.CaptureFixture[str]) -> None:
    module = runpy.run_path(str(EXAMPLE))

    async def bounded() -> None:
        with trio.fail_after(30):
            await module["main"]()

    trio.run(bounded)
    out = capsys.readouterr().out
    # Tasks made on both peers; Bob's pending write confirmed by Alice's co-signature.
    assert "call mom         task/bob-1 (pending)" in out
    assert ">> bob sees confirmed: task/bob-1" in out
    # The conflict surfaced on both peers, then resolved with a merge.
    assert "alice: task/alice-1 shows {'done': False, 'title': 'buy oat milk'}, also kept:" in out
    assert "bob: task/alice-1 shows {'done': False, 'title': 'buy oat milk'}, also kept:" in out
    assert "[x] buy oat milk" in out and "conflict:" not in out.split("Alice resolved")[1]
    # The expired delete rolled back: the task came back, and the watcher said so.
    assert ">> bob sees failed: task/alice-2" in out
    assert "1 write rolled back" in out
    after_rollback = out.split("1 write rolled back")[1].split("Alice comes back")[0]
    assert "write report" in after_rollback
    assert out.rstrip().endswith("identical on both peers: True")


def test_bench_lifecycle_runs() -> None:
    """tools/bench_lifecycle.py at a tiny size: every write co-signed, every one rolled back."""
    tool = Path(__file__).parent.parent / "tools" / "bench_lifecycle.py"
    done = subprocess.run(
        [sys.executable, str(tool), "--pending", "300", "--valid", "200"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["made_valid"] == 300 == report["rolled_back_by_removal"]
    assert report["cosign_rounds"] == 2  # at most 256 pending oplogs per postsync


def test_bench_disk_runs(tmp_path: Path) -> None:
    """tools/bench_disk.py on a small store: where its bytes go, and what reading costs."""
    data = tmp_path / "peer"
    cli = [sys.executable, "-m", "pttsync"]
    subprocess.run([*cli, "init", "--data", str(data)], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [*cli, "gen", "--data", str(data), "--count", "300", "--from", "2025-01-01",
         "--to", "2025-02-01", "--seed", "1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    tool = Path(__file__).parent.parent / "tools" / "bench_disk.py"
    done = subprocess.run(
        [sys.executable, str(tool), str(data), "--reads", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["oplogs"] == 301  # the genesis record and 300 written
    assert {"oplogs", "leaves"} <= set(report["by_object"])
    # Records are kept packed: well under the ~330 B of a whole record.
    assert 100 < report["body_bytes_per_oplog"] < 250
    assert set(report["reads"]) == {"bodies", "stored_copies", "since"}


README = Path(__file__).parent.parent / "README.md"


def readme_example(heading: str) -> str:
    """The first Python block after `heading` in the README."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    return text[start:].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        (
            "#### A blocking client: `pttsync.Client`",
            [
                "the node speaks control API version 1",
                "watched: ['todo/0', 'todo/1', 'todo/2', 'todo/3']",
                "todo/2 is {'title': 'task 2'}",
                "listed: ['todo/1', 'todo/2', 'todo/3']",
                "refused: a document key is non-empty, printable text",
            ],
        ),
        (
            "#### asyncio: `pttsync.AsyncClient`",
            [
                "watched: ['put todo/0', 'put todo/1', 'put todo/2']",
                "todo/1 is {'done': True}",
                "listed: ['todo/0', 'todo/1', 'todo/2']",
            ],
        ),
        (
            "#### A node inside the program: `pttsync.start_node`",
            [
                "Bob's write is pending",
                "Bob's node: put todo/1",
                "Bob's node: confirmed todo/1 (co-signed by Alice's)",
                "Alice's node has {'title': 'buy milk'}",
                "running: False False",
            ],
        ),
    ],
)
def test_readme_client_examples(heading: str, expected: list[str]) -> None:
    """Each runs as its own program, without trio of its own, and exits cleanly."""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", readme_example(heading)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == expected
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
