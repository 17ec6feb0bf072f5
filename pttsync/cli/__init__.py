"""The `pttsync` command line.  `main(argv) -> int` is the entry point."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
