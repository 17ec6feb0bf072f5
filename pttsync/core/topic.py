"""Topics: a topic's identity and settings (`TopicInfo`, `Quorum`).

A topic ID is the SHA-256 of `["pttsync/topic/1", creator, create time,
name, nonce]` in canonical CBOR, with the lifecycle settings `[quorum,
expiry]` appended when they are not the defaults (so topics founded before
the settings existed keep their IDs).  It derives from what founded the
topic and cannot be chosen freely, and a creator cannot found one topic
with two sets of rules.  The genesis oplog (governance.make_genesis)
repeats these fields, signed by the creator, who is the first master.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from ..errors import UsageError
from . import codec
from .timeutil import NS_PER_SECOND, check_time

if TYPE_CHECKING:
    from .identity import Identity

_TOPIC_TAG = "pttsync/topic/1"
MAX_TOPIC_NAME = 200
NONCE_SIZE = 16


class Quorum(IntEnum):
    """How many of a topic's masters make a member's oplog valid (lifecycle.md)."""

    MAJORITY = 0  # more than half (PIP-7)
    ALL = 1  # every master (what go-pttai's code does)


DEFAULT_EXPIRY = 3600 * 1_000_000_000
"""How long an oplog may stay pending before HandleFailedOplogs rolls it back."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic as a store keeps it.  The ID derives from the other fields (derive_topic_id).

    `quorum` and `expiry` are the topic's lifecycle settings, fixed when the
    topic is founded.
    """

    topic_id: bytes
    name: str
    creator: bytes
    create_time: int
    nonce: bytes
    quorum: Quorum = Quorum.MAJORITY
    expiry: int = DEFAULT_EXPIRY


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


TOKEN_PREFIX = "ptt1"
MAX_TOKEN = 1024


def topic_token(info: TopicInfo) -> str:
    """A text that names a topic completely, to give to a peer who will join it.

    `ptt1` then the unpadded lowercase base32 of the canonical CBOR of the
    fields the topic ID derives from.  It holds no secret: what admits a
    peer is a master's ROLE oplog (`pttsync member add`), not the token.
    """
    body = [info.name, info.creator, info.create_time, info.nonce, int(info.quorum), info.expiry]
    return TOKEN_PREFIX + base64.b32encode(codec.dumps(body)).decode().rstrip("=").lower()


def parse_topic_token(text: str) -> TopicInfo:
    """The topic a `topic_token` names.

    Raises:
        UsageError: the text is not a well-formed token.
    """
    text = text.strip()
    bad = UsageError("not a topic token (it starts with ptt1; get one with: pttsync invite)")
    if not text.startswith(TOKEN_PREFIX) or len(text) > MAX_TOKEN:
        raise bad
    b32 = text[len(TOKEN_PREFIX) :].upper()
    try:
        raw = base64.b32decode(b32 + "=" * (-len(b32) % 8))
        body = codec.loads(raw, max_size=MAX_TOKEN)
    except (binascii.Error, ValueError):
        raise bad from None
    if type(body) is not list or len(body) != 6:
        raise bad
    name, creator, create_time, nonce, quorum, expiry = body
    kinds = (str, bytes, int, bytes, int, int)
    if any(type(v) is not k for v, k in zip(body, kinds, strict=True)):
        raise bad
    try:
        q = Quorum(quorum)
    except ValueError:
        raise bad from None
    if len(creator) != 32 or len(nonce) != NONCE_SIZE or not 0 < len(name) <= MAX_TOPIC_NAME:
        raise bad
    if not MIN_EXPIRY <= expiry <= MAX_EXPIRY:
        raise bad
    check_time(create_time)
    topic_id = derive_topic_id(creator, create_time, name, nonce, q, expiry)
    return TopicInfo(topic_id, name, creator, create_time, nonce, q, expiry)
