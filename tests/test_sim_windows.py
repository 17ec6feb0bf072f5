"""The lockstep's windows without trio (sim/lockstep.py), and its wire (sim/bridge.py).

Two `Lockstep`s are paired directly by queues in one thread: a test plays
both processes by hand, so what one may run before it must wait is read
off exactly.  A blocking read with nothing to come is a wait: the bridge
raises `Waited` instead of blocking.
"""

from __future__ import annotations

import math
import pickle
import queue
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pttsync.sim import bridge
from pttsync.sim.bridge import NOTHING, SocketBridge
from pttsync.sim.lockstep import DONE, GRID, SLACK, Lockstep

if TYPE_CHECKING:
    from collections.abc import Callable

L = 0.005  # the lookahead
W = L / GRID  # a window


class Waited(Exception):
    """The lockstep would have blocked for the other process."""


class Wire:
    """One end of two queues; a blocking read of nothing raises `Waited`."""

    def __init__(self, out: queue.SimpleQueue[Any], inn: queue.SimpleQueue[Any]) -> None:
        self.out, self.inn = out, inn

    def send(self, obj: Any) -> None:
        self.out.put(obj)

    def recv(self, block: bool) -> Any:
        try:
            return self.inn.get_nowait()
        except queue.Empty:
            if block:
                raise Waited from None
            return NOTHING

    def flush(self, gone: Callable[[Any], bool]) -> None:
        pass

    def drop_output(self) -> None:
        pass


def pair() -> tuple[Lockstep, Lockstep, list[list[tuple[float, Any]]]]:
    """Parts 0 and 1, and what part 0 was handed, a list per hand-over."""
    a: queue.SimpleQueue[Any] = queue.SimpleQueue()
    b: queue.SimpleQueue[Any] = queue.SimpleQueue()
    first, second = Lockstep(Wire(a, b), 0, L), Lockstep(Wire(b, a), 1, L)
    handed: list[list[tuple[float, Any]]] = []
    first.deliver = handed.append
    second.deliver = lambda items: None
    return first, second, handed


def test_the_first_window_runs_a_lookahead_unasked() -> None:
    first, _, _ = pair()
    assert first.window_end == pytest.approx(L - SLACK)
    assert not first.due(L / 2) and first.due(L)


def test_a_process_runs_up_to_a_lookahead_past_the_others_next_wake_up() -> None:
    first, second, _ = pair()
    second.report(0.100)  # its next wake-up: nothing of it comes before 0.1 s + L
    first.barrier(1.0)
    assert first.window_end == pytest.approx(0.100 + L - SLACK)
    with pytest.raises(Waited):  # and no further without word from it
        first.barrier(1.0)


def test_an_idle_stretch_is_crossed_at_once() -> None:
    first, second, _ = pair()
    second.report(10.0)
    first.barrier(10.0)  # both wake next at 10 s: straight to the window of 10 s
    assert first.window_end - W <= 10.0 < first.window_end
    assert first.barriers == 1


def test_two_idle_processes_with_nothing_on_the_way_have_an_endless_window() -> None:
    first, second, _ = pair()
    second.report(math.inf)
    first.barrier(math.inf)
    assert math.isinf(first.window_end)


def test_something_on_its_way_keeps_the_window_finite() -> None:
    """Both idle, but an item of the first's is on its way to the second: what it
    makes the second send may come back, so the first must not run past it."""
    first, second, _ = pair()
    first.post(0.040, "frame")
    second.report(math.inf)  # sent before it took the frame: its end is 5 ms
    first.barrier(math.inf)
    assert first.window_end == pytest.approx(0.040 + L - SLACK)


def test_items_are_handed_over_by_arrival_time_in_the_senders_order() -> None:
    first, second, handed = pair()
    second.post(0.020, "x")
    second.post(0.020, "y")
    second.post(0.011, "z")
    second.report(1.0)
    first.barrier(1.0)
    assert handed == [[(0.011, "z")]]  # the first item's window, no further
    assert first.window_end - W <= 0.011 < first.window_end
    first.barrier(1.0)
    assert handed[1:] == [[(0.020, "x"), (0.020, "y")]]


def test_a_post_sooner_than_the_lookahead_is_a_bug() -> None:
    first, _, _ = pair()
    with pytest.raises(AssertionError, match="crosses sooner"):
        first.post(L / 2, "too soon")


def test_samples_are_swapped_past_the_reports_between() -> None:
    first, second, _ = pair()
    second.report(0.5)  # a report before its share: taken on the way
    second._send(("s", "its share"))
    assert first.exchange("mine") == "its share"
    first.barrier(1.0)
    assert first.window_end == pytest.approx(0.5 + L - SLACK)


def test_an_ended_process_frees_the_other() -> None:
    first, second, handed = pair()
    second.post(0.300, "last")
    second.finish()
    first.barrier(1.0)  # its last item's window, then nothing bounds it
    assert handed == [[(0.300, "last")]]
    first.barrier(1.0)
    assert first.window_end > 1.0
    assert first.exchange("mine") == DONE


# -- the wire ------------------------------------------------------------------------------


def test_neither_end_blocks_sending_however_much_is_unread() -> None:
    """Both ends send far more than a socket holds and read nothing: a blocking send
    would wait for ever; then each reads all of the other's, in order."""
    left, right = socket.socketpair()
    a, b = SocketBridge(left), SocketBridge(right)
    big = b"x" * 100_000
    for n in range(40):  # 4 MB each way
        a.send((n, big))
        b.send((n, big))
    done: list[int] = []

    def drain(end: SocketBridge) -> None:
        done.extend(end.recv(True)[0] for _ in range(40))

    reader = threading.Thread(target=drain, args=(b,))
    reader.start()
    a.flush(lambda message: False)  # writes what it kept while the other reads
    reader.join(timeout=30)
    assert done == list(range(40))
    got: list[int] = []
    deadline = time.monotonic() + 30  # a bug must fail, not hang the suite
    while len(got) < 40 and time.monotonic() < deadline:
        b._write()  # its kept bytes, as its next send or wait would
        item = a.recv(False)
        if item is not NOTHING:
            got.append(item[0])
    assert got == list(range(40))
    assert a.recv(False) is NOTHING
    left.close()
    right.close()


def test_a_closed_end_reads_as_the_end() -> None:
    left, right = socket.socketpair()
    a = SocketBridge(left)
    right.sendall(len(pickle.dumps("last")).to_bytes(4, "big") + pickle.dumps("last"))
    right.close()
    assert a.recv(True) == "last"
    with pytest.raises(EOFError):
        a.recv(True)
    left.close()


def test_every_whole_message_before_the_end_is_read_then_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The messages that came before the other end closed come first, even when the
    read that brings the last of them fills its chunk, so that the same call reads
    the end too (a chunk of 16 bytes here, of 1 MB in a run)."""
    monkeypatch.setattr(bridge, "_CHUNK", 16)
    left, right = socket.socketpair()
    a = SocketBridge(left)
    frames = [pickle.dumps(("d", b"x" * n)) for n in range(40, 56)]
    frame = next(f for f in frames if (len(f) + 4) % 16 == 0)  # whole chunks, no less
    right.sendall(len(frame).to_bytes(4, "big") + frame)
    right.close()
    assert a.recv(False) == pickle.loads(frame)  # all there already: no wait, no hang
    with pytest.raises(EOFError):
        a.recv(False)
    left.close()


def test_the_other_gone_after_its_end_is_no_break() -> None:
    """Once the other has said its run ended (each process does at its checks), it may
    exit: this one runs its stop alone, reading nothing more, and is not broken."""
    left, right = socket.socketpair()
    first, second = Lockstep(SocketBridge(left), 0, L), Lockstep(SocketBridge(right), 1, L)
    first.deliver = lambda items: None
    second.post(0.300, "last")
    second.finish()
    right.close()  # its process exits

    def runs_on() -> None:
        first.barrier(1.0)
        first.barrier(2.0)
        first.report(3.0)
        first.finish()

    alone = threading.Thread(target=runs_on, daemon=True)  # a hang must not hold the exit
    alone.start()
    alone.join(timeout=30)  # a bug must fail, not hang the suite
    assert not alone.is_alive()
    assert first.other_finished and not first.broken
    assert first.window_end > 2.0
    left.close()


def test_two_processes_ending_at_once_with_much_to_send_both_end() -> None:
    """Each ends with megabytes unsent (a stop closes every crossing connection at
    once) while the other, ending too, no longer reads: each stops writing once the
    other says it ended, rather than wait for ever for room."""
    left, right = socket.socketpair()
    ends = [Lockstep(SocketBridge(left), 0, L), Lockstep(SocketBridge(right), 1, L)]
    for end in ends:
        for n in range(100_000):
            end.post(1.0, ("frame", n, b"x" * 40))
    threads = [threading.Thread(target=end.finish) for end in ends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert [end.broken for end in ends] == [False, False]
    left.close()
    right.close()


# -- a stop while waiting (bridge.py's `interrupted`) -------------------------------------


def test_a_wait_gives_up_once_interrupted_but_what_came_is_read_first() -> None:
    left, right = socket.socketpair()
    a = SocketBridge(left, interrupted=lambda: True)
    right.sendall(len(pickle.dumps("came")).to_bytes(4, "big") + pickle.dumps("came"))
    assert a.recv(True) == "came"  # no wait needed: read, stop or not
    raised: list[BaseException] = []

    def waits() -> None:
        try:
            a.recv(True)
        except BaseException as exc:  # checked below
            raised.append(exc)

    waiting = threading.Thread(target=waits, daemon=True)  # a hang must not hold the exit
    waiting.start()
    waiting.join(timeout=30)  # a bug must fail, not hang the suite
    assert not waiting.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], bridge.Interrupted), raised
    assert a.recv(False) is NOTHING  # a read that does not wait is not given up
    left.close()
    right.close()


def test_a_stop_ends_a_wait_for_a_hung_process_and_nothing_waits_after_it() -> None:
    """The other process hangs (it sends nothing, ever): the barrier waits for it until
    the stop, then ends the run (`on_broken`), and neither a report, an exchange nor
    the end waits again.  Was: the wait was a `poll` with no timeout, which a signal's
    handler could not end: SIGTERM and ^C left a split run hung with its other process."""
    left, right = socket.socketpair()
    stop = threading.Event()
    first = Lockstep(SocketBridge(left, interrupted=stop.is_set), 0, L)
    ended: list[bool] = []
    first.on_broken = lambda: ended.append(True)
    waiting = threading.Event()
    wait = first.bridge._wait  # type: ignore[attr-defined]

    def noted() -> None:
        waiting.set()
        wait()

    first.bridge._wait = noted  # type: ignore[attr-defined]

    exchanged: list[Any] = []

    def runs() -> None:
        first.barrier(1.0)
        first.report(2.0)
        exchanged.append(first.exchange("sample"))
        first.finish()

    hung = threading.Thread(target=runs, daemon=True)  # a hang must not hold the exit
    hung.start()
    assert waiting.wait(timeout=30)
    assert hung.is_alive()  # it waits for the other, as it should
    stop.set()
    hung.join(timeout=30)  # a bug must fail, not hang the suite
    assert not hung.is_alive()
    assert ended == [True] and first.broken
    assert math.isinf(first.window_end)
    assert exchanged == [DONE]
    left.close()
    right.close()


def test_a_stopped_end_drops_what_a_hung_process_does_not_read() -> None:
    """Its run stopped, a process ends its side with megabytes unsent to another that
    reads nothing and says nothing: it gives them up rather than wait for ever."""
    left, right = socket.socketpair()
    stop = threading.Event()
    end = Lockstep(SocketBridge(left, interrupted=stop.is_set), 0, L)
    for n in range(100_000):
        end.post(1.0, ("frame", n, b"x" * 40))
    stop.set()
    ending = threading.Thread(target=end.finish, daemon=True)
    ending.start()
    ending.join(timeout=30)
    assert not ending.is_alive()
    left.close()
    right.close()
