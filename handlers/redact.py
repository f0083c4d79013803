"""What of a step goes into the audit stream: parameters with secrets masked, and a
short summary of the result (never a body: a kubeconfig or credentials may be in it)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
_SECRET_NAME = re.compile(
    r"(auth|token|secret|passw|api[_-]?key|cookie|signature|credential)", re.IGNORECASE
)
_MAX_TEXT = 500


def _url(value: str) -> str:
    """Scheme, host and port only: Slack's webhook URLs carry their secret in the path."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return MASK
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/{MASK}" if parts.path.strip("/") else value


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` safe to record: secret-looking keys and URLs masked, long text cut."""
    if key and _SECRET_NAME.search(key):
        return MASK
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key) for v in value]
    if isinstance(value, str):
        if key == "url":
            return _url(value)
        if key == "content":
            return f"<{len(value.encode())} bytes>"
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    return value


def summarize(result: Any) -> Any:
    """A step's result for the audit record: its ``status`` and ``path``, not its body."""
    if isinstance(result, dict):
        return {k: result[k] for k in ("status", "path", "failed") if k in result}
    if result is None or isinstance(result, bool | int | float):
        return result
    return type(result).__name__
