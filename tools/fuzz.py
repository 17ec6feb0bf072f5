"""Fuzz every decoder of pttsync with mutants of real encodings (issue 14, part 3).

Each target feeds one decoder (frames, sync and node messages, oplog records
with and without signatures, invite tokens, control requests, key files,
store files) its seeds, then mutants of them; the decoder may fail only with
the typed errors it documents (tests/adversary/decoders.py has the table).
Anything else is a failure: it is printed with the target, the exception and
where it was raised, its input is saved under --artifacts (and shown in hex
when short), and the tool exits 1.  The stateful adversary is a target too;
its input is the 8-byte seed of the batch of examples that failed.

Usage:
    python tools/fuzz.py                             # every target, 10 s each
    python tools/fuzz.py --target oplog --inputs 1000000
    python tools/fuzz.py --seconds 60 --seed 7 --json
    python tools/fuzz.py --replay oplog a e64...     # run one input again (hex)
    python tools/fuzz.py --replay store @fuzz-artifacts/store-0f3c...  # or a saved one

`--json` prints exactly one object on stdout:
    {"targets": {NAME: {"inputs": int, "failures": int}}, "inputs": int, "failures": int}
Failures are printed on stderr (with --json) or stdout.  A run is a pure
function of --seed and the budget (--inputs; --seconds depends on speed).
Progress goes to stderr, only when it is a terminal.  To add a target, see
tests/adversary/registry.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.adversary.engine import Budget, Failure, Outcome, UnusableInput
from tests.adversary.registry import TARGETS

SHORT = 128
"""Inputs up to this many bytes are also printed in hex (longer ones only saved)."""


def _show(failure: Failure, artifacts: Path, stream: TextIO) -> None:
    """Print one failure and save its input as `artifacts/TARGET-SHA1` (as libFuzzer does)."""
    artifacts.mkdir(parents=True, exist_ok=True)
    path = artifacts / f"{failure.target}-{hashlib.sha1(failure.data).hexdigest()[:16]}"
    path.write_bytes(failure.data)
    print(f"FAIL {failure.target}: {failure.error}", file=stream)
    print(f"  at {failure.where}", file=stream)
    if len(failure.data) <= SHORT:
        print(f"  input: {failure.data.hex()}", file=stream)
    print(f"  replay: python tools/fuzz.py --replay {failure.target} @{path}", file=stream)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--target",
        action="append",
        choices=sorted(TARGETS),
        metavar="NAME",
        help=f"a target to run (repeatable; default: all of {', '.join(TARGETS)})",
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=float, help="run each target this long (default 10)")
    budget.add_argument("--inputs", type=int, help="run each target on this many inputs")
    parser.add_argument("--seed", type=int, default=0, help="the run's random seed (default 0)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="one input running longer is a failure, a hang (default 10 s)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: {targets: {NAME: {inputs, failures}}, inputs, failures}",
    )
    parser.add_argument(
        "--artifacts",
        type=Path,
        default=Path("fuzz-artifacts"),
        metavar="DIR",
        help="save each failing input shown in DIR as TARGET-SHA1 (default fuzz-artifacts)",
    )
    parser.add_argument(
        "--replay",
        nargs=2,
        metavar=("NAME", "INPUT"),
        help="run one input again with one target and say what happened; INPUT is hex,"
        " or @FILE for a saved input",
    )
    args = parser.parse_args(argv)

    if args.replay:
        return replay(*args.replay)
    names = args.target or list(TARGETS)
    tty = sys.stderr.isatty()
    report = sys.stderr if args.json else sys.stdout
    results: dict[str, Outcome] = {}
    for name in names:
        progress = None
        if tty:
            started = time.monotonic()

            def progress(n: int, failures: int, name: str = name, started: float = started) -> None:
                rate = n / max(1e-9, time.monotonic() - started)
                print(
                    f"\r{name}: {n:,} inputs, {failures} failures ({rate:,.0f}/s)   ",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

        if args.inputs is not None:
            b = Budget(inputs=args.inputs, progress=progress, input_timeout=args.timeout)
        else:
            seconds = 10.0 if args.seconds is None else args.seconds
            b = Budget(seconds=seconds, progress=progress, input_timeout=args.timeout)
        outcome = TARGETS[name](random.Random(f"{args.seed}:{name}"), b)
        results[name] = outcome
        if tty:
            print("\r" + " " * 70 + "\r", end="", file=sys.stderr, flush=True)
        if not args.json:
            print(
                f"{name}: {outcome.inputs:,} inputs, {outcome.failures} failures,"
                f" {outcome.seconds:.1f} s",
                flush=True,
            )
        for failure in outcome.examples:
            _show(failure, args.artifacts, report)
        if outcome.failures > len(outcome.examples):
            print(
                f"  ({outcome.failures - len(outcome.examples)} more failing inputs of"
                f" {name} not shown: the same exceptions, or over the limit)",
                file=report,
            )
    inputs = sum(o.inputs for o in results.values())
    failures = sum(o.failures for o in results.values())
    if args.json:
        targets = {n: {"inputs": o.inputs, "failures": o.failures} for n, o in results.items()}
        print(json.dumps({"targets": targets, "inputs": inputs, "failures": failures}))
    return 1 if failures else 0


def replay(name: str, given: str) -> int:
    """Run one input again: 0 if it passes or is refused cleanly; 2 if the input or the
    target cannot be used; a crash propagates, with its traceback."""
    target = TARGETS.get(name)
    run_one = getattr(target, "run_one", None)
    if run_one is None:
        print(f"no replay for target {name!r}", file=sys.stderr)
        return 2
    try:
        data = Path(given[1:]).read_bytes() if given.startswith("@") else bytes.fromhex(given)
    except (OSError, ValueError) as exc:
        print(f"cannot read the input {given[:80]!r}: {exc}", file=sys.stderr)
        return 2
    try:
        result = run_one(data)
    except UnusableInput as exc:
        print(f"cannot replay this input: {exc}", file=sys.stderr)
        return 2
    print("passed" if result is None else f"refused: {type(result).__name__}: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
