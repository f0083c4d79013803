"""HMAC-SHA256 webhook signatures (``X-Signature``), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

HEADER = "X-Signature"
_PREFIX = "sha256="


def sign(body: bytes, secret: bytes | str) -> str:
    """Return the lower-case hex HMAC-SHA256 of ``body`` (what the platform sends)."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[bytes]) -> bool:
    """True when ``header`` is the HMAC-SHA256 of the raw ``body`` under any of ``secrets``.

    A ``sha256=`` prefix and upper-case hex are accepted. Every secret is compared (no early
    exit) with ``hmac.compare_digest``, so timing reveals neither the digest nor which
    secret matched.
    """
    if not header:
        return False
    given = header.strip()
    if given[: len(_PREFIX)].lower() == _PREFIX:
        given = given[len(_PREFIX) :]
    try:
        given_bytes = bytes.fromhex(given) if len(given) == 64 else b""
    except ValueError:  # not hex
        given_bytes = b""
    ok = False
    for secret in secrets:
        # Compared as raw digests (upper- and lower-case hex alike), in constant time.
        ok |= hmac.compare_digest(hmac.digest(secret, body, "sha256"), given_bytes)
    return ok
