"""Running trio from a command, with SIGTERM taken inside the run.

A signal handler that raises (cli/main.py's, for SIGTERM) is safe outside
trio but not inside it: the exception surfaces in the middle of trio's own
bookkeeping and the run breaks with pages of "guest run abandoned"
tracebacks.  main.py has SIGTERM delivered as SIGINT, which trio handles
safely, but that cannot work when SIGINT is ignored, which is how a script
starts a command with `&`.  So each command that runs trio does it through
`run_trio`: a SIGTERM cancels the run from inside (as `run` and `watch`
already did for themselves), and `Terminated` is raised once trio has
returned, where main.py reports it (exit 143).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

_T = TypeVar("_T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every command unwinds: its stores close and
    its helper processes (gen's signer) end, instead of dying where it stands."""


def run_trio(async_fn: Callable[..., Awaitable[_T]], *args: Any) -> _T:
    """`trio.run(async_fn, *args)`; a SIGTERM meanwhile cancels it and raises Terminated.

    Only the main thread receives signals: elsewhere (tests run the CLI in
    worker threads) this is `trio.run` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        return trio.run(async_fn, *args)
    terminated = False
    results: list[_T] = []

    async def watch(cancel: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
        nonlocal terminated
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            task_status.started()
            async for _ in signals:
                terminated = True
                cancel.cancel()
                return

    async def guarded() -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(watch, nursery.cancel_scope)
                results.append(await async_fn(*args))
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # this nursery's wrapping: as trio.run raises it
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    trio.run(guarded)
    if terminated:
        raise Terminated
    return results[0]


@contextlib.contextmanager
def on_sigterm(call: Callable[[], None]) -> Iterator[None]:
    """Within: a SIGTERM calls `call()` (which must be signal-safe) and nothing else,
    for a trio run that stops itself (the simulator's, whose run admits no watcher
    task: it would change the run).  In other threads, nothing changes."""
    with _on_signal(signal.SIGTERM, call):
        yield


@contextlib.contextmanager
def on_sigint(call: Callable[[], None]) -> Iterator[None]:
    """Within: a ^C calls `call()` as `on_sigterm` does, unless SIGINT is not Python's
    own ^C handling (ignored, as a script's `cmd &` starts it: it stays ignored)."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    with _on_signal(signal.SIGINT, call):
        yield


@contextlib.contextmanager
def _on_signal(signum: signal.Signals, call: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signum, lambda _signum, _frame: call())
    try:
        yield
    finally:
        signal.signal(signum, previous)
