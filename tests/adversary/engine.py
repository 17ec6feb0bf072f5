"""The fuzzing loop: budgets, outcomes, failures, and the decoder target.

A *target* is any callable `(rng, budget) -> Outcome` (`TargetFn`); the
registry (registry.py) maps names to them.  `DecoderTarget` is the one every
decoder uses: it feeds the decoder its seeds unchanged, then mutants of
them, as fast as it can, until the budget is spent.  An exception the
decoder documents is a clean refusal; any other exception, or an
`OracleError` from a check of what the decoder returned, is a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import pttsync

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from .mutate import Mutator

_PACKAGE = os.path.dirname(pttsync.__file__) + os.sep
MAX_EXAMPLES = 10
"""Distinct failures (by exception type and place) kept per target, to print."""


class OracleError(Exception):
    """The decoder returned, but what it returned breaks a property it promises."""


class UnusableInput(Exception):
    """An input a target's `run_one` cannot run at all (not one it may produce): the
    replay's user gave the wrong bytes, which is no failure of the code under test."""


class InputTimeout(BaseException):
    """One input ran over `Budget.input_timeout`: a hang, or close to one.

    A BaseException, so that no `except Exception` inside a decoder can pass
    it off as one of the decoder's documented errors.
    """


@contextlib.contextmanager
def alarm(seconds: float | None) -> Iterator[float | None]:
    """Make SIGALRM raise InputTimeout; yields `seconds`, or None where that cannot work.

    The caller arms the timer around each input (`signal.setitimer`).  Only in
    the main thread, and only where there is SIGALRM; a hang inside one C call
    (a single SQLite statement) is caught when the call returns.
    """
    if (
        seconds is None
        or not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield None
        return

    def ring(signum: int, frame: object) -> None:
        raise InputTimeout(f"one input ran over {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, ring)
    try:
        yield seconds
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(slots=True)
class Budget:
    """How much to run one target: `inputs` inputs, or for `seconds` (whichever is given).

    `progress(inputs, failures)`, if given, is called every few hundred inputs.
    """

    inputs: int | None = None
    seconds: float | None = None
    progress: Callable[[int, int], None] | None = None
    input_timeout: float | None = 10.0
    """One input taking longer than this is a failure (a hang): see `InputTimeout`."""

    def __post_init__(self) -> None:
        if (self.inputs is None) == (self.seconds is None):
            raise ValueError("a budget is a number of inputs or of seconds, not both or neither")


@dataclass(frozen=True, slots=True)
class Failure:
    """One input a target failed on: enough to reproduce it and to see what broke."""

    target: str
    data: bytes
    error: str  # "TypeError: message"
    where: str  # the innermost frame: "path:line in function"

    @property
    def kind(self) -> tuple[str, str]:
        return (self.error.split(":", 1)[0], self.where)


@dataclass(slots=True)
class Outcome:
    """What a run of one target did."""

    inputs: int = 0
    failures: int = 0
    seconds: float = 0.0
    examples: list[Failure] = field(default_factory=list)

    def fail(self, failure: Failure) -> None:
        self.failures += 1
        if len(self.examples) < MAX_EXAMPLES and all(f.kind != failure.kind for f in self.examples):
            self.examples.append(failure)


TargetFn: TypeAlias = "Callable[[random.Random, Budget], Outcome]"
"""What the registry holds: run a target with this rng within this budget."""


def describe(exc: BaseException) -> tuple[str, str]:
    """("Type: message", where): the innermost frame in pttsync, and the one that raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if f.filename.startswith(_PACKAGE)] or frames
    where = f"{ours[-1].filename}:{ours[-1].lineno} in {ours[-1].name}" if ours else "?"
    if frames and frames[-1] is not ours[-1]:
        where += f" (raised at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})"
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}", where


@dataclass(frozen=True)
class DecoderTarget:
    """Fuzz one decoder: `call` it on mutants of `seeds`; only `allowed` may escape.

    `session()` yields the function that decodes one input (a context, so a
    target can keep a temporary directory for the inputs that are files).
    `mutators` are picked uniformly (list one twice to weigh it double).
    """

    name: str
    allowed: tuple[type[BaseException], ...]
    seeds: Callable[[], Sequence[bytes]]
    mutators: Sequence[Mutator]
    session: Callable[[], AbstractContextManager[Callable[[bytes], object]]]

    def run_one(self, data: bytes) -> BaseException | None:
        """Decode one input: None if it decoded, the documented error if it was refused.

        Any other exception propagates (a crasher).
        """
        with self.session() as call:
            try:
                call(data)
            except self.allowed as exc:
                return exc
        return None

    def __call__(self, rng: random.Random, budget: Budget) -> Outcome:
        seeds = list(self.seeds())
        mutators = list(self.mutators)
        out = Outcome()
        started = time.monotonic()
        deadline = None if budget.seconds is None else started + budget.seconds
        limit = budget.inputs
        allowed = self.allowed
        last_report = started
        n = 0
        with self.session() as call, alarm(budget.input_timeout) as timeout:
            while limit is None or n < limit:
                if n & 63 == 0:
                    now = time.monotonic()
                    if deadline is not None and now >= deadline:
                        break
                    if budget.progress is not None and now - last_report >= 0.25:
                        budget.progress(n, out.failures)
                        last_report = now
                if n < len(seeds):
                    data = seeds[n]  # every seed as it is first: real encodings must pass
                else:
                    data = rng.choice(mutators)(rng, rng.choice(seeds), seeds)
                n += 1
                if timeout is not None:
                    signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    call(data)
                except allowed:
                    pass
                except (Exception, InputTimeout) as exc:
                    error, where = describe(exc)
                    out.fail(Failure(self.name, data, error, where))
                finally:
                    if timeout is not None:
                        signal.setitimer(signal.ITIMER_REAL, 0)
        out.inputs = n
        out.seconds = time.monotonic() - started
        return out


@contextlib.contextmanager
def plain(call: Callable[[bytes], object]) -> Iterator[Callable[[bytes], object]]:
    """A session that needs no setup."""
    yield call
