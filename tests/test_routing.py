"""The push mesh and the distance to the nearest master (net/routing.py), sans-I/O."""

from __future__ import annotations

import random

from pttsync.net.routing import MAX_HOPS, Routes

A, B, C, D, E = (bytes([i]) * 32 for i in range(1, 6))


def routes(mesh: int = 3) -> Routes:
    return Routes(mesh, random.Random(1))


def test_the_first_peers_fill_the_mesh_and_a_link_is_in_it_if_either_end_picked_it() -> None:
    r = routes(2)
    for p in (A, B, C):
        r.add(p)
    assert r.in_mesh(A) and r.in_mesh(B) and not r.in_mesh(C)
    r.heard(C, MAX_HOPS, mesh=True)  # C picked us
    assert r.in_mesh(C)
    assert sorted(r.mesh()) == [A, B, C]
    assert not r.in_mesh(D)  # not connected


def test_a_lost_mesh_peer_is_replaced_preferring_a_link_not_yet_in_the_mesh() -> None:
    r = routes(2)
    for p in (A, B, C, D):
        r.add(p)
    r.heard(C, MAX_HOPS, mesh=True)  # already a mesh link by C's choice
    r.remove(A)
    assert r.in_mesh(D) and r.in_mesh(B)  # D picked: C was in the mesh anyway
    news = {p: mesh for p, _hops, mesh in r.news()}
    assert news[D] is True and news[B] is True and news[C] is False


def test_no_mesh_means_every_peer() -> None:
    r = routes(0)
    r.add(A)
    assert r.in_mesh(A) and r.in_mesh(E)
    assert r.news() == [(A, MAX_HOPS, False)]


def test_hops_count_one_more_than_the_nearest_peer_and_zero_for_a_master() -> None:
    r = routes()
    assert r.hops() == MAX_HOPS  # alone: no master known
    for p in (A, B, C):
        r.add(p)
    r.heard(A, 3, mesh=False)
    r.heard(B, 1, mesh=False)
    r.heard(C, MAX_HOPS, mesh=False)
    assert r.hops() == 2
    assert r.downhill() == [B]  # A (3) is not nearer than us (2)
    r.heard(A, 0, mesh=False)
    assert r.hops() == 1 and r.downhill() == [A]
    r.set_master(True)
    assert r.hops() == 0 and r.downhill() == []
    r.heard(B, 99, mesh=False)  # capped
    r.set_master(False)
    r.remove(A)
    assert r.hops() == MAX_HOPS


def test_news_tells_each_peer_once_and_again_after_a_failed_send() -> None:
    r = routes(1)
    r.add(A)
    r.add(B)
    assert sorted(r.news()) == [(A, MAX_HOPS, True), (B, MAX_HOPS, False)]
    assert r.news() == []  # nothing changed
    r.heard(A, 0, mesh=True)
    assert sorted(r.news()) == [(A, 1, True), (B, 1, False)]  # our distance changed
    r.untold(B)
    assert r.news() == [(B, 1, False)]
    r.untold(E)  # an unknown peer: nothing
    assert r.news() == []
