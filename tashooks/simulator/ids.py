"""Resource ids and timestamps in the platform's shapes."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime


def new_id(prefix: str) -> str:
    """A fresh id such as ``vps_3f9a1c0d2b7e4a51``."""
    return f"{prefix}_{secrets.token_hex(8)}"


def rfc3339_now() -> str:
    """The current time as RFC 3339 UTC with a ``Z`` and whole seconds, like the platform."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
