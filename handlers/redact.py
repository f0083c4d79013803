"""What of a step goes into the audit stream: parameters with secrets masked, and a
short summary of the result (never a body: a kubeconfig or credentials may be in it)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

MASK = "***"
# Values shorter than this are not masked inside other text (too many false hits).
MIN_SECRET = 6
_SECRET_NAME = re.compile(
    r"(auth|token|secret|passw|api[_-]?key|cookie|signature|credential)", re.IGNORECASE
)
_MAX_TEXT = 500


def redact_url(value: str) -> str:
    """Scheme, host and port only: Slack's webhook URLs carry their secret in the path, and
    others in the query or the user info."""
    parts = urlsplit(value)
    if not parts.scheme or not parts.netloc:
        return MASK
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    if parts.path.strip("/") or parts.query or parts.username or parts.password:
        return f"{parts.scheme}://{host}{port}/{MASK}"
    return f"{parts.scheme}://{host}{port}"


def mask_text(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every configured secret value replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def secret_values(values: list[str]) -> tuple[str, ...]:
    """The values worth masking (long enough not to hit innocent text), longest first."""
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET), key=len, reverse=True))


def redact(value: Any, key: str = "", secrets: tuple[str, ...] = ()) -> Any:
    """A copy of ``value`` safe to record: secret-looking keys, URLs and the configured
    secret values (``secrets``, see ``secret_values``) masked, long text cut."""
    if key and _SECRET_NAME.search(key):
        return MASK
    if isinstance(value, dict):
        return {str(k): redact(v, str(k), secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, key, secrets) for v in value]
    if isinstance(value, str):
        if key == "url":
            return redact_url(value)
        if key == "content":
            return f"<{len(value.encode())} bytes>"
        value = mask_text(value, secrets)
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "…"
    return value


def summarize(result: Any) -> Any:
    """A step's result for the audit record: its ``status`` and ``path``, not its body."""
    if isinstance(result, dict):
        return {k: result[k] for k in ("status", "path", "failed") if k in result}
    if result is None or isinstance(result, bool | int | float):
        return result
    return type(result).__name__
