"""Receiver fixtures: an app on the suite's Redis, and signed deliveries."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from receiver.app import create_app
from receiver.settings import Settings, load_settings
from receiver.signatures import sign

SECRET = "test-secret"
ADMIN_TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Client = TestClient  # type: ignore[type-arg]


def make_body(event: str = "vps.created", **data: Any) -> bytes:
    doc = {
        "event": event,
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "data": data or {"id": "vps_abc123", "name": "web-1", "status": "running"},
    }
    return json.dumps(doc).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Signature": sign(body, secret), "Content-Type": "application/json"}


@pytest.fixture
def settings(redis_url: str, tmp_path: Any) -> Settings:
    return load_settings(
        redis_url=redis_url, webhook_secret=SECRET, data_dir=tmp_path, max_body=4096
    )


@pytest.fixture
async def client(aiohttp_client: Callable[[Any], Awaitable[Client]], settings: Settings) -> Client:
    return await aiohttp_client(create_app(settings))


@pytest.fixture
def admin_settings(redis_url: str, tmp_path: Any) -> Settings:
    """Settings with the admin API on (token ``ADMIN_TOKEN``)."""
    return load_settings(
        redis_url=redis_url, webhook_secret=SECRET, data_dir=tmp_path, admin_token=ADMIN_TOKEN
    )


@pytest.fixture
async def admin(
    aiohttp_client: Callable[[Any], Awaitable[Client]], admin_settings: Settings
) -> Client:
    """A client of an app with the admin API on."""
    return await aiohttp_client(create_app(admin_settings))
