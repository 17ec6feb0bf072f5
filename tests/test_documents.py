"""documents.py: payloads and their strict decoding, and `derive`, the pure derivation of a
document from its oplogs (heads, winner, conflicts, resolving writes, the pending overlay,
resolvers), including that it depends only on the set of (oplog, status) pairs given."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from pttsync.core.docop import (
    MAX_KEY_BYTES,
    MAX_RESOLVES,
    OP_DELETE,
    OP_PUT,
    DocOp,
    decode_doc_op,
    delete_payload,
    is_doc_op,
    key_to_object,
    object_to_key,
    put_payload,
)
from pttsync.core.documents.derive import DocState, Merged, Version, derive, version_of, winner_key
from pttsync.core.identity import Identity
from pttsync.core.oplog import Oplog, OplogStatus, SignKind, cosign, create_oplog
from pttsync.core.timeutil import NS_PER_SECOND
from pttsync.errors import MalformedOplogError, UsageError

from .helpers import make_identity
from .synchelpers import NOW, TOPIC

A, B, C = make_identity("docs-a"), make_identity("docs-b"), make_identity("docs-c")
MASTER = make_identity("docs-master")
VALID, PENDING, INTERNAL = (
    OplogStatus.VALID,
    OplogStatus.PENDING,
    OplogStatus.INTERNAL_PENDING,
)
S = NS_PER_SECOND
ID1, ID2, ID3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def raw(
    who: Identity,
    value: object,
    *,
    op: int = OP_PUT,
    key: bytes = b"k",
    t: int = NOW,
    prev: Oplog | bytes | None = None,
) -> Oplog:
    """An oplog with any payload at all (create_oplog does not check document payloads)."""
    prev_id = prev.oplog_id if isinstance(prev, Oplog) else prev
    return create_oplog(
        who,
        topic_id=TOPIC.topic_id,
        object_id=key,
        op=op,
        create_time=t,
        value=value,
        prev_id=prev_id,
    )


def put(
    who: Identity,
    value: object,
    t: int,
    prev: Oplog | None = None,
    resolves: tuple[Oplog, ...] = (),
    key: str = "k",
) -> Oplog:
    payload = put_payload(value, [r.oplog_id for r in resolves])
    return raw(who, payload, key=key_to_object(key), t=t, prev=prev)


def delete(
    who: Identity,
    t: int,
    prev: Oplog | None = None,
    resolves: tuple[Oplog, ...] = (),
    key: str = "k",
) -> Oplog:
    payload = delete_payload([r.oplog_id for r in resolves])
    return raw(who, payload, op=OP_DELETE, key=key_to_object(key), t=t, prev=prev)


def valid(*oplogs: Oplog) -> list[tuple[Oplog, OplogStatus]]:
    return [(o, VALID) for o in oplogs]


def state(entries: list[tuple[Oplog, OplogStatus]], key: str = "k", **kw: Any) -> DocState:
    s = derive(key, entries, **kw)
    assert s is not None
    return s


def ids(versions: tuple[Version, ...]) -> list[bytes]:
    return [v.oplog_id for v in versions]


# -- 1. keys, payloads and their strict decoding --------------------------------------------------


def test_doc_ops_and_keys() -> None:
    assert is_doc_op(OP_PUT) and is_doc_op(OP_DELETE)
    assert not is_doc_op(0) and not is_doc_op(3) and not is_doc_op(0x100)
    for key in ("k", "task/alice-1", "日本語のキー", "é" * 64, "x" * MAX_KEY_BYTES):
        assert key_to_object(key) == key.encode()
        assert object_to_key(key_to_object(key)) == key
    for bad in ("", "x" * (MAX_KEY_BYTES + 1), "é" * 65, "a\nb", "tab\t", "\x00", "\ud800"):
        with pytest.raises(UsageError):
            key_to_object(bad)
    for bad_ob in (b"", b"\xff", b"a\x00b", b"\xed\xa0\x80", b"x" * (MAX_KEY_BYTES + 1)):
        with pytest.raises(MalformedOplogError) as exc:
            object_to_key(bad_ob)
        assert exc.value.field == "ob"


def test_payload_builders() -> None:
    assert put_payload("v") == {"v": "v"}
    assert put_payload(None) == {"v": None}
    assert put_payload([1, {"a": b"x"}], [ID3, ID1, ID3]) == {
        "v": [1, {"a": b"x"}],
        "r": [ID1, ID3],
    }
    assert delete_payload() == {}
    assert delete_payload(iter([ID2, ID1])) == {"r": [ID1, ID2]}
    many = [bytes([i]) * 32 for i in range(MAX_RESOLVES)]
    assert put_payload(1, many + many)["r"] == many  # duplicates count once
    for bad in ([b"x" * 31], [b"x" * 33], ["x" * 32], [*many, b"\xff" * 32]):
        with pytest.raises(UsageError):
            put_payload(1, bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError):
            delete_payload(bad)  # type: ignore[arg-type]
    for not_plain in ({1, 2}, (1, 2), object(), 2**64, {"k": {None: 1}}):
        with pytest.raises(UsageError, match="plain CBOR"):
            put_payload(not_plain)


@pytest.mark.parametrize("resolves", [(), (ID1,), (ID3, ID1, ID2)])
@pytest.mark.parametrize("value", [0, "text", None, [1, 2.5, b"\x00"], {"done": True, "n": -3}])
def test_put_round_trips(resolves: tuple[bytes, ...], value: object) -> None:
    o = raw(A, put_payload(value, resolves), key="clé".encode(), prev=ID3 if not resolves else None)
    assert decode_doc_op(o) == DocOp("clé", OP_PUT, value, tuple(sorted(resolves)))
    v = version_of(o, VALID)
    assert (v.value, v.deleted, v.pending, v.resolves) == (
        value,
        False,
        False,
        tuple(sorted(resolves)),
    )
    assert (v.oplog_id, v.creator, v.create_time, v.prev_id) == (
        o.oplog_id,
        A.peer_id,
        NOW,
        o.prev_id,
    )
    assert version_of(o, PENDING).pending and version_of(o, INTERNAL).pending


@pytest.mark.parametrize("resolves", [(), (ID2,), (ID2, ID1)])
def test_delete_round_trips(resolves: tuple[bytes, ...]) -> None:
    o = raw(A, delete_payload(resolves), op=OP_DELETE, prev=ID3)
    assert decode_doc_op(o) == DocOp("k", OP_DELETE, None, tuple(sorted(resolves)))
    v = version_of(o, VALID)
    assert v.deleted and v.value is None and v.prev_id == ID3


MANY = [bytes([i]) * 32 for i in range(1, MAX_RESOLVES + 2)]


@pytest.mark.parametrize(
    ("op", "payload"),
    [
        (OP_PUT, {"v": 1, "x": 2}),  # an unknown field
        (OP_PUT, {"v": 1, 0: 2}),  # a non-text key
        (OP_PUT, {}),  # no value
        (OP_PUT, {"r": [ID1]}),  # resolves but no value
        (OP_PUT, 5),  # not a map
        (OP_PUT, [1]),
        (OP_DELETE, {"v": 1}),  # a delete has no value
        (OP_DELETE, {"r": [ID1], "v": None}),
        (OP_DELETE, None),
        (OP_PUT, {"v": 1, "r": []}),  # an empty resolves list is left out, not sent
        (OP_PUT, {"v": 1, "r": [ID2, ID1]}),  # unsorted
        (OP_PUT, {"v": 1, "r": [ID1, ID1]}),  # duplicated
        (OP_DELETE, {"r": [ID1, ID1]}),
        (OP_PUT, {"v": 1, "r": [b"\x01" * 31]}),  # wrong size
        (OP_DELETE, {"r": [b"\x01" * 33]}),
        (OP_PUT, {"v": 1, "r": ["x" * 32]}),  # not bytes
        (OP_PUT, {"v": 1, "r": ID1}),  # not a list
        (OP_PUT, {"v": 1, "r": MANY}),  # too many
        (OP_DELETE, {"r": MANY}),
        (OP_PUT, {"v": 1, "r": [ID1, ID3]}),  # names its own previous log
        (OP_DELETE, {"r": [ID3]}),
    ],
)
def test_malformed_payloads_are_refused(op: int, payload: object) -> None:
    o = raw(A, payload, op=op, prev=ID3)
    with pytest.raises(MalformedOplogError) as exc:
        decode_doc_op(o)
    assert exc.value.field == "d"
    with pytest.raises(MalformedOplogError):
        derive("k", [(o, VALID)])  # a malformed write of the key is an error, not ignored


def test_the_limits_themselves_are_accepted() -> None:
    o = raw(A, {"v": 1, "r": MANY[:MAX_RESOLVES]}, prev=MANY[-1])
    assert decode_doc_op(o).resolves == tuple(MANY[:MAX_RESOLVES])


def test_bad_key_non_doc_op_and_non_canonical_data_are_refused() -> None:
    for ob in (b"\xff\xfe", b"a\x07"):
        with pytest.raises(MalformedOplogError) as exc:
            decode_doc_op(raw(A, {"v": 1}, key=ob))
        assert exc.value.field == "ob"
    for op in (0, 3, 0x100):
        with pytest.raises(MalformedOplogError, match="not a document op"):
            decode_doc_op(raw(A, {"v": 1}, op=op))
    # {"v": 1} with the 1 in a longer form than needed: not canonical.
    o = dataclasses.replace(raw(A, {"v": 1}), data=b"\xa1\x61v\x18\x01")
    with pytest.raises(MalformedOplogError) as exc:
        decode_doc_op(o)
    assert exc.value.field == "d"


# -- 2. histories ---------------------------------------------------------------------------------


def test_no_version_gives_none_and_other_oplogs_are_ignored() -> None:
    other_key = put(A, 1, NOW, key="other")
    governance = raw(A, {"anything": True}, op=0x100)  # same object ID, not a document op
    assert derive("k", []) is None
    assert derive("k", [(other_key, VALID), (governance, VALID)]) is None
    p = put(A, "mine", NOW)
    s = state([(other_key, VALID), (governance, VALID), (p, VALID)])
    assert s.value == "mine" and ids(s.heads) == [p.oplog_id]
    with pytest.raises(UsageError):
        derive("", [(p, VALID)])


def test_single_put_update_chain_delete_and_resurrection() -> None:
    p1 = put(A, "one", NOW)
    s = state(valid(p1))
    assert (s.key, s.exists, s.value, s.pending, s.merged) == ("k", True, "one", False, False)
    assert s.version == version_of(p1, VALID)
    assert s.heads == (s.version,) and s.conflicts == () and s.pending_versions == ()
    assert not s.in_conflict

    p2 = put(B, "two", NOW + S, prev=p1)
    p3 = put(A, "three", NOW + 2 * S, prev=p2)
    s = state(valid(p1, p2, p3))
    assert s.value == "three" and ids(s.heads) == [p3.oplog_id] and not s.in_conflict

    d = delete(B, NOW + 3 * S, prev=p3)
    s = state(valid(p1, p2, p3, d))
    assert not s.exists and s.value is None and s.version.deleted
    assert s.version.oplog_id == d.oplog_id and ids(s.heads) == [d.oplog_id]

    p4 = put(C, "back", NOW + 4 * S, prev=d)
    s = state(valid(p1, p2, p3, d, p4))
    assert s.exists and s.value == "back" and ids(s.heads) == [p4.oplog_id]


def test_an_older_create_time_on_top_of_the_chain_still_wins() -> None:
    """Supersession follows the previous-log links, not the clocks."""
    p1 = put(A, "first", NOW + 10 * S)
    p2 = put(B, "second", NOW, prev=p1)  # B's clock is behind
    assert state(valid(p1, p2)).value == "second"


def test_concurrent_updates_conflict_and_the_later_one_wins() -> None:
    base = put(A, "base", NOW)
    early = put(A, "early", NOW + S, prev=base)
    late = put(B, "late", NOW + 2 * S, prev=base)
    s = state(valid(base, early, late))
    assert s.in_conflict and s.value == "late" and s.version.oplog_id == late.oplog_id
    assert ids(s.heads) == [late.oplog_id, early.oplog_id]
    assert s.conflicts == s.heads[1:] and ids(s.conflicts) == [early.oplog_id]
    assert s.conflicts[0].value == "early"  # the loser is kept, with its value


def test_a_create_time_tie_goes_to_the_larger_oplog_id() -> None:
    base = put(A, "base", NOW)
    x = put(A, "x", NOW + S, prev=base)
    y = put(B, "y", NOW + S, prev=base)
    hi, lo = (x, y) if x.oplog_id > y.oplog_id else (y, x)
    s = state(valid(base, x, y))
    assert ids(s.heads) == [hi.oplog_id, lo.oplog_id] and s.version.oplog_id == hi.oplog_id
    assert winner_key(s.heads[0]) > winner_key(s.heads[1])


def test_concurrent_creates_conflict() -> None:
    a = put(A, "from a", NOW + 5 * S)
    b = put(B, "from b", NOW + 3 * S)
    s = state(valid(a, b))
    assert s.in_conflict and s.value == "from a" and ids(s.conflicts) == [b.oplog_id]


def test_a_delete_can_win_or_lose_a_conflict() -> None:
    base = put(A, "base", NOW)
    d = delete(A, NOW + 2 * S, prev=base)
    p = put(B, "kept", NOW + S, prev=base)
    s = state(valid(base, d, p))
    assert not s.exists and s.value is None and s.in_conflict
    assert s.conflicts[0].value == "kept"
    p_later = put(B, "kept", NOW + 3 * S, prev=base)
    s = state(valid(base, d, p_later))
    assert s.exists and s.value == "kept" and s.conflicts[0].deleted


def test_a_resolving_write_ends_the_conflict() -> None:
    base = put(A, "base", NOW)
    x = put(A, "x", NOW + S, prev=base)
    y = put(B, "y", NOW + 2 * S, prev=base)
    z = put(C, "z", NOW + 3 * S)  # a concurrent create: a third head
    r = put(A, "all", NOW + 4 * S, prev=z, resolves=(x, y))
    s = state(valid(base, x, y, z, r))
    assert not s.in_conflict and s.value == "all" and ids(s.heads) == [r.oplog_id]

    # Only on the winner: the other heads stay in conflict.
    on_z = put(A, "on z", NOW + 4 * S, prev=z)
    s = state(valid(base, x, y, z, on_z))
    assert ids(s.heads) == [on_z.oplog_id, y.oplog_id, x.oplog_id]
    # Resolving some of them leaves the rest.
    partial = put(A, "partial", NOW + 5 * S, prev=z, resolves=(y,))
    s = state(valid(base, x, y, z, partial))
    assert ids(s.heads) == [partial.oplog_id, x.oplog_id]
    # A resolving delete works the same way.
    rd = delete(B, NOW + 6 * S, prev=z, resolves=(x, y))
    s = state(valid(base, x, y, z, rd))
    assert not s.exists and not s.in_conflict and ids(s.heads) == [rd.oplog_id]


def test_a_resolve_naming_an_unknown_or_pending_version_supersedes_nothing_else() -> None:
    base = put(A, "base", NOW)
    x = put(A, "x", NOW + S, prev=base)
    y = put(B, "y", NOW + 2 * S, prev=base)
    r = put(C, "r", NOW + 3 * S, prev=y, resolves=(x,))
    # r is pending: x and y are still the valid heads, r shows on top.
    s = state([*valid(base, x, y), (r, PENDING)])
    assert ids(s.heads) == [y.oplog_id, x.oplog_id] and s.pending and s.value == "r"
    # r valid before x arrives: x is superseded the moment it arrives.
    assert ids(state(valid(base, y, r)).heads) == [r.oplog_id]
    assert ids(state(valid(base, x, y, r)).heads) == [r.oplog_id]


# -- 3. the pending overlay -----------------------------------------------------------------------


def test_pending_write_shows_on_top_and_its_rollback_shows_the_previous_value() -> None:
    v1 = put(A, "v1", NOW)
    w = put(B, "v2", NOW + S, prev=v1)
    s = state([(v1, VALID), (w, PENDING)])
    assert s.pending and s.exists and s.value == "v2"
    assert s.version == version_of(w, PENDING) and s.version.pending
    assert ids(s.heads) == [v1.oplog_id] and ids(s.pending_versions) == [w.oplog_id]
    assert not s.in_conflict

    rolled_back = state([(v1, VALID)])
    assert not rolled_back.pending and rolled_back.value == "v1"
    confirmed = state([(v1, VALID), (w, VALID)])
    assert not confirmed.pending and confirmed.value == "v2" and confirmed.pending_versions == ()
    # A device-quorum wait is pending too.
    assert state([(v1, VALID), (w, INTERNAL)]) == s


def test_pending_delete_and_pending_create() -> None:
    v1 = put(A, "v1", NOW)
    d = delete(B, NOW + S, prev=v1)
    s = state([(v1, VALID), (d, PENDING)])
    assert s.pending and not s.exists and s.value is None and s.version.deleted

    new = put(B, "new", NOW, key="fresh")
    s = state([(new, PENDING)], key="fresh")
    assert s.pending and s.exists and s.value == "new"
    assert s.heads == () and s.conflicts == () and not s.in_conflict
    assert ids(s.pending_versions) == [new.oplog_id]


def test_the_newest_pending_write_shows_even_in_a_conflict() -> None:
    base = put(A, "base", NOW)
    x = put(A, "x", NOW + S, prev=base)
    y = put(B, "y", NOW + 2 * S, prev=base)
    p_old = put(C, "p old", NOW + 3 * S, prev=y)
    p_new = put(C, "p new", NOW + 4 * S, prev=p_old)
    calls: list[str] = []

    def resolver(key: str, heads: tuple[Version, ...]) -> Version | Merged:
        calls.append(key)
        return Merged("merged")

    for r in (None, resolver):
        s = state([*valid(base, x, y), (p_old, PENDING), (p_new, INTERNAL)], resolver=r)
        assert s.pending and s.value == "p new" and not s.merged
        assert ids(s.pending_versions) == [p_new.oplog_id, p_old.oplog_id]
        assert s.in_conflict and ids(s.heads) == [y.oplog_id, x.oplog_id]
    assert calls == []  # what it would choose is not shown while a pending write is


# -- 4. resolvers ---------------------------------------------------------------------------------


def _fork() -> tuple[list[tuple[Oplog, OplogStatus]], Oplog, Oplog, Oplog]:
    base = put(A, ["milk"], NOW)
    x = put(A, ["milk", "eggs"], NOW + S, prev=base)
    y = put(B, ["bread"], NOW + 2 * S, prev=base)
    z = delete(C, NOW + 3 * S, prev=base)
    return valid(base, x, y, z), x, y, z


def test_a_resolver_picking_a_head() -> None:
    entries, x, y, z = _fork()
    seen: list[tuple[str, tuple[Version, ...]]] = []

    def oldest(key: str, heads: tuple[Version, ...]) -> Version | Merged:
        seen.append((key, heads))
        return min(heads, key=winner_key)

    s = state(entries, resolver=oldest)
    assert len(seen) == 1 and seen[0] == ("k", s.heads)
    assert s.value == ["milk", "eggs"] and s.version.oplog_id == x.oplog_id and s.exists
    assert not s.merged and not s.pending
    assert ids(s.heads) == [z.oplog_id, y.oplog_id, x.oplog_id]  # the default order, unchanged
    assert s.conflicts == s.heads[1:]
    # An equal copy of a head will do; the shown value follows the head chosen.
    copy = state(entries, resolver=lambda k, h: dataclasses.replace(h[1]))
    assert copy.version == copy.heads[1] and copy.value == ["bread"]
    assert not state(entries).exists  # without the resolver: the delete, the latest


def test_a_merged_resolver() -> None:
    entries, _x, _y, z = _fork()

    def union(key: str, heads: tuple[Version, ...]) -> Version | Merged:
        return Merged(sorted({item for v in heads if not v.deleted for item in v.value}))

    s = state(entries, resolver=union)
    assert s.merged and s.exists and s.value == ["bread", "eggs", "milk"]
    assert s.version.oplog_id == z.oplog_id  # the default winner
    assert s.in_conflict and len(s.conflicts) == 2

    tomb = state(entries, resolver=lambda k, h: Merged("ignored", deleted=True))
    assert tomb.merged and not tomb.exists and tomb.value is None


def test_a_resolver_returning_anything_else_is_a_usage_error() -> None:
    entries, *_ = _fork()
    base_version = version_of(entries[0][0], VALID)  # superseded: not a head
    bad: list[Any] = ["nonsense", None, base_version, (entries[1][0],)]
    for answer in bad:

        def resolver(key: str, heads: tuple[Version, ...], answer: Any = answer) -> Any:
            return answer

        with pytest.raises(UsageError, match="resolver"):
            derive("k", entries, resolver)


def test_a_resolver_is_not_asked_without_a_conflict() -> None:
    def boom(key: str, heads: tuple[Version, ...]) -> Version | Merged:
        raise AssertionError("asked")

    p1 = put(A, "one", NOW)
    p2 = put(B, "two", NOW + S, prev=p1)
    assert state(valid(p1, p2), resolver=boom).value == "two"
    assert state([(p1, PENDING)], resolver=boom).value == "one"
    assert derive("k", [], boom) is None


# -- 5. the result depends only on the set given --------------------------------------------------


def random_history(rng: random.Random) -> list[tuple[Oplog, OplogStatus]]:
    """~30 writes of one key by three writers: forks, resolving writes, deletes, pendings."""
    made: list[Oplog] = []
    entries: list[tuple[Oplog, OplogStatus]] = []
    for i in range(30):
        who = rng.choice((A, B, C))
        t = NOW + rng.randrange(12) * S  # ties are common
        prev = rng.choice(made) if made and rng.random() < 0.85 else None
        others = [o for o in made if o is not prev]
        resolves = tuple(rng.sample(others, min(len(others), rng.randint(1, 3))))
        if rng.random() >= 0.25:
            resolves = ()
        if rng.random() < 0.2:
            o = delete(who, t, prev, resolves)
        else:
            o = put(who, [f"item{i}", f"by-{rng.choice('abc')}"], t, prev, resolves)
        made.append(o)
        status = VALID if rng.random() < 0.8 else rng.choice((PENDING, INTERNAL))
        entries.append((o, status))
    return entries


def union_resolver(key: str, heads: tuple[Version, ...]) -> Version | Merged:
    return Merged(sorted({item for v in heads if not v.deleted for item in v.value}))


def check_invariants(s: DocState, entries: list[tuple[Oplog, OplogStatus]]) -> None:
    """Checked against a direct reading of the rules: nothing valid is dropped silently."""
    valid_ids = {o.oplog_id for o, st in entries if st is VALID}
    pending_ids = {o.oplog_id for o, st in entries if st is not VALID} - valid_ids
    by_id = {o.oplog_id: decode_doc_op(o) for o, _ in entries}
    named = {o.prev_id for o, st in entries if st is VALID}
    named |= {r for o, st in entries if st is VALID for r in by_id[o.oplog_id].resolves}
    assert set(ids(s.heads)) == valid_ids - named
    assert list(s.heads) == sorted(s.heads, key=winner_key, reverse=True)
    assert s.conflicts == s.heads[1:]
    assert ids(s.pending_versions) == ids(
        tuple(sorted(s.pending_versions, key=winner_key, reverse=True))
    )
    assert set(ids(s.pending_versions)) == pending_ids
    assert s.pending == bool(pending_ids)
    assert all(v.pending for v in s.pending_versions) and not any(v.pending for v in s.heads)


@pytest.mark.parametrize("seed", range(6))
def test_derive_depends_only_on_the_set_given(seed: int) -> None:
    rng = random.Random(seed)
    entries = random_history(rng)
    reference = state(entries)
    merged_reference = state(entries, resolver=union_resolver)
    check_invariants(reference, entries)

    # Copies that must change nothing: exact duplicates, a pending copy of a valid oplog, a
    # co-signed copy (another update time and hash), and oplogs that are not this document's.
    valid_ones = [o for o, st in entries if st is VALID]
    extras: list[tuple[Oplog, OplogStatus]] = rng.sample(entries, 5)
    extras += [(o, rng.choice((PENDING, INTERNAL))) for o in rng.sample(valid_ones, 3)]
    extras += [(cosign(o, MASTER, SignKind.MASTER, NOW + 60 * S), VALID) for o in valid_ones[:3]]
    extras += [(put(A, ["x"], NOW, key="elsewhere"), VALID), (raw(B, 1, op=0x101), VALID)]
    pending_ones = [o for o, st in entries if st is not VALID]
    if pending_ones:  # a pending oplog confirmed, whatever the order its copies come in
        extras += [(cosign(pending_ones[0], MASTER, SignKind.MASTER, NOW + 61 * S), VALID)]
        confirmed = [*entries, (pending_ones[0], VALID)]
        confirmed_reference = state(confirmed)
        check_invariants(confirmed_reference, confirmed)
        assert pending_ones[0].oplog_id not in ids(confirmed_reference.pending_versions)

    everything = entries + extras
    expected = state(everything)
    if not pending_ones:
        assert expected == reference
    mine = [(o, st) for o, st in extras if o.object_id == b"k" and o.op in (OP_PUT, OP_DELETE)]
    check_invariants(expected, [*entries, *mine])
    for _ in range(20):
        perm = rng.sample(everything, len(everything))
        assert state(perm) == expected
        assert state(perm, resolver=union_resolver).value == (
            state(everything, resolver=union_resolver).value
        )
    for _ in range(10):
        perm = rng.sample(entries, len(entries))
        assert state(perm) == reference
        assert state(perm, resolver=union_resolver) == merged_reference


def test_random_histories_cover_the_interesting_cases() -> None:
    """The order-independence test above is only as good as its histories."""
    states = [state(random_history(random.Random(seed))) for seed in range(6)]
    assert any(s.in_conflict for s in states)
    assert any(s.pending for s in states)
    assert any(v.deleted for s in states for v in (*s.heads, *s.pending_versions))
    assert any(v.resolves for s in states for v in (*s.heads, *s.pending_versions))


def test_duplicate_copies_keep_the_higher_status_then_the_smaller_update_time_and_hash() -> None:
    v1 = put(A, "v1", NOW)
    w = put(B, "v2", NOW + S, prev=v1)
    signed = cosign(w, MASTER, SignKind.MASTER, NOW + 9 * S)
    assert signed.oplog_id == w.oplog_id and signed.hash != w.hash
    for entries in (
        [(v1, VALID), (w, PENDING), (signed, VALID)],
        [(signed, VALID), (v1, VALID), (w, PENDING)],
        [(w, INTERNAL), (signed, PENDING), (v1, VALID), (w, VALID)],
    ):
        s = state(entries)
        assert not s.pending and s.value == "v2" and s.pending_versions == ()
    s = state([(v1, VALID), (w, INTERNAL), (signed, PENDING)])
    assert s.pending and ids(s.pending_versions) == [w.oplog_id]
