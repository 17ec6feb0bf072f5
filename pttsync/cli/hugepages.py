"""`pttsync simulate --huge-pages`: a large run's heap on transparent huge pages.

A simulation of thousands of peers keeps gigabytes of small objects and
touches them all over, a few bytes each: on 4 KiB pages most of its memory
accesses miss the TLB.  Python's own allocator (pymalloc) takes its memory
in 1 MiB mmaps that Linux backs with huge pages only when told to, and
Python has no way to tell it; glibc's malloc does, with its
`glibc.malloc.hugetlb=1` tunable (glibc 2.35 and later: it advises the
kernel to use transparent huge pages for its heap).  So for a large run the
command runs itself again, once, with `PYTHONMALLOC=malloc` and that
tunable: the same process (`exec`), the same arguments, the same report.

Measured (docs/pip-11/simulation.md, fifteenth sitting): a 2,000-peer run
6% faster, the writes phase of a 4,000-peer run 12%, and the 10,000-peer run
653.7 s against 726.5 s; at 1,000 peers a process, a wash (glibc's malloc is
a little slower than pymalloc, which the fewer misses only make up for in a
large heap).  Hence
`auto`, the default: on where each process runs at least
`PEERS_PER_PROCESS` peers.  `on` runs any size so; `off` never.

Only the command itself does this: it must be the process's entry (the
console script, `python -m pttsync`), for a program calling `main` cannot
be exec'd.  It is skipped, and says why with -v, where it cannot help or
cannot be done: not Linux, transparent huge pages off (`never`), a glibc
without the tunable, or `PYTHONMALLOC` already set (the user's choice, or
this very re-run: `PTTSYNC_HUGE_PAGES` marks it).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .output import is_entry

if TYPE_CHECKING:
    from collections.abc import Mapping

log = logging.getLogger(__name__)

CHOICES = ("auto", "on", "off")
PEERS_PER_PROCESS = 2000
"""`auto` runs on huge pages from this many peers a process (see the module text)."""
MARK = "PTTSYNC_HUGE_PAGES"
"""Set in the run again: it is on huge pages, and must not run itself again."""
TUNABLE = "glibc.malloc.hugetlb=1"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
_MODE = re.compile(r"\[(\w+)\]")


def thp_mode(path: Path = THP) -> str | None:
    """The kernel's transparent huge pages mode (always, madvise, never), or None."""
    try:
        found = _MODE.search(path.read_text())
    except OSError:
        return None
    return found.group(1) if found else None


def glibc_version() -> tuple[int, int] | None:
    """The C library's version if it is glibc, else None."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    found = re.fullmatch(r"glibc (\d+)\.(\d+).*", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def environment(
    choice: str,
    peers_per_process: int,
    environ: Mapping[str, str],
    *,
    platform: str = sys.platform,
    mode: str | None = None,
    glibc: tuple[int, int] | None = None,
) -> tuple[dict[str, str] | None, str]:
    """The environment to run the command again in (None: run as it is), and why.

    `mode` and `glibc` default to this machine's (`thp_mode`, `glibc_version`)."""
    if choice == "off":
        return None, "--huge-pages off"
    if MARK in environ:
        return None, "on huge pages already"
    if choice == "auto" and peers_per_process < PEERS_PER_PROCESS:
        return None, f"fewer than {PEERS_PER_PROCESS:,} peers a process: no gain"
    if "PYTHONMALLOC" in environ:
        return None, "PYTHONMALLOC is set: the allocator is the user's choice"
    if platform != "linux":
        return None, "transparent huge pages are Linux's"
    mode = mode if mode is not None else thp_mode()
    if mode not in ("always", "madvise"):
        return None, f"transparent huge pages are {mode or 'not available'}"
    glibc = glibc if glibc is not None else glibc_version()
    if glibc is None or glibc < (2, 35):
        return None, "the C library has no glibc.malloc.hugetlb (glibc 2.35 or later)"
    env = dict(environ)
    tunables = env.get("GLIBC_TUNABLES")
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    env["PYTHONMALLOC"] = "malloc"
    env[MARK] = "1"
    return env, "on huge pages: glibc's malloc with glibc.malloc.hugetlb=1"


def run_again_if_worth_it(choice: str, peers_per_process: int) -> None:
    """Run this command again on huge pages (no return) if `choice` and the machine
    say so; else log why not and return.  Only as the process's entry."""
    if MARK in os.environ:
        log.info("running on transparent huge pages (glibc's malloc)")
        return
    if not is_entry():
        return
    env, why = environment(choice, peers_per_process, os.environ)
    argv = sys.orig_argv
    if env is None or not argv or not sys.executable:
        (log.warning if choice == "on" else log.info)("not on huge pages: %s", why)
        return
    log.info("running again %s", why)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as exc:  # the interpreter gone since it started, say: run as it is
        log.warning("not on huge pages: could not run %s again: %s", sys.executable, exc)
