"""CSV cells a spreadsheet reads as what they are: no text can be a formula (CSV injection)."""

from __future__ import annotations

from typing import Any

# A spreadsheet takes a cell that starts with one of these for a formula, and runs it.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    """OWASP's rule: text that starts like a formula gets a leading ', which makes it text. Numbers, negative
    ones too, stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
