"""Helpers shared by the tests: deterministic identities and small oplog factories."""

from __future__ import annotations

import hashlib

from pttsync.core.identity import Identity
from pttsync.core.oplog import Oplog, create_oplog
from pttsync.core.topic import TopicInfo


def make_identity(name: str) -> Identity:
    """The same key for the same name, every run."""
    return Identity.from_seed(hashlib.sha256(name.encode()).digest())


def make_oplog(
    identity: Identity, topic: TopicInfo, t: int, key: str = "doc", value: object = 1
) -> Oplog:
    return create_oplog(
        identity,
        topic_id=topic.topic_id,
        object_id=key.encode(),
        op=1,
        value={"v": {"v": value, "t": t}},
        create_time=t,
    )
