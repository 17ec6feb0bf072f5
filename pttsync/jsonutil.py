"""Decoded CBOR as JSON, for the CLI and the control socket."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


def jsonable(value: Any, *, bytes_form: Callable[[bytes], Any] = bytes.hex) -> Any:
    """Turn decoded CBOR into JSON: byte strings as `bytes_form` makes them (hex by
    default), map keys as text."""
    if isinstance(value, bytes):
        return bytes_form(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v, bytes_form=bytes_form) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, bytes_form=bytes_form) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf": JSON has no such numbers
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)
