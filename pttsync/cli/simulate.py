"""`pttsync simulate`: many real nodes in this process, on virtual time, with faults.

    pttsync simulate --peers 200 --writes 2000 --seed 7 --loss 0.05 --latency-ms 5:80 \\
                     --partition 60:300 --crash 10 --json

Prints a human summary (or the JSON report), with a progress bar on
stderr while it runs if that is a terminal.  The simulated nodes log only
errors, unless -v: their warnings are what the injected faults cause.
Exit status 0 if every invariant holds, 1 if one is violated (the seed,
the command that reproduces the run and the trace go to stderr), 2 for bad
arguments, 143 when a SIGTERM stopped the run and 130 when a ^C did (no
report; either ends a split run at once, even one whose other process
hangs).  The options map onto `pttsync.SimConfig` one to one; a
`--scenario` supplies settings the options then override.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .hugepages import CHOICES as HUGE_PAGES
from .hugepages import run_again_if_worth_it
from .options import seconds_or_off
from .output import end_process_now, is_entry
from .simout import ProgressBar, write_out
from .triorun import Terminated, on_sigint, on_sigterm

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..sim.plan import Plan, SimConfig
    from ..sim.report import SimReport
    from .options import Subparsers


def _number(kind: type[int] | type[float], lo: float, hi: float) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"must be between {_show(lo)} and {_show(hi)}")
        return value

    return parse


def _jobs(text: str) -> int | None:
    """--jobs: 1, 2, or auto (None: decided once the plan is known)."""
    if text == "auto":
        return None
    return int(_number(int, 1, 2)(text))


def _show(value: float) -> str:
    """A bound as people read it: 2592000, not 2.592e+06; 0.99."""
    return str(int(value)) if value == int(value) else f"{value:g}"


def _range(text: str) -> tuple[float, float]:
    """A:B as two non-negative numbers, A <= B."""
    lo, sep, hi = text.partition(":")
    try:
        a, b = float(lo), float(hi if sep else lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not A:B (two numbers)") from None
    if not (math.isfinite(a) and math.isfinite(b) and 0 <= a <= b):
        raise argparse.ArgumentTypeError(f"{text!r}: need 0 <= A <= B")
    return a, b


def _window(text: str) -> tuple[float, float]:
    """START:END in seconds, START < END."""
    a, b = _range(text)
    if a == b:
        raise argparse.ArgumentTypeError(f"{text!r}: the end must come after the start")
    return a, b


def _bandwidth(text: str) -> float:
    """Bytes per second, with an optional k, m or g suffix (powers of 1024)."""
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:].lower(), 1)
    body = text[:-1] if scale != 1 else text
    value = _number(float, 0, 1e12)(body) * scale
    return float(value)


MAX_PEERS = 20_000  # sim.plan.MAX_PEERS (the simulator loads on use; a test checks)

# The options, as (flag, SimConfig field, argparse keywords).  Defaults are None
# here: a value is passed on only when given, so a scenario's settings stand
# unless an option overrides them.
_OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--peers", "peers", {"type": _number(int, 1, MAX_PEERS), "metavar": "N",
        "help": "peers at the start (default: 20)"}),
    ("--writes", "writes", {"type": _number(int, 0, 1_000_000), "metavar": "N",
        "help": "application writes on random peers (default: 100)"}),
    ("--seed", "seed", {"type": int, "metavar": "N",
        "help": "the seed: the same seed and options give the same report (default: 1)"}),
    ("--duration", "duration", {"type": _number(float, 0, 86400), "metavar": "S",
        "help": "the writes are spread over S virtual seconds (default: 30, or long enough"
        " to go on through every --partition and --masters-offline)"}),
    ("--warmup", "warmup", {"type": _number(float, 0, 86400), "metavar": "S",
        "help": "virtual seconds before the first write (default: 5)"}),
    ("--latency-ms", "latency_ms", {"type": _range, "metavar": "A:B",
        "help": "one-way latency of each pair of peers, in A..B ms (default: 5:80; see"
        " --latency-dist)"}),
    ("--latency-dist", "latency_dist", {"choices": ["uniform", "lognormal"],
        "help": "uniform in A..B (default), or lognormal with A..B its 5th-95th percentile"}),
    ("--jitter", "jitter", {"type": _number(float, 0, 10), "metavar": "F",
        "help": "extra latency per message, up to F times the link's (default: 0.1)"}),
    ("--loss", "loss", {"type": _number(float, 0, 0.99), "metavar": "P",
        "help": "probability a message is lost and resent, TCP-style (default: 0)"}),
    ("--bandwidth", "bandwidth", {"type": _bandwidth, "metavar": "BYTES/S",
        "help": "per connection and direction, e.g. 64k (default: unlimited)"}),
    ("--partition", "partitions", {"type": _window, "metavar": "START:END",
        "action": "append", "help": "split the peers into groups from START to END s"
        " (repeatable)"}),
    ("--partition-groups", "partition_groups", {"type": _number(int, 2, 16), "metavar": "K",
        "help": "how many groups a partition makes (default: 2)"}),
    ("--crash", "crashes", {"type": _number(int, 0, 100_000), "metavar": "K",
        "help": "K crashes of random peers during the writes (store kept, restarted)"}),
    ("--down", "down", {"type": _range, "metavar": "A:B",
        "help": "seconds a crashed peer stays down, uniform (default: 5:30)"}),
    ("--churn", "churn", {"type": _number(int, 0, MAX_PEERS), "metavar": "K",
        "help": "K peers leave for good and K new ones are admitted and join"}),
    ("--late", "late", {"type": _number(int, 0, MAX_PEERS), "metavar": "K",
        "help": "K admitted peers that start only after the writes"}),
    ("--late-at", "late_at", {"type": _number(float, 0, 864000), "metavar": "S",
        "help": "when the late peers start (default: 10 s after the write window)"}),
    ("--masters-offline", "masters_offline", {"type": _window, "metavar": "START:END",
        "help": "every master is down from START to END s"}),
    ("--masters", "masters", {"type": _number(int, 1, 64), "metavar": "K",
        "help": "masters among the peers (default: 1, the founder)"}),
    ("--expiry", "expiry", {"type": _number(float, 60, 2592000), "metavar": "S",
        "help": "seconds an oplog may wait for co-signatures (default: 3600)"}),
    ("--skew-ms", "skew_ms", {"type": _number(float, 0, 600_000), "metavar": "MS",
        "help": "each peer's clock is off by up to MS either way (default: 0)"}),
    ("--sync-interval", "sync_interval", {"type": _number(float, 0.01, 3600), "metavar": "S",
        "help": "anti-entropy interval of every node (default: 10)"}),
    ("--visit-interval", "visit_interval", {"type": seconds_or_off, "metavar": "S",
        "help": "about every S seconds a node visits a peer it has no link to, for one"
        " sync round; 0: never (default: 60)"}),
    ("--push-mesh", "push_mesh", {"type": _number(int, 0, 1024), "metavar": "K",
        "help": "peers each node picks for its push mesh; 0 pushes to every peer (default: 3)"}),
    ("--push-every", "push_every", {"type": _number(float, 0, 60), "metavar": "S",
        "help": "at most one push batch per node every S seconds (default: 0.1)"}),
    ("--announce-every", "announce_every", {"type": _number(float, 0, 60), "metavar": "S",
        "help": "at most one lazy-push announcement per link every S seconds (default: 0.25)"}),
    ("--max-peers", "max_peers", {"type": _number(int, 1, 1024), "metavar": "N",
        "help": "connections per node (default: 16)"}),
    ("--bootstrap", "bootstrap", {"type": _number(int, 0, 64), "metavar": "N",
        "help": "peers each new peer joins (default: 3)"}),
    ("--hot", "hot", {"type": _number(float, 0, 1), "metavar": "F",
        "help": "fraction of writes to a few hot documents: concurrent updates (default: 0.2)"}),
    ("--hot-keys", "hot_keys", {"type": _number(int, 0, 1000), "metavar": "K",
        "help": "how many hot documents (default: 3)"}),
    ("--write-by", "write_by", {"choices": ["any", "masters", "members"],
        "help": "who writes: any peer (default), masters or members (whose writes wait"
        " for masters' signatures)"}),
    ("--deletes", "deletes", {"type": _number(float, 0, 1), "metavar": "F",
        "help": "fraction of writes that delete (default: 0.05)"}),
    ("--store", "store", {"choices": ["memory", "sqlite"],
        "help": "the peers' stores: memory (default; fast) or sqlite (the real one, in memory)"}),
    ("--transport", "transport", {"choices": ["direct", "noise"],
        "help": "direct (default; fast) or noise (the real handshake and encryption)"}),
    ("--max-wait", "max_wait", {"type": _number(float, 1, 2592000), "metavar": "S",
        "help": "virtual seconds to wait for convergence after the last event (default: 900)"}),
    ("--hold", "hold", {"type": _number(float, 0, 86400), "metavar": "S",
        "help": "keep the converged network running S virtual seconds on idle before the"
                " checks: what an idle network costs, with --profile (default: 0)"}),
    ("--sample-every", "sample_every", {"type": _number(float, 0.01, 3600), "metavar": "S",
        "help": "virtual seconds between samples of the timeline (default: 1)"}),
    ("--jobs", "jobs", {"type": _jobs, "metavar": "N",
        "help": "processes the peers are split across: 1, 2 (about 1.7x faster on two"
        " cores), or auto (default): 2 where this process may use two CPUs and the plan"
        " allows (not with --latency-dist lognormal), else 1.  A seed gives"
        " one report for one N; the report and its reproducing command say which"}),
]  # fmt: skip


EPILOG = """\
the timeline (--timeline FILE.csv): one row per sample (every --sample-every s)
  t                 virtual seconds
  live              peers up
  agree_final       live peers holding the final digest (the lowest-numbered
                    live peer's at the end)
  distinct_digests  how many different digests the live peers hold
  writes_done       writes acknowledged so far
  messages          messages sent by all peers so far
  partitions        partitions in effect (cut and not yet healed)
  down              peers down, to be restarted: crashed, or masters in their
                    outage (--crash, --masters-offline)
  masters_offline   of those, the masters down in their outage
  left              peers gone for good so far (--churn)
  events            the fault events applied since the sample before, each as
                    in the report's faults without its time, separated by "; "
                    (e.g. "crash peer3; partition into groups of 10, 10"; at
                    most 8, then "(+N more)")
"""


class _EpilogAsIs(argparse.HelpFormatter):
    """The description wrapped as usual, the epilog (a table: lines of its own) as
    written, as argparse.RawDescriptionHelpFormatter writes both."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "simulate",
        help="run many peers in this process on virtual time, with faults; check invariants",
        description=(
            "Run real pttsync nodes in one process over a simulated network on virtual"
            " time: random writes, the faults asked for, then wait for convergence, check"
            " the invariants and report.  The same options and seed give the same report."
            "  The simulated nodes' warnings (what the faults cause) show with -v."
        ),
        epilog=EPILOG,
        formatter_class=_EpilogAsIs,
    )
    p.add_argument(
        "--scenario",
        metavar="NAME",
        help="start from a named scenario (see --list-scenarios); options override it",
    )
    p.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    for flag, dest, kwargs in _OPTIONS:
        p.add_argument(flag, dest=dest, default=None, **kwargs)
    p.add_argument("--no-push", dest="push", action="store_const", const=False, default=None,
                   help="no push: anti-entropy alone spreads writes")  # fmt: skip
    p.add_argument(
        "--timeline",
        metavar="FILE.csv",
        help="write the per-sample timeline as CSV to FILE (its columns: below)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the run into FILE.png or FILE.svg: peers holding the final digest over"
        " time with the faults shaded, the spread of writes (CDF), bytes per peer; needs"
        " matplotlib (pip install 'pttsync[plot]')",
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar on stderr (default: when stderr is a terminal; elsewhere"
        " --progress prints a line per change of state, at most one a second)",
    )
    p.add_argument("--json", action="store_true", help="print the JSON report instead of text")
    p.add_argument(
        "--profile",
        action="store_true",
        help="time the run under cProfile; print the wall time of each phase (setup, writes,"
        " quiescence, checks) and the top cost centres (about half as fast)",
    )
    p.add_argument(
        "--huge-pages",
        choices=HUGE_PAGES,
        default="auto",
        help="run on transparent huge pages (Linux, glibc 2.35+): the command runs itself"
        " again with glibc's malloc, which asks for them; faster for large runs.  auto"
        " (default): from 2,000 peers a process",
    )
    p.add_argument(
        "--shrink",
        action="store_true",
        help="if an invariant fails, look for a smaller plan that still fails, save it"
        " (see --save-plan) and print its trace",
    )
    p.add_argument(
        "--max-shrink-runs",
        type=_number(int, 1, 10_000),
        default=64,
        metavar="N",
        help="runs --shrink may make (default: %(default)s)",
    )
    p.add_argument(
        "--save-plan",
        metavar="FILE.json",
        help="save the run's config and plan (the shrunk one with --shrink) to replay later",
    )
    p.add_argument(
        "--plan",
        metavar="FILE.json",
        help="replay a saved plan exactly (its config too: no other setting may be given)",
    )
    p.set_defaults(func=cmd_simulate)


def config_from(args: argparse.Namespace) -> SimConfig:
    """The SimConfig the arguments describe (UsageError for a bad combination)."""
    from ..sim.parts import auto_jobs  # noqa: PLC0415
    from ..sim.plan import SimConfig  # noqa: PLC0415 - the simulator loads on use
    from ..sim.scenarios import scenario  # noqa: PLC0415

    given: dict[str, Any] = {}
    for _flag, dest, _kw in _OPTIONS:
        value = getattr(args, dest, None)
        if value is not None:
            given[dest] = tuple(value) if dest == "partitions" else value
    if args.push is not None:
        given["push"] = args.push
    cfg = scenario(args.scenario).config(**given) if args.scenario else SimConfig(**given)
    if getattr(args, "jobs", None) is None:  # auto, the default: decided here, reported
        cfg = cfg.replace(jobs=auto_jobs(cfg))
    return cfg


def command_line(cfg: SimConfig) -> str:
    """The `pttsync simulate` command that runs `cfg` (every setting off its default)."""
    from ..sim.parts import refusals  # noqa: PLC0415
    from ..sim.plan import SimConfig  # noqa: PLC0415

    default = SimConfig()
    words = ["pttsync", "simulate"]
    splittable = not refusals(cfg)  # then --jobs auto could run it either way: say which
    for flag, dest, _kw in _OPTIONS:
        value = getattr(cfg, dest)
        said = dest == "seed" or (dest == "jobs" and splittable)
        if value == getattr(default, dest) and not said:
            continue
        if dest == "partitions":
            words += [w for a, b in value for w in (flag, f"{_num(a)}:{_num(b)}")]
        elif isinstance(value, tuple):
            words += [flag, f"{_num(value[0])}:{_num(value[1])}"]
        else:
            words += [flag, _num(value) if isinstance(value, float) else str(value)]
    if not cfg.push:
        words.append("--no-push")
    return " ".join(words)


def _num(value: float) -> str:
    """A float as the shortest text that reads back as the same float (30.0 -> "30")."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@contextlib.contextmanager
def _quiet_nodes(quiet: bool) -> Iterator[None]:
    """The simulated nodes' own warnings (a peer refused, a join retried: what the faults
    cause) only with -v; errors always.  The level is put back after."""
    logger = logging.getLogger("pttsync.net")
    before = logger.level
    if quiet:
        logger.setLevel(max(logging.ERROR, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def cmd_simulate(args: argparse.Namespace) -> int:
    from ..sim.collect import few_collections  # noqa: PLC0415

    # As the process's own command, it ends inside the block: neither putting the
    # collector back nor the interpreter's teardown walks the simulation's heap.
    with _quiet_nodes(args.verbose == 0), few_collections():
        code = _simulate(args)
        end_process_now(code)
    return code


def _simulate(args: argparse.Namespace) -> int:
    from ..sim.plan import make_plan  # noqa: PLC0415
    from ..sim.run import run_plan  # noqa: PLC0415
    from ..sim.scenarios import SCENARIOS  # noqa: PLC0415
    from ..sim.stopper import Stopped, Stopper  # noqa: PLC0415

    if args.list_scenarios:
        for s in SCENARIOS.values():
            print(f"{s.name:<24} {s.story}")
        return 0
    cfg, plan = _config_and_plan(args)
    outputs = (
        ("the timeline", args.timeline),
        ("the plan", args.save_plan),
        ("the plot", args.plot),
    )
    for what, option in outputs:
        if option and not Path(option).parent.is_dir():
            raise UsageError(f"cannot write {what} to {option}: no such directory")
    if args.plot:
        from ..sim.plot import check_target  # noqa: PLC0415 - loads matplotlib: only for --plot

        check_target(args.plot)
    run_again_if_worth_it(args.huge_pages, cfg.peers // cfg.jobs)  # all checked: may exec
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    bar = ProgressBar() if show and not args.quiet else None
    reproduce = f"pttsync simulate --plan {args.plan}" if args.plan else command_line(cfg)
    planned = plan if plan is not None else make_plan(cfg)
    stopper = Stopper()  # SIGTERM (^C) stops the run where it is: no report, exit 143 (130)
    interrupted: list[bool] = []

    def ctrl_c() -> None:
        interrupted.append(True)
        stopper.stop()

    def take(report: SimReport) -> None:
        """The report, at the run's end, before its nodes stop: as the process's own
        command, write it out and end (nobody waits for 10,000 nodes to shut down);
        in process, or with a shrink to run, only once they have stopped."""
        if is_entry() and (report.ok or not args.shrink):
            if bar is not None:
                bar.close()
            end_process_now(write_out(args, cfg, planned, report))

    try:
        with on_sigterm(stopper.stop), on_sigint(ctrl_c):
            report = run_plan(
                cfg, planned, progress=bar, reproduce=reproduce, profile=args.profile,
                stopper=stopper, on_report=take,
            )  # fmt: skip
    except Stopped:
        raise (KeyboardInterrupt if interrupted else Terminated) from None
    finally:
        if bar is not None:
            bar.close()
    return write_out(args, cfg, planned, report)


def _config_and_plan(args: argparse.Namespace) -> tuple[SimConfig, Plan | None]:
    """The config (and, with --plan, the saved plan) the arguments name."""
    from ..sim.shrink import load_plan  # noqa: PLC0415

    if not args.plan:
        return config_from(args), None
    given = [flag for flag, dest, _ in _OPTIONS if getattr(args, dest, None) is not None]
    if given or args.scenario or args.push is not None:
        what = ", ".join(given) or "--scenario"
        raise UsageError(f"--plan replays a saved run as it was: drop {what}")
    return load_plan(Path(args.plan))
