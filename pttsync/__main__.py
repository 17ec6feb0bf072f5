"""`python -m pttsync ...` is the same as `pttsync ...`."""

from __future__ import annotations

from .cli import entry

if __name__ == "__main__":
    entry()
