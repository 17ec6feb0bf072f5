"""Topic IDs derive from what founded the topic."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest

from pttsync.core import codec
from pttsync.core.identity import Identity
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import (
    Quorum,
    check_topic,
    derive_topic_id,
    new_topic,
    parse_topic_token,
    topic_token,
)
from pttsync.errors import UsageError

T = parse_iso("2025-01-01")


def test_topic_id_derives_from_its_fields(alice: Identity, bob: Identity) -> None:
    a = new_topic(alice, name="notes", create_time=T, nonce=b"n" * 16)
    assert a.topic_id == derive_topic_id(alice.peer_id, T, "notes", b"n" * 16)
    assert new_topic(alice, name="notes", create_time=T, nonce=b"n" * 16) == a
    others = [
        new_topic(bob, name="notes", create_time=T, nonce=b"n" * 16),
        new_topic(alice, name="notez", create_time=T, nonce=b"n" * 16),
        new_topic(alice, name="notes", create_time=T + 1, nonce=b"n" * 16),
        new_topic(alice, name="notes", create_time=T, nonce=b"m" * 16),
    ]
    assert len({a.topic_id, *(o.topic_id for o in others)}) == 5
    check_topic(a)


@pytest.mark.parametrize("field", ["name", "creator", "create_time", "nonce"])
def test_check_topic_detects_a_changed_field(alice: Identity, field: str) -> None:
    a = new_topic(alice, name="notes", create_time=T, nonce=b"n" * 16)
    value = getattr(a, field)
    changed: Any = value + 1 if isinstance(value, int) else value[:-1] + value[-1:] * 2
    with pytest.raises(UsageError, match="does not derive"):
        check_topic(dataclasses.replace(a, **{field: changed}))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "tab\there"}, "name"),
        ({"nonce": b"short"}, "nonce"),
        ({"create_time": -1}, "time"),
    ],
)
def test_new_topic_rejects_bad_arguments(
    alice: Identity, kwargs: dict[str, object], match: str
) -> None:
    args: dict[str, object] = {"name": "ok", "create_time": T, "nonce": b"n" * 16, **kwargs}
    with pytest.raises(UsageError, match=match):
        new_topic(alice, **args)  # type: ignore[arg-type]


def test_a_topic_token_round_trips(alice: Identity) -> None:

    for quorum, expiry in ((Quorum.MAJORITY, 3600 * 10**9), (Quorum.ALL, 120 * 10**9)):
        info = new_topic(
            alice, name="board ☃", create_time=parse_iso("2026-01-01"), nonce=b"n" * 16,
            quorum=quorum, expiry=expiry,
        )  # fmt: skip
        token = topic_token(info)
        assert token.startswith("ptt1") and token == token.lower()
        assert parse_topic_token(f"  {token}\n") == info


@pytest.mark.parametrize(
    "text",
    ["", "ptt1", "ptt2abc", "ptt1!!!!", "ptt1" + "a" * 2000, "ptt1aaaaaaaa", "hello"],
)
def test_a_bad_topic_token_is_a_usage_error(text: str) -> None:

    with pytest.raises(UsageError, match="not a topic token"):
        parse_topic_token(text)


def test_a_token_with_a_wrong_field_is_refused(alice: Identity) -> None:

    def token(body: list[object]) -> str:
        return "ptt1" + base64.b32encode(codec.dumps(body)).decode().rstrip("=").lower()

    good: list[object] = ["t", alice.peer_id, 10**18, b"n" * 16, 0, 3600 * 10**9]
    assert parse_topic_token(token(good)).name == "t"
    for i, bad in [(0, ""), (1, b"x"), (3, b"short"), (4, 7), (5, 1), (2, "1")]:
        body = list(good)
        body[i] = bad
        with pytest.raises(UsageError):
            parse_topic_token(token(body))
