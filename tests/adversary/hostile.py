"""What a hostile peer sends: hostile records, fields and node messages.

The stateful adversary (stateful.py) draws from here:

* `hostile_records`: records no honest peer sends (another topic's, tampered,
  truncated, signed by a stranger, dated in the future, orphaned, a member's
  write posing as valid) and `forged_authority`: governance and co-signatures
  by someone without the right (a member promoting itself, a stranger
  admitting itself, a member removing the master, a member's write
  co-signed by the member itself, by a stranger, or with a forged master
  signature);
* `hostile_value`: a hostile replacement for any field of any PIP-11 message;
* `hello`, `peers`, `route` and `push`: the node's own messages, honest or
  hostile (foreign topics, lists at and over their limits, bogus addresses,
  bad credentials, distances out of range).

A message over a decoder's limit is still sent: the victim must refuse it.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from hypothesis import strategies as st

from pttsync.core.lifecycle.governance import OP_ROLE, Role, role_payload
from pttsync.core.merkle import Level
from pttsync.core.oplog import Signature, SignKind, cosign, create_oplog, with_signatures
from pttsync.core.oplogcodec import decode_oplog, encode_oplog
from pttsync.core.sync.messages import ChildRef, FpWant, Item, ListNode, Mark, Message
from pttsync.core.sync.msgcodec import decode_message, encode_message
from pttsync.core.timeutil import HOUR_NS, MAX_TIME
from pttsync.errors import RemoteProtocolError, UsageError
from pttsync.net.wire import (
    MAX_IDS,
    MAX_PEERS_LISTED,
    MAX_PUSH_OPLOGS,
    MAX_TOPICS,
    Hello,
    IHave,
    IWant,
    Peers,
    Prune,
    Push,
    Route,
)

from ..synchelpers import (
    ADMIT,
    FOREIGN,
    MEMBER,
    NOW,
    OLD_END,
    OLD_START,
    OTHER,
    RECENT_START,
    TID,
    WRITER,
    gen,
    member_write,
)

ROGUE_LISTEN = "127.0.0.1:7001"


def _role(signer: Any, user: bytes, role: Role) -> bytes:
    oplog = create_oplog(
        signer, topic_id=TID, object_id=user, op=OP_ROLE, value=role_payload(role),
        create_time=NOW - 2 * HOUR_NS,
    )  # fmt: skip
    return encode_oplog(oplog)


@functools.cache
def forged_authority() -> tuple[bytes, ...]:
    """Governance and co-signatures by someone without the right to give them."""
    write = member_write(NOW - 3 * HOUR_NS, "forged")
    t = write.create_time + 1
    forged_sig = Signature(WRITER.peer_id, t, b"\x09" * 64)
    return (
        _role(MEMBER, MEMBER.peer_id, Role.MASTER),  # a member promotes itself
        _role(OTHER, OTHER.peer_id, Role.MEMBER),  # a stranger admits itself
        _role(MEMBER, WRITER.peer_id, Role.NONE),  # a member removes the master
        encode_oplog(cosign(write, MEMBER, SignKind.MASTER, t)),  # co-signed by its writer
        encode_oplog(cosign(write, OTHER, SignKind.MASTER, t)),  # co-signed by a stranger
        encode_oplog(
            with_signatures(write, master_sigs=(forged_sig,), internal_sigs=())
        ),  # a forged signature
    )


@functools.cache
def hostile_records() -> tuple[bytes, ...]:
    """Records no honest peer sends: each must be refused on its own or with its message."""
    good = gen(4, RECENT_START, NOW, seed=45)
    tampered = bytearray(encode_oplog(good[0]))
    tampered[len(tampered) // 2] ^= 0x40
    stranger = create_oplog(  # a valid signature by someone who is not a member
        OTHER, topic_id=TID, object_id=b"k", op=1, value={"v": 1}, create_time=NOW - HOUR_NS
    )
    future = create_oplog(
        WRITER, topic_id=TID, object_id=b"f", op=1, value={"v": 1}, create_time=NOW + 48 * HOUR_NS
    )
    orphan = create_oplog(  # its previous log never arrives
        WRITER, topic_id=TID, object_id=b"o", op=1, value={"v": 1},
        create_time=NOW - HOUR_NS, prev_id=b"\x07" * 32,
    )  # fmt: skip
    return (
        *forged_authority(),
        encode_oplog(gen(1, RECENT_START, NOW, seed=46, topic=FOREIGN)[0]),
        bytes(tampered),
        encode_oplog(stranger),
        encode_oplog(member_write(NOW - HOUR_NS)),  # pending: not valid without a master
        encode_oplog(future),
        encode_oplog(orphan),
        encode_oplog(good[1])[:-3],  # truncated
        b"\xa0",  # an empty map
    )


def _key(data: st.DataObject) -> Any:
    return data.draw(
        st.one_of(
            st.none(),
            st.tuples(st.sampled_from([0, NOW, MAX_TIME, NOW - HOUR_NS]), st.binary(max_size=32)),
        )
    )


def hostile_value(name: str, value: Any, data: st.DataObject) -> Any:
    """A hostile replacement for field `name` (of current `value`) of a sync message."""
    hashes = st.binary(min_size=32, max_size=32)
    times = st.sampled_from([0, 1, NOW, NOW + HOUR_NS, MAX_TIME, OLD_START, OLD_END])
    if name == "topic":
        return data.draw(st.sampled_from([FOREIGN.topic_id, b"\x00" * 32]))
    if name == "round":
        return data.draw(st.binary(min_size=16, max_size=16))
    if name == "seq":
        return data.draw(st.sampled_from([0, value - 1, value + 1, value + 1000, 2**31]))
    if name in ("last", "more", "pending"):
        return not value
    if name in ("list_digest", "window_digest"):
        return data.draw(st.binary(max_size=160))
    if name == "to_sync_time":
        return data.draw(times)
    if name == "list_differs":
        return data.draw(st.integers(0, 31))
    if name in ("lo", "hi", "cont", "next"):
        return _key(data)
    if name == "oplogs":
        bad = data.draw(st.lists(st.sampled_from(hostile_records()), min_size=1, max_size=4))
        keep = list(value)[: data.draw(st.integers(0, len(value)))]
        return tuple(keep + bad)
    if name == "want_fps":  # leaves asked for by fingerprint, of real nodes and others
        width = data.draw(st.integers(1, 32))
        want = st.builds(
            FpWant,
            st.sampled_from([Level.SLICE, Level.HOUR, Level.DAY, Level.YEAR]),
            st.integers(0, 3),
            times,
            st.just(width),
            st.integers(1, 40).flatmap(lambda k: st.binary(min_size=k * width, max_size=k * width)),
        )
        return tuple(data.draw(st.lists(want, max_size=6)))
    if name == "want_ranges":
        return tuple(
            data.draw(st.lists(st.tuples(times, times, st.tuples(times, hashes)), max_size=6))
        )
    if name == "leaves":
        return _lying_leaves(value, data)
    if name == "nodes":
        node = st.builds(ListNode, st.sampled_from(list(Level)), times, hashes)
        return tuple(data.draw(st.lists(node, max_size=12)))
    if name == "items":
        return tuple(_lying_item(it, data) for it in value) or (
            Item(Level.YEAR, 0, OLD_START, b"\x01" * 32, False, ()),
        )
    if name == "reason":
        return data.draw(st.text(max_size=300))
    return value


def _lying_leaves(value: tuple[Mark, ...], data: st.DataObject) -> tuple[Mark, ...]:
    how = data.draw(st.sampled_from(["reverse", "tamper", "duplicate", "stranger", "width"]))
    marks = list(value)
    if how == "reverse":
        return tuple(reversed(marks))
    if how == "duplicate":
        return tuple(marks + marks[:1])
    if how == "tamper" and marks:
        t, fp = marks[0]
        return ((t, bytes(len(fp))), *marks[1:])
    if how == "width" and marks:
        t, fp = marks[0]
        return ((t, fp + b"\x01"), *marks[1:])  # one mark wider than the others
    return (*marks, (NOW - HOUR_NS, b"\x04" * 8))


def _lying_item(item: Item, data: st.DataObject) -> Item:
    how = data.draw(st.sampled_from(["hash", "children", "leaf_flag", "depth", "start"]))
    w = len(item.hash) if item.hash is not None else 32
    if how == "hash":
        return dataclasses.replace(item, hash=data.draw(st.binary(min_size=w, max_size=w)))
    if how == "children":
        kids = list(item.children)[: data.draw(st.integers(0, len(item.children)))]
        extra: ChildRef | bytes = b"\x05" * w
        if not item.leaf_children:
            extra = ChildRef(item.start, b"\x05" * w)
        return dataclasses.replace(item, children=(*kids, extra))  # type: ignore[arg-type]
    if how == "leaf_flag":
        return dataclasses.replace(item, leaf_children=not item.leaf_children)
    if how == "depth":
        return dataclasses.replace(item, depth=item.depth + 1)
    return dataclasses.replace(item, start=item.start + HOUR_NS)


def through_wire(msg: Message) -> Message | None:
    """`msg` as the victim would decode it; None if it cannot cross the wire at all."""
    try:
        return decode_message(encode_message(msg))
    except (UsageError, RemoteProtocolError):
        return None  # over the frame limit, or refused by the decoder: the codec's business


# -- the node's own messages ---------------------------------------------------------------


def _topics(data: st.DataObject) -> tuple[bytes, ...]:
    kind = data.draw(st.sampled_from(["mine", "foreign", "none", "at-limit", "over-limit"]))
    if kind == "mine":
        return (TID,)
    if kind == "foreign":
        return (FOREIGN.topic_id, TID)
    if kind == "none":
        return ()
    many = MAX_TOPICS if kind == "at-limit" else MAX_TOPICS + 1
    return (TID, *(bytes([i % 256, i // 256]) * 16 for i in range(many - 1)))


def hello_honest() -> Hello:
    """The rogue's honest Hello: where it listens, the topic, and its credential."""
    return Hello(ROGUE_LISTEN, (TID,), "rogue", (encode_oplog(ADMIT),))


def hello(data: st.DataObject) -> Hello:
    """The rogue's Hello: an honest one half the time, else one hostile field."""
    honest = hello_honest()
    if data.draw(st.booleans()):
        return honest
    field = data.draw(st.sampled_from(["listen", "topics", "agent", "credentials"]))
    if field == "listen":
        listen = data.draw(
            st.sampled_from(["", "0.0.0.0:7001", "[::]:1", "nohost", "h:0", "h:99999", "x" * 400])
        )
        return dataclasses.replace(honest, listen=listen)
    if field == "topics":
        return dataclasses.replace(honest, topics=_topics(data))
    if field == "agent":
        return dataclasses.replace(honest, agent=data.draw(st.sampled_from(["\x00", "a" * 65])))
    pool = [*hostile_records(), encode_oplog(ADMIT)]
    creds = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=4))
    if data.draw(st.integers(0, 9)) == 0:
        creds = creds * 40  # over the limit of credentials
    return dataclasses.replace(honest, credentials=tuple(creds))


def peers(data: st.DataObject, own_id: bytes) -> Peers:
    """Peer exchange full of addresses no one listens on, at or over the limit."""
    count = data.draw(st.sampled_from([1, 8, MAX_PEERS_LISTED, MAX_PEERS_LISTED + 1]))
    first = data.draw(st.integers(0, 60_000))
    ids = st.sampled_from([own_id, MEMBER.peer_id, b"\x00" * 32, OTHER.peer_id])
    return Peers(
        tuple((data.draw(ids), f"127.0.{(first + i) // 250 % 250}.{(first + i) % 250 + 1}:7"
               ) for i in range(count))
    )  # fmt: skip


def route(data: st.DataObject) -> Route:
    topic = data.draw(st.sampled_from([TID, TID, FOREIGN.topic_id, b"\x00" * 32]))
    return Route(
        topic, data.draw(st.sampled_from([0, 1, 15, 16, 17, 2**31])), data.draw(st.booleans())
    )


def lazy(data: st.DataObject, mine: tuple[bytes, ...]) -> IHave | IWant | Prune:
    """Announcements of records held or not, requests for anything, prunes; maybe too many."""
    topic = data.draw(st.sampled_from([TID, TID, FOREIGN.topic_id]))
    known = [decode_oplog(r).oplog_id for r in mine[:4]]
    ids = st.sampled_from([*known, b"\x00" * 32, b"\xff" * 32])
    count = data.draw(st.sampled_from([1, 3, MAX_IDS, MAX_IDS + 1]))
    chosen = tuple(data.draw(ids) for _ in range(min(count, 8)))
    chosen = (chosen * count)[:count]
    kind = data.draw(st.sampled_from(["ihave", "iwant", "prune"]))
    if kind == "prune":
        return Prune(topic)
    return (IHave if kind == "ihave" else IWant)(topic, chosen)


def push(data: st.DataObject, mine: tuple[bytes, ...]) -> Push:
    """A Push of the rogue's own records and hostile ones, valid or pending, maybe too many."""
    pool = [*hostile_records(), *mine]
    records = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=6))
    if data.draw(st.integers(0, 15)) == 0:
        size = data.draw(st.sampled_from([MAX_PUSH_OPLOGS, MAX_PUSH_OPLOGS + 1]))
        records = (records * size)[:size]
    topic = TID if data.draw(st.integers(0, 7)) else FOREIGN.topic_id
    return Push(topic, tuple(records), data.draw(st.booleans()))
