"""Registering tashooks as the account's webhook URL (``POST /webhooks`` on the API)."""

from __future__ import annotations

import secrets as _secrets
from typing import Any

import httpx

from receiver.events import new_event_id


class RegisterError(Exception):
    """The platform refused or could not be reached; the message says what to do."""


def new_secret() -> str:
    """A fresh webhook secret (256 bits, URL-safe)."""
    return _secrets.token_urlsafe(32)


async def register_webhook(
    api_url: str,
    api_key: str,
    url: str,
    *,
    events: list[str] | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """Create the webhook on the platform; return its answer with the secret it uses."""
    secret = secret or new_secret()
    body: dict[str, Any] = {"url": url, "secret": secret}
    if events:
        body["events"] = events
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Idempotency-Key": "register-" + new_event_id(),
    }
    try:
        async with httpx.AsyncClient(timeout=10.0) as client:
            response = await client.post(
                f"{api_url.rstrip('/')}/webhooks", json=body, headers=headers
            )
    except httpx.HTTPError as exc:
        raise RegisterError(f"cannot reach {api_url}: {exc}; check TASHOOKS_API_URL") from exc
    if response.status_code >= 300:
        raise RegisterError(
            f"the platform answered {response.status_code}: {response.text[:300]}; "
            "check TASHOOKS_API_KEY and the URL"
        )
    answer: dict[str, Any] = response.json()
    answer.setdefault("secret", secret)
    return answer
