"""Topic IDs derive from what founded the topic."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pttsync.core.identity import Identity
from pttsync.core.timeutil import parse_iso
from pttsync.core.topic import check_topic, derive_topic_id, new_topic
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
