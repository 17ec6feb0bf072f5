"""`python -m pttsync ...` is the same as `pttsync ...`."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
