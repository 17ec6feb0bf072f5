"""Topics: a topic's identity.

A topic ID is the SHA-256 of `["pttsync/topic/1", creator, create time,
name, nonce]` in canonical CBOR, with the lifecycle settings `[quorum,
expiry]` appended when they are not the defaults (so topics founded before
the settings existed keep their IDs).  It derives from what founded the
topic and cannot be chosen freely, and a creator cannot found one topic
with two sets of rules.  The genesis oplog (governance.make_genesis)
repeats these fields, signed by the creator, who is the first master.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import codec
from .store import DEFAULT_EXPIRY, Quorum, TopicInfo
from .timeutil import NS_PER_SECOND, check_time

if TYPE_CHECKING:
    from .identity import Identity

_TOPIC_TAG = "pttsync/topic/1"
MAX_TOPIC_NAME = 200
NONCE_SIZE = 16


MIN_EXPIRY = 60 * NS_PER_SECOND
MAX_EXPIRY = 30 * 24 * 3600 * NS_PER_SECOND


def derive_topic_id(
    creator: bytes,
    create_time: int,
    name: str,
    nonce: bytes,
    quorum: Quorum = Quorum.MAJORITY,
    expiry: int = DEFAULT_EXPIRY,
) -> bytes:
    body: list[object] = [_TOPIC_TAG, creator, create_time, name, nonce]
    if (quorum, expiry) != (Quorum.MAJORITY, DEFAULT_EXPIRY):
        body.append([int(quorum), expiry])
    return hashlib.sha256(codec.dumps(body)).digest()


def new_topic(
    creator: Identity,
    *,
    name: str,
    create_time: int,
    nonce: bytes,
    quorum: Quorum = Quorum.MAJORITY,
    expiry: int = DEFAULT_EXPIRY,
) -> TopicInfo:
    """Describe a new topic founded by `creator` at `create_time`.

    `nonce` (16 random bytes, from the caller) makes two topics with the same
    name, creator and time distinct.  `quorum` and `expiry` are the
    lifecycle settings (lifecycle.md): how many masters must co-sign, and
    how long an oplog may stay pending.

    Raises:
        UsageError: the name is empty or too long, the nonce is not 16
            bytes, or the expiry is outside [1 minute, 30 days].
    """
    if not name or len(name) > MAX_TOPIC_NAME or not name.isprintable():
        raise UsageError(f"a topic name is 1..{MAX_TOPIC_NAME} printable characters")
    if len(nonce) != NONCE_SIZE:
        raise UsageError(f"a topic nonce is {NONCE_SIZE} bytes")
    if type(expiry) is not int or not MIN_EXPIRY <= expiry <= MAX_EXPIRY:
        raise UsageError("a topic's expiry is between 1 minute and 30 days (in nanoseconds)")
    quorum = Quorum(quorum)
    check_time(create_time)
    topic_id = derive_topic_id(creator.peer_id, create_time, name, nonce, quorum, expiry)
    return TopicInfo(topic_id, name, creator.peer_id, create_time, nonce, quorum, expiry)


def check_topic(info: TopicInfo) -> None:
    """Raise UsageError if `info.topic_id` does not derive from its fields."""
    derived = derive_topic_id(
        info.creator, info.create_time, info.name, info.nonce, info.quorum, info.expiry
    )
    if derived != info.topic_id:
        raise UsageError(f"topic {info.topic_id.hex()} does not derive from its fields")
