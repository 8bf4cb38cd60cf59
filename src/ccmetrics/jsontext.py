"""JSON as ccmetrics writes it: always valid JSON, so a number that is not finite is written as null.

Inputs are bounded so that no stored sum can overflow, but a ratio of two extreme values still can, and
``json.dumps`` would otherwise write ``Infinity``, which no JSON parser accepts.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """``value`` with every float that is not finite replaced by None, in lists and dicts too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dumps(value: Any, **options: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False, **options)
    except ValueError:  # rare: walk the value only when it holds such a number
        return json.dumps(finite(value), allow_nan=False, **options)
