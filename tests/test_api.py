"""The public API: everything a library user needs is importable from `pttsync`."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pttsync


def test_public_api_round_trip() -> None:
    me = pttsync.Identity.from_seed(b"k" * 32)
    topic = pttsync.new_topic(
        me, name="t", create_time=pttsync.parse_iso("2025-01-01"), nonce=b"n" * 16
    )
    with pttsync.Store.memory() as store:
        store.add_topic(topic)
        o = pttsync.create_oplog(
            me,
            topic_id=topic.topic_id,
            object_id=b"x",
            op=1,
            value={"a": 1},
            create_time=pttsync.parse_iso("2025-01-02"),
        )
        assert pttsync.decode_oplog(pttsync.encode_oplog(o)) == o
        store.write_batch(topic.topic_id, [(o, pttsync.OplogStatus.VALID)])
        tree = store.tree(topic.topic_id)
        assert [n.level for n in tree.tree_list(pttsync.parse_iso("2026-06-01"))] == [
            pttsync.Level.YEAR
        ]


def test_error_taxonomy_says_whose_fault() -> None:
    assert issubclass(pttsync.UsageError, pttsync.LocalError)
    assert issubclass(pttsync.IdentityError, pttsync.LocalError)
    assert issubclass(pttsync.DataDirError, pttsync.LocalError)
    assert not issubclass(pttsync.RemoteProtocolError, pttsync.LocalError)
    for cls in (
        pttsync.MalformedOplogError,
        pttsync.OversizeError,
        pttsync.TimestampError,
        pttsync.IntegrityError,
        pttsync.SignatureError,
    ):
        assert issubclass(cls, pttsync.InvalidOplogError)
    assert all(
        issubclass(c, pttsync.PttsyncError)
        for c in (
            pttsync.LocalError,
            pttsync.RemoteProtocolError,
            pttsync.InvalidOplogError,
            pttsync.StoreError,
        )
    )
    assert pttsync.RemoteProtocolError("bad", penalty=3).penalty == 3


def test_the_readme_example_runs() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = readme.split("```python\n")[1:]
    assert blocks
    for block in blocks:
        exec(compile(block.split("```")[0], "README.md", "exec"), {})


def test_the_simulator_is_public() -> None:
    report = pttsync.simulate(pttsync.SimConfig(peers=3, writes=2, seed=9))
    assert isinstance(report, pttsync.SimReport) and report.ok
    assert isinstance(pttsync.MemoryStore(), pttsync.core.store.Store)
    assert isinstance(pttsync.Store.memory(), pttsync.core.store.Store)


def test_every_public_name_resolves_and_is_typed() -> None:
    """The API is loaded lazily (PEP 562): each name in __all__ resolves, and the
    TYPE_CHECKING imports that type checkers read name the same objects."""
    assert sorted(pttsync.__all__) == sorted(pttsync._EXPORTS)
    source = Path(pttsync.__file__).read_text()
    typed = {
        alias.asname or alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if node.level == 1
    }
    assert typed == set(pttsync.__all__)
    for name in pttsync.__all__:
        assert getattr(pttsync, name) is not None
    assert "Store" in dir(pttsync)


def test_a_signing_worker_does_not_import_the_network() -> None:
    """`pttsync gen`'s signer process imports pttsync.signer: not trio, not the node."""
    code = "import sys, pttsync.signer; print('trio' in sys.modules, 'pttsync.net' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "False"]


def test_no_public_name_is_hidden_by_a_submodule() -> None:
    """Importing a submodule sets an attribute of the package: one named like a public
    name would shadow it (pttsync.watch the function, once pttsync.watch the module)."""
    package = Path(pttsync.__file__).parent
    modules = {p.stem for p in package.glob("*.py")} | {
        p.name for p in package.iterdir() if p.is_dir()
    }
    assert not modules & set(pttsync.__all__)
