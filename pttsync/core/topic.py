"""Topics: a topic's identity.

A topic ID is the SHA-256 of `["pttsync/topic/1", creator, create time,
name, nonce]` in canonical CBOR: it derives from what founded the topic and
cannot be chosen freely.  The lifecycle work wraps these same fields in a
signed genesis oplog that makes the creator the first master; the ID
derivation stays the same.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import codec
from .store import TopicInfo
from .timeutil import check_time

if TYPE_CHECKING:
    from .identity import Identity

_TOPIC_TAG = "pttsync/topic/1"
MAX_TOPIC_NAME = 200
NONCE_SIZE = 16


def derive_topic_id(creator: bytes, create_time: int, name: str, nonce: bytes) -> bytes:
    body = [_TOPIC_TAG, creator, create_time, name, nonce]
    return hashlib.sha256(codec.dumps(body)).digest()


def new_topic(creator: Identity, *, name: str, create_time: int, nonce: bytes) -> TopicInfo:
    """Describe a new topic founded by `creator` at `create_time`.

    `nonce` (16 random bytes, from the caller) makes two topics with the same
    name, creator and time distinct.

    Raises:
        UsageError: the name is empty or too long, or the nonce is not 16 bytes.
    """
    if not name or len(name) > MAX_TOPIC_NAME or not name.isprintable():
        raise UsageError(f"a topic name is 1..{MAX_TOPIC_NAME} printable characters")
    if len(nonce) != NONCE_SIZE:
        raise UsageError(f"a topic nonce is {NONCE_SIZE} bytes")
    check_time(create_time)
    topic_id = derive_topic_id(creator.peer_id, create_time, name, nonce)
    return TopicInfo(topic_id, name, creator.peer_id, create_time, nonce)


def check_topic(info: TopicInfo) -> None:
    """Raise UsageError if `info.topic_id` does not derive from its fields."""
    if derive_topic_id(info.creator, info.create_time, info.name, info.nonce) != info.topic_id:
        raise UsageError(f"topic {info.topic_id.hex()} does not derive from its fields")
