"""Webhook deliveries: signed JSON events POSTed to every subscribed registration."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import aiohttp

from .background import Background
from .config import SimulatorConfig
from .ids import new_id, rfc3339_now
from .models import Webhook
from .state import DeliveryRecord, SimulatorState

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Signature"
USER_AGENT = "tasmanian-cloud-webhooks/simulator"


def signature(body: bytes, secret: str) -> str:
    """Hex HMAC-SHA256 of the exact body bytes.

    Computed here rather than borrowed from ``receiver.signatures`` so that the receiver's
    tests check its code against an independent implementation.
    """
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def subscribed(hook: Webhook, event: str) -> bool:
    """Whether ``hook`` wants ``event`` (its ``events`` are types or globs such as ``vps.*``)."""
    return any(fnmatch.fnmatchcase(event, pattern) for pattern in hook.events)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None  # an HTTP-date: not worth parsing for a simulator


class Dispatcher:
    """Sends events from background tasks, retrying connection errors, 5xx and 429.

    Deliveries to one registration go out one at a time in event order (``vps.created``
    before its ``vps.status_changed``), so a slow or failing receiver delays its own later
    events but never anyone else's. Every attempt is appended to ``state.deliveries``.
    """

    def __init__(
        self, config: SimulatorConfig, state: SimulatorState, background: Background
    ) -> None:
        self._config = config
        self._state = state
        self._background = background
        self._session: aiohttp.ClientSession | None = None
        self._locks: dict[str, asyncio.Lock] = {}

    async def open(self) -> None:
        """Create the HTTP client session (inside the running loop)."""
        self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})

    async def close(self) -> None:
        """Close the session; call after the background tasks are cancelled."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue ``event`` for every registration subscribed to it; returns at once."""
        payload = {"event": event, "timestamp": rfc3339_now(), "data": data}
        body = json.dumps(payload, separators=(",", ":")).encode()
        for hook in list(self._state.webhooks.values()):
            if subscribed(hook, event):
                self._background.spawn(self._deliver(hook, event, body), name=f"deliver {event}")

    async def _deliver(self, hook: Webhook, event: str, body: bytes) -> None:
        lock = self._locks.setdefault(hook.id, asyncio.Lock())
        async with lock:
            await self._attempts(hook, event, body)

    async def _attempts(self, hook: Webhook, event: str, body: bytes) -> None:
        config = self._config
        sig = signature(body, hook.secret)
        # One id for all attempts, so a receiver can tell a retry from a new event.
        delivery_id = new_id("dlv")
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sig,
            "X-Event-Type": event,
            "X-Delivery-Id": delivery_id,
            "X-Webhook-Id": hook.id,
        }
        for attempt in range(1, config.delivery_attempts + 1):
            record = DeliveryRecord(
                delivery_id=delivery_id,
                webhook_id=hook.id,
                url=hook.url,
                event=event,
                attempt=attempt,
                body=body,
                signature=sig,
                time=time.time(),
            )
            self._state.deliveries.append(record)
            wait = config.delivery_backoff * 2 ** (attempt - 1)
            retry_after = await self._post(hook.url, body, headers, record)
            if record.ok:
                return
            if record.status is not None and record.status != 429 and record.status < 500:
                log.warning("delivery of %s to %s refused: %s", event, hook.url, record.status)
                return  # the receiver rejected it; sending the same bytes again won't help
            if retry_after is not None:
                wait = max(wait, retry_after)
            if attempt < config.delivery_attempts:
                await asyncio.sleep(min(wait, config.delivery_backoff_max))
        log.warning("gave up delivering %s to %s after %d attempts", event, hook.url, attempt)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], record: DeliveryRecord
    ) -> float | None:
        """One attempt; fills ``record`` and returns the answer's ``Retry-After``, if any."""
        assert self._session is not None, "Dispatcher.open() was not called"
        timeout = aiohttp.ClientTimeout(total=self._config.delivery_timeout)
        try:
            async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                await resp.read()
                record.status = resp.status
                if not record.ok:
                    record.error = f"HTTP {resp.status}"
                return _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            return None
