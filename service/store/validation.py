"""Argument checks shared by the store modules. Each raises :class:`InvalidInput` naming
the field, what was wrong and what is accepted, before anything is written."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from service.store.errors import InvalidInput

MAX_INT32 = 2**31 - 1
MAX_PAGE = 10_000
ERROR_TEXT_LEN = 20_000  # longer error texts (tracebacks) are clipped, not rejected
# Metric names become MLflow keys ("L{layer}.H{head}.{metric}"), so keep to its alphabet.
METRIC_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-/]*$")


def check_id(value: Any, field: str) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer id, got {type(value).__name__} {value!r}")
    if not 1 <= value <= MAX_INT32:
        raise InvalidInput(f"{field} must be between 1 and {MAX_INT32}, got {value}")
    return value


def check_ids(values: Iterable[Any], field: str) -> list[int]:
    if isinstance(values, str | bytes):
        raise InvalidInput(f"{field} must be a sequence of integer ids, got a string")
    return sorted({check_id(v, field) for v in values})


def check_int(value: Any, field: str, lo: int = 0, hi: int = MAX_INT32) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{field} must be an integer, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{field} must be between {lo} and {hi}, got {value}")
    return value


def check_str(value: Any, field: str, max_len: int, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string, got {type(value).__name__} {value!r}")
    if not value and not empty_ok:
        raise InvalidInput(f"{field} must not be empty")
    if "\x00" in value:  # PostgreSQL cannot store them; SQLite would (one behaviour for both)
        raise InvalidInput(f"{field} must not contain NUL characters (\\x00)")
    if len(value) > max_len:
        raise InvalidInput(
            f"{field} is {len(value)} characters long, the limit is {max_len}: shorten it ({value[:40]!r}...)"
        )
    return value


def check_opt_str(value: Any, field: str, max_len: int) -> str | None:
    return None if value is None else check_str(value, field, max_len)


def check_choice(value: Any, field: str, allowed: Iterable[str]) -> str:
    options = sorted(str(a) for a in allowed)
    if not isinstance(value, str) or value not in options:
        raise InvalidInput(f"{field} must be one of {options}, got {value!r}")
    return str(value)


def check_json(value: Any, field: str) -> Any:
    """JSON-serialisable without NaN/inf (PostgreSQL's JSON rejects them)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{field} must be JSON-serialisable (dicts, lists, str, finite numbers, bool, None): {exc}"
        ) from None
    if _has_nul(value):  # PostgreSQL's JSONB refuses them
        raise InvalidInput(f"{field} must not contain NUL characters (\\x00) in any string")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def check_aware(value: Any, field: str) -> datetime:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{field} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(
            f"{field} is a naive datetime ({value.isoformat()}); pass a timezone-aware one, "
            "e.g. datetime.now(UTC)"
        )
    return value


def check_opt_aware(value: Any, field: str) -> datetime | None:
    return None if value is None else check_aware(value, field)


def check_finite(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        try:
            value = float(value)  # numpy scalars
        except (TypeError, ValueError):
            raise InvalidInput(f"{field} must be a number, got {type(value).__name__} {value!r}") from None
    if not math.isfinite(value):
        raise InvalidInput(f"{field} must be finite, got {value}")
    return float(value)


def check_metric_name(value: Any, field: str = "metric") -> str:
    name = check_str(value, field, 100)
    if not METRIC_NAME_RE.match(name):
        raise InvalidInput(
            f"{field} {name!r} has characters MLflow keys do not allow; use letters, digits "
            "and _ . - / (not starting with . - /)"
        )
    return name


def check_limit(limit: Any, field: str = "limit") -> int:
    return check_int(limit, field, 1, MAX_PAGE)


def clip_error(text: str | None) -> str | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise InvalidInput(f"error must be a string, got {type(text).__name__}")
    if len(text) <= ERROR_TEXT_LEN:
        return text
    return text[: ERROR_TEXT_LEN - 40] + f"\n... [clipped, {len(text)} characters in all]"


def encode_cursor(*parts: int) -> str:
    return ".".join(str(p) for p in parts)


def decode_cursor(cursor: str | None, n: int) -> tuple[int, ...] | None:
    if cursor is None:
        return None
    try:
        parts = tuple(int(p) for p in str(cursor).split("."))
    except ValueError:
        parts = ()
    if len(parts) != n:
        raise InvalidInput(
            f"cursor {cursor!r} is not one this listing returned; pass the next_cursor of "
            "the previous page, or none for the first page"
        )
    return parts
