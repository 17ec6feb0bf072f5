"""The seen-cache (net/seen.py): checked against a plain model of what it promises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.net.seen import MAX_COPIES, SeenCache

PEERS = [bytes([i]) * 32 for i in range(6)]
IDS = [bytes([0x80 + i]) * 32 for i in range(8)]
HASHES = [b"h%d" % i * 16 for i in range(6)]  # more copies than MAX_COPIES

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), st.sampled_from(IDS), st.sampled_from(HASHES), st.sampled_from(PEERS)
        ),
        st.tuples(
            st.just("discard"),
            st.sampled_from(IDS),
            st.sampled_from(HASHES),
            st.sampled_from(PEERS),
        ),
        st.tuples(st.just("forget"), st.sampled_from(PEERS)),
        st.tuples(st.just("touch"), st.sampled_from(IDS), st.sampled_from(HASHES)),
    ),
    max_size=300,
)


@settings(max_examples=300)
@given(ops)
def test_the_cache_keeps_what_the_model_keeps(steps: list[tuple[object, ...]]) -> None:
    """The model: per oplog ID, its copies newest first (at most MAX_COPIES), the
    oldest oplog dropped beyond the bound, and a forgotten peer holding nothing it
    was said to hold before."""
    cache = SeenCache(4, spare_slots=1)  # renumbered often
    model: dict[bytes, list[tuple[bytes, set[bytes]]]] = {}

    def entry(oid: bytes, h: bytes) -> set[bytes]:
        copies = model.get(oid, [])
        for copy_hash, held in copies:
            if copy_hash == h:
                return held
        model[oid] = [(h, set()), *copies[: MAX_COPIES - 1]]
        while len(model) > 4:
            del model[next(iter(model))]
        return model[oid][0][1]

    for step in steps:
        match step:
            case ("add", oid, h, peer):
                cache.holders((oid, h)).add(peer)  # type: ignore[arg-type]
                entry(oid, h).add(peer)  # type: ignore[arg-type]
            case ("discard", oid, h, peer):
                cache.holders((oid, h)).discard(peer)  # type: ignore[arg-type]
                entry(oid, h).discard(peer)  # type: ignore[arg-type]
            case ("forget", peer):
                cache.forget_peer(peer)  # type: ignore[arg-type]
                for copies in model.values():
                    for _, held in copies:
                        held.discard(peer)
            case ("touch", oid, h):
                cache.holders((oid, h))  # type: ignore[arg-type]
                entry(oid, h)  # type: ignore[arg-type]
        assert len(cache) == len(model)
        keys = [(oid, h) for oid in IDS for h in HASHES]
        for peer in PEERS:
            assert cache.not_held_by(peer, keys) == [
                oid for oid, h in keys if peer not in dict(model.get(oid, [])).get(h, set())
            ]
        for oid in IDS:
            for h in HASHES:
                got = cache.get((oid, h))
                want = dict(model.get(oid, [])).get(h)
                if want is None:
                    assert got is None
                else:
                    assert got is not None
                    assert {p for p in PEERS if p in got} == want


def test_slots_are_renumbered_as_peers_come_and_go() -> None:
    """A peer that reconnects a thousand times leaves every mask as short as the
    peers connected, and the holders it had before each reconnection do not count."""
    cache = SeenCache(100)
    steady = PEERS[0]
    cache.holders((IDS[0], HASHES[0])).add(steady)
    for i in range(1000):
        flaky = PEERS[1]
        cache.holders((IDS[1], HASHES[0])).add(flaky)
        assert flaky in cache.holders((IDS[1], HASHES[0]))
        cache.forget_peer(flaky)
        assert flaky not in cache.holders((IDS[1], HASHES[0]))
        passing = b"p" * 28 + i.to_bytes(4, "big")  # a stream of other peers, each once
        cache.slot(passing)
        cache.forget_peer(passing)
    held = cache.get((IDS[0], HASHES[0]))
    assert held is not None and steady in held
    cache.holders((IDS[0], HASHES[1])).mark_valid()  # a second copy, held valid here
    assert cache.valid_here(IDS[0]) and not cache.valid_here(IDS[1])
    assert steady in cache.holders((IDS[0], HASHES[0]))  # the first copy is kept
    assert held.mask.bit_length() <= 70 and cache._next_slot <= 70


def test_a_holder_added_while_the_slots_are_renumbered_keeps_the_others() -> None:
    """Was: `add` read its mask, then took a slot (which renumbered every mask), and
    wrote the old mask back: a live peer whose slot moved lost what it held."""
    cache = SeenCache(8, spare_slots=0)
    a, b, c = PEERS[:3]
    cache.holders((IDS[1], HASHES[0])).add(b)  # b: slot 0
    cache.holders((IDS[0], HASHES[0])).add(a)  # a: slot 1
    cache.forget_peer(b)
    cache.holders((IDS[0], HASHES[0])).add(c)  # renumbers: a moves to slot 0
    held = cache.get((IDS[0], HASHES[0]))
    assert held is not None and a in held and c in held and b not in held


def test_an_announcer_is_noted_on_the_copy_held_as_valid_only() -> None:
    cache = SeenCache(8)
    cache.held_by(b"x" * 32, b"A" * 32)  # not in the cache: nothing to note it on
    assert cache.get((b"x" * 32, b"pending")) is None
    pending = cache.holders((b"x" * 32, b"pending"))
    valid = cache.holders((b"x" * 32, b"valid"))
    cache.held_by(b"x" * 32, b"A" * 32)
    assert b"A" * 32 not in valid  # not held here as valid yet
    valid.mark_valid()
    cache.held_by(b"x" * 32, b"A" * 32)
    assert b"A" * 32 in valid and b"A" * 32 not in pending


@settings(max_examples=300)
@given(
    ops,
    st.lists(st.sampled_from(IDS), max_size=12),
    st.sampled_from(PEERS),
    st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(HASHES)), max_size=8),
)
def test_lacking_is_held_by_of_each_id(
    steps: list[tuple[object, ...]],
    announced: list[bytes],
    announcer: bytes,
    valid: list[tuple[bytes, bytes]],
) -> None:
    """`lacking` (an announcement's IDs at once) answers and notes what `held_by`,
    asked of each ID in turn, does; slots renumbered often, copies held as valid."""
    one, other = SeenCache(4, spare_slots=1), SeenCache(4, spare_slots=1)
    for cache in (one, other):
        for step in steps:
            match step:
                case ("add", oid, h, peer):
                    cache.holders((oid, h)).add(peer)  # type: ignore[arg-type]
                case ("discard", oid, h, peer):
                    cache.holders((oid, h)).discard(peer)  # type: ignore[arg-type]
                case ("forget", peer):
                    cache.forget_peer(peer)  # type: ignore[arg-type]
                case ("touch", oid, h):
                    cache.holders((oid, h))  # type: ignore[arg-type]
        for key in valid:
            cache.holders(key).mark_valid()
    assert one.lacking(announcer, announced) == [
        oid for oid in announced if not other.held_by(oid, announcer)
    ]
    for oid in IDS:
        for h in HASHES:
            a, b = one.get((oid, h)), other.get((oid, h))
            assert (a is None) == (b is None)
            if a is not None and b is not None:
                assert {p for p in PEERS if p in a} == {p for p in PEERS if p in b}
