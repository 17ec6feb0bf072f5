"""Decoded CBOR as JSON, for the CLI and the control socket."""

from __future__ import annotations

import math
from typing import Any


def jsonable(value: Any) -> Any:
    """Turn decoded CBOR into JSON: byte strings become hex, map keys become text."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no such numbers
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
