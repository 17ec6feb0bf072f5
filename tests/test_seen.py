"""The seen-cache (net/seen.py): checked against a plain model of what it promises."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pttsync.net.seen import SeenCache

PEERS = [bytes([i]) * 32 for i in range(6)]
IDS = [bytes([0x80 + i]) * 32 for i in range(8)]
HASHES = [b"h1" * 16, b"h2" * 16]

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
    """The model: one entry per oplog ID (a new copy replaces it, as the newest),
    the oldest dropped beyond the bound, and a forgotten peer holding nothing it was
    said to hold before."""
    cache = SeenCache(4)
    model: dict[bytes, tuple[bytes, set[bytes]]] = {}

    def entry(oid: bytes, h: bytes) -> set[bytes]:
        got = model.get(oid)
        if got is None or got[0] != h:
            model.pop(oid, None)
            model[oid] = (h, set())
            while len(model) > 4:
                del model[next(iter(model))]
        return model[oid][1]

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
                for _, held in model.values():
                    held.discard(peer)
            case ("touch", oid, h):
                cache.holders((oid, h))  # type: ignore[arg-type]
                entry(oid, h)  # type: ignore[arg-type]
        assert len(cache) == len(model)
        for oid in IDS:
            for h in HASHES:
                got = cache.get((oid, h))
                want = model.get(oid)
                if want is None or want[0] != h:
                    assert got is None
                else:
                    assert got is not None
                    assert {p for p in PEERS if p in got} == want[1]


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
    assert held.mask.bit_length() <= 70 and cache._next_slot <= 70
