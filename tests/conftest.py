"""Shared fixtures: deterministic identities, a topic, an in-memory store.

And one guard for every test: a running node survives a bug of ours by
closing the one connection it hit (net/connections.py, `contain`), so the suite
fails any test in which a node logged such an internal error, unless the
test is marked `internal_errors` (it provokes one on purpose).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from pttsync.cli import main
from pttsync.core.identity import Identity
from pttsync.core.store.sqlite import SqliteStore as Store
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import TopicInfo, new_topic
from pttsync.net.connections import INTERNAL_ERROR

from .helpers import make_identity


class _InternalErrors(logging.Handler):
    """Keeps the log records a node marked as an internal error it contained."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, INTERNAL_ERROR, False):
            self.seen.append(logging.Formatter().format(record))


@pytest.fixture(autouse=True)
def _no_internal_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if a node contained a bug of ours (its traceback is shown)."""
    handler = _InternalErrors()
    logger = logging.getLogger("pttsync")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.seen and request.node.get_closest_marker("internal_errors") is None:
        pytest.fail(
            f"a node contained {len(handler.seen)} internal error(s), a bug of ours:\n"
            + "\n\n".join(handler.seen),
            pytrace=False,
        )


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
