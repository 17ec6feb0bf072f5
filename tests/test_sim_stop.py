"""Stopping a simulation from outside: `Stopper` (sim/stopper.py), SIGTERM and ^C on the CLI.

Was: SIGTERM reached the run as Ctrl-C does, raised wherever trio's code
happened to be.  Where that was a garbage collector's callback, Python printed
"Exception ignored" and the run went on to its end (47 s more for 300 peers;
38 min for 10,000); started with `&` (SIGINT ignored), the process once ended
with no word.  Both depended on where the signal landed, so the subprocess test
below does not fail every time on the old code: the `Stopper` tests pin down
the mechanism that replaced it, which adds nothing to the run until it is used.
"""

from __future__ import annotations

import multiprocessing
import select
import signal
import subprocess
import sys
import threading
import time

import pytest

from pttsync.errors import SimulationError
from pttsync.sim.plan import SimConfig, make_plan
from pttsync.sim.run import Second, run_plan
from pttsync.sim.stopper import Stopped, Stopper
from pttsync.sim.world import Progress

SMALL = SimConfig(peers=12, writes=20, seed=5)


@pytest.mark.parametrize("jobs", [1, 2], ids=["one-process", "split"])
def test_a_stopper_ends_the_run_where_it_is_and_no_report_is_made(jobs: int) -> None:
    stopper = Stopper()
    seen: list[float] = []

    def progress(p: Progress) -> None:
        seen.append(p.t)
        if len(seen) == 3:
            stopper.stop()  # as a signal handler would, from inside the run

    cfg = SMALL.replace(jobs=jobs)
    with pytest.raises(Stopped):
        run_plan(cfg, make_plan(cfg), progress=progress, stopper=stopper)
    assert len(seen) == 3  # no sample after the stop
    assert multiprocessing.active_children() == []  # a split run's second process is gone


def test_a_stopper_not_stopped_changes_nothing() -> None:
    """It adds no task to the run: the same seed gives the same report."""
    plan = make_plan(SMALL)
    plain = run_plan(SMALL, plan).to_json()
    watched = run_plan(SMALL, plan, stopper=Stopper()).to_json()
    for report in (plain, watched):
        del report["wall_s"], report["phases_s"]
    assert plain == watched


def _first_line(proc: subprocess.Popen[bytes], within: float) -> bytes:
    """The first line `proc` writes to stderr, waited for at most `within` seconds
    (b"" if none comes: the test then fails rather than hangs)."""
    assert proc.stderr is not None
    ready, _, _ = select.select([proc.stderr], [], [], within)
    return proc.stderr.readline() if ready else b""


@pytest.mark.parametrize("sigint", ["ignored", "default"], ids=["started-with-&", "foreground"])
def test_sigterm_ends_pttsync_simulate_at_once_with_143(sigint: str) -> None:
    cmd = [sys.executable, "-m", "pttsync", "simulate", "--peers", "200", "--writes", "400"]
    cmd += ["--progress"]
    if sigint == "ignored":  # a script's `cmd &` starts it with SIGINT ignored
        cmd = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        first = _first_line(proc, 60)  # the first progress line: the run is under way
        assert first, first
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10  # not the rest of the run
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.decode().splitlines()[-1] == "pttsync: terminated"


# The second process hangs (it never says a word), and the first waits for it in its
# lockstep's `poll`, where a signal's handler runs but cannot end the wait by itself.
# The first says when it is waiting, so the signal comes while it waits.
_HUNG_SECOND = """
import signal, sys, time
from pttsync.sim import bridge, run

def hung(*args):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    time.sleep(120)  # bounded: should the test fail, this process still ends

run._second = hung
wait = bridge.SocketBridge._wait

def noted(self):
    print("waiting", file=sys.stderr, flush=True)
    wait(self)

bridge.SocketBridge._wait = noted
from pttsync.cli import entry
sys.argv = ["pttsync", "simulate", "--peers", "20", "--writes", "10", "--jobs", "2"]
entry()
"""


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGTERM, 143, "pttsync: terminated"), (signal.SIGINT, 130, "pttsync: interrupted")],
    ids=["SIGTERM", "ctrl-c"],
)
def test_a_signal_ends_a_split_run_whose_other_process_hangs(
    signum: signal.Signals, code: int, said: str
) -> None:
    """Was (a known limit): the wait for the other process was a `poll` with no
    timeout, so a split run hung on its other process ignored SIGTERM and ^C."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HUNG_SECOND], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        line = _first_line(proc, 60)  # the first process waits for the second
        assert line == b"waiting\n", line
        proc.send_signal(signum)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=30)
        assert time.monotonic() - sent < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == code, err
    assert err.decode().splitlines()[-1] == said


def test_a_stop_ends_a_wait_for_the_second_processs_answer() -> None:
    """At the checks the first process waits for the second's results on a pipe: a
    stop gives that wait up too (the run then raises `Stopped`, run.py)."""
    stopper = Stopper()
    second = Second.__new__(Second)
    second.conn, theirs = multiprocessing.Pipe()
    second.stopping = lambda: stopper.stopped
    stopper.stop()
    raised: list[BaseException] = []

    def waits() -> None:
        try:
            second.result()
        except BaseException as exc:  # checked below
            raised.append(exc)

    waiting = threading.Thread(target=waits, daemon=True)  # a hang must not hold the exit
    waiting.start()
    waiting.join(timeout=30)  # a bug must fail, not hang the suite
    assert not waiting.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], SimulationError), raised
    assert "stopped" in str(raised[0])
    second.conn.close()
    theirs.close()
