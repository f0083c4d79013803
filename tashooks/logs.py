"""Logging set-up: JSON lines for machines, a readable line on a terminal.

Every record carries the event id and request id from ``receiver.logctx`` when there is
one, and any configured secret value that slipped into a message is masked.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from receiver import logctx

# Attributes every LogRecord has; anything else was passed with extra= and is kept.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
MASK = "***"


class ContextFilter(logging.Filter):
    """Adds ``event_id``/``request_id`` from the context; masks secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        # Short values would mask innocent text; secrets are long.
        self.secrets = sorted((s for s in secrets if len(s) >= 6), key=len, reverse=True)

    def add_secrets(self, values: Iterable[str]) -> None:
        """Mask ``values`` too from now on (the worker's ``${NAME}`` values of the rules)."""
        more = {s for s in values if len(s) >= 6} - set(self.secrets)
        self.secrets = sorted([*self.secrets, *more], key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "event_id", None) is None:
            record.event_id = logctx.event_id.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = logctx.request_id.get()
        if self.secrets:
            message = record.getMessage()
            masked = message
            for secret in self.secrets:
                masked = masked.replace(secret, MASK)
            if masked != message:
                record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and value is not None and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level logger [evt_…] message key=value …`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        ids = " ".join(
            f"[{v}]"
            for v in (getattr(record, "event_id", None), getattr(record, "request_id", None))
            if v
        )
        extras = " ".join(
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD
            and k not in ("event_id", "request_id")
            and v is not None
            and not k.startswith("_")
        )
        line = " ".join(
            p
            for p in (
                stamp,
                f"{record.levelname:<7}",
                record.name,
                ids,
                record.getMessage(),
                extras,
            )
            if p
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "INFO", fmt: str = "auto", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once for the process. ``fmt``: json, text, or auto (text
    on a terminal, JSON otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # arq logs every job at INFO (noise unless debugging); httpx logs full URLs, and Slack
    # webhook URLs carry their secret in the path.
    logging.getLogger("arq").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, root.level))
