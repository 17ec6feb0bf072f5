"""The public API: everything a library user needs is importable from `pttsync`."""

from __future__ import annotations

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
