"""tools/fuzz.py itself: failures saved and replayed, from a file or from hex.

The tool is imported from its file and run in this process, with a target
that crashes on purpose added to its registry for the length of a test.
"""

from __future__ import annotations

import gzip
import importlib.util
import random
import re
from pathlib import Path
from types import ModuleType

import pytest

from .adversary.engine import DecoderTarget, plain
from .adversary.stateful import BATCH, SyncAdversary

TOOL = Path(__file__).parent.parent / "tools" / "fuzz.py"
DATA = Path(__file__).parent / "data"


def load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pttsync_fuzz_tool", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crash_on_x(data: bytes) -> None:
    """A decoder with two bugs: refuses short inputs cleanly, crashes on any with b'x'."""
    if len(data) < 4:
        raise EOFError("too short")
    if b"x" * 100 in data:
        raise IndexError("a bug in long inputs")
    if b"x" in data:
        raise KeyError("a bug of ours")


def always_x(rng: random.Random, data: bytes, pool: object) -> bytes:
    return data + b"x" * rng.choice((1, 300))


BUGGY = DecoderTarget(
    "buggy", (EOFError,), lambda: [b"seed"], (always_x,), lambda: plain(crash_on_x)
)


@pytest.fixture
def tool(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = load_tool()
    monkeypatch.setitem(module.TARGETS, "buggy", BUGGY)
    return module


def test_a_failure_is_saved_and_its_replay_line_crashes_again(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    artifacts = tmp_path / "crashes"
    code = tool.main(["--target", "buggy", "--inputs", "20", "--artifacts", str(artifacts)])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL buggy: KeyError: 'a bug of ours'" in out
    assert "FAIL buggy: IndexError: a bug in long inputs" in out
    replays = re.findall(r"replay: python tools/fuzz.py --replay buggy @(\S+)", out)
    assert replays and all(Path(p).parent == artifacts for p in replays)
    saved = {Path(p).read_bytes() for p in replays}
    assert all(b"x" in data for data in saved)
    # Short inputs are shown in hex as well; long ones (here 304 bytes) only saved.
    shown = re.findall(r"input: ([0-9a-f]+)", out)
    assert shown and all(len(bytes.fromhex(h)) <= tool.SHORT for h in shown)
    assert any(len(data) > tool.SHORT for data in saved)
    long = next(p for p in replays if len(Path(p).read_bytes()) > tool.SHORT)
    with pytest.raises(IndexError, match="a bug in long inputs"):
        tool.main(["--replay", "buggy", f"@{long}"])
    with pytest.raises(KeyError, match="a bug of ours"):
        tool.main(["--replay", "buggy", shown[0]])


def test_a_clean_refusal_replays_as_refused(
    tool: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tool.main(["--replay", "buggy", b"ab".hex()]) == 0
    assert capsys.readouterr().out.strip() == "refused: EOFError: too short"
    assert tool.main(["--replay", "buggy", b"abcd".hex()]) == 0
    assert capsys.readouterr().out.strip() == "passed"


def test_the_store_crasher_replays_from_its_file(
    tool: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crasher = tmp_path / "store-crasher"
    crasher.write_bytes(gzip.decompress((DATA / "store-node-level-leaf.sqlite3.gz").read_bytes()))
    assert tool.main(["--replay", "store", f"@{crasher}"]) == 0
    assert capsys.readouterr().out.startswith("refused: StoreError: a stored tree node is corrupt")


@pytest.mark.parametrize(
    ("target", "given", "said"),
    [
        ("store", "@/nonexistent/input", "cannot read the input"),
        ("oplog", "zz", "cannot read the input"),
        ("adversary", "010203", "an 8-byte batch seed, not 3 bytes"),
        ("nothing", "00", "no replay for target 'nothing'"),
    ],
)
def test_an_input_that_cannot_be_replayed_is_a_usage_error(
    tool: ModuleType, capsys: pytest.CaptureFixture[str], target: str, given: str, said: str
) -> None:
    assert tool.main(["--replay", target, given]) == 2
    assert said in capsys.readouterr().err


def test_an_adversary_batch_replays_from_its_seed(
    tool: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    before = SyncAdversary.examples_run
    assert tool.main(["--replay", "adversary", (12345).to_bytes(8, "big").hex()]) == 0
    assert capsys.readouterr().out.strip() == "passed"
    assert SyncAdversary.examples_run - before >= BATCH
