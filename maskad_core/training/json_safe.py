"""Values made strict JSON: what ``runs.write_json`` writes (NaN is not JSON; null is)."""

from __future__ import annotations

import math
from pathlib import Path


def json_safe(value, keep_nan: bool = False):
    """``value`` with numpy scalars and paths made plain and non-finite floats made None (kept
    with ``keep_nan``)."""
    if isinstance(value, dict):
        return {key: json_safe(item, keep_nan) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, keep_nan) for item in value]
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = _json_default(value)
    if isinstance(value, float) and not math.isfinite(value) and not keep_nan:
        return None
    return value


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
