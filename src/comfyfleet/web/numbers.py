"""Whole numbers from paths and query strings: ASCII digits only.

`str.isdigit()` says yes to `²`, `①` and `٣`, which `int()` then refuses (a 500) or reads as
another number; every numeric path or query value goes through `ascii_int` instead."""

from __future__ import annotations

import re

from comfyfleet.errors import BadRequest

# At most 18 digits: always an int64, and no huge int() on a hostile string.
_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


def is_ascii_int(raw: str) -> bool:
    """True when `raw` is 1 to 18 ASCII digits (nothing else, no sign, no spaces)."""
    return _ASCII_DIGITS.fullmatch(raw) is not None


def ascii_int(raw: str, what: str, low: int, high: int) -> int:
    """`raw` as an int from `low` to `high`; BadRequest (400) naming `what` otherwise."""
    if not is_ascii_int(raw) or not low <= int(raw) <= high:
        raise BadRequest(
            f"{what} must be a whole number from {low} to {high} in ASCII digits, got {raw[:24]!r}"
        )
    return int(raw)
