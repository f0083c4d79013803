"""Reading and checking request bodies; every failure names the field (422)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from .errors import invalid

#: Hostnames, cluster and network names: a DNS label.
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_NAME_HINT = "lower-case letters, digits and '-', 1-63 characters, not starting or ending in '-'"


async def json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (an empty body counts as ``{}``)."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid("body", f"request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise invalid("body", "request body must be a JSON object")
    return body


def string(body: dict[str, Any], field: str, *, required: bool = True) -> str | None:
    """A non-empty string field."""
    value = body.get(field)
    if value is None:
        if required:
            raise invalid(field, f"{field} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid(field, f"{field} must be a non-empty string")
    return value


def required_string(body: dict[str, Any], field: str) -> str:
    """A non-empty string field that must be present."""
    value = string(body, field)
    assert value is not None  # string() raised otherwise
    return value


def name(body: dict[str, Any], field: str = "name") -> str:
    """A required DNS-label style name."""
    value = required_string(body, field)
    if not NAME_RE.match(value):
        raise invalid(field, f"{field} must be {_NAME_HINT}")
    return value


def choice(
    body: dict[str, Any],
    field: str,
    allowed: Sequence[str],
    *,
    default: str | None = None,
    what: str | None = None,
) -> str:
    """A string from ``allowed``; absent means ``default`` (required when there is none)."""
    value = string(body, field, required=default is None)
    if value is None:
        assert default is not None
        return default
    if value not in allowed:
        raise invalid(field, f"Invalid {what or field} specified", allowed=list(allowed))
    return value


def string_list(
    body: dict[str, Any],
    field: str,
    *,
    allowed: Sequence[str] | None = None,
    default: list[str] | None = None,
) -> list[str]:
    """A list of non-empty strings, optionally each from ``allowed``."""
    value = body.get(field)
    if value is None:
        return list(default or [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(field, f"{field} must be a list of non-empty strings")
    if allowed is not None:
        for item in value:
            if item not in allowed:
                raise invalid(field, f"{item!r} is not allowed in {field}", allowed=list(allowed))
    return list(value)


def integer(body: dict[str, Any], field: str, *, default: int, low: int, high: int) -> int:
    """An integer within ``[low, high]``."""
    value = body.get(field, default)
    # bool is an int in Python, but not in JSON
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid(field, f"{field} must be an integer from {low} to {high}")
    return value


def number(body: dict[str, Any], field: str, *, default: float, low: float = 0.0) -> float:
    """A number >= ``low``."""
    value = body.get(field, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
        raise invalid(field, f"{field} must be a number >= {low}")
    return float(value)


def obj(body: dict[str, Any], field: str) -> dict[str, Any]:
    """An optional JSON object field (absent means ``{}``)."""
    value = body.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(field, f"{field} must be an object")
    return value
