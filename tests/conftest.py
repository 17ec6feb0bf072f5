"""Shared fixtures: deterministic identities, a topic, an in-memory store."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from pttsync.cli import main
from pttsync.core.identity import Identity
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import TopicInfo, new_topic

from .helpers import make_identity


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run the CLI in process: `run(*argv) -> (exit code, stdout, stderr)`."""

    def _run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return _run


@pytest.fixture
def alice() -> Identity:
    return make_identity("alice")


@pytest.fixture
def bob() -> Identity:
    return make_identity("bob")


@pytest.fixture
def topic(alice: Identity) -> TopicInfo:
    return new_topic(alice, name="test", create_time=parse_iso("2025-01-01"), nonce=b"n" * 16)


@pytest.fixture
def store(topic: TopicInfo) -> Iterator[Store]:
    with Store.memory() as s:
        s.add_topic(topic)
        yield s
