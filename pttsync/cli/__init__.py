"""The `pttsync` command line.  `main(argv) -> int` runs it in process; `entry()` is
the `pttsync` command itself."""

from __future__ import annotations

from .main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
