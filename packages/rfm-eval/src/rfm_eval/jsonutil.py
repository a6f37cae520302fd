"""JSON helpers: NaN → null (JSON has no NaN), numpy scalars and arrays → Python values."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["dumps", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value: Any) -> str:
    """Indented JSON of ``value`` with NaN written as null."""
    return json.dumps(to_jsonable(value), indent=2, allow_nan=False)
