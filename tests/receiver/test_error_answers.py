"""Answers that never reach a view (unknown path, wrong method) and unexpected failures use
the platform's error format too, never aiohttp's plain text."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from receiver.responses import json_errors
from tests.receiver.conftest import AUTH, Client


async def test_unknown_path_is_a_json_404(client: Client) -> None:
    resp = await client.get("/no/such/thing")
    assert resp.status == 404
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == "not_found"
    assert "/no/such/thing" in error["message"] and "/openapi.json" in error["message"]


async def test_wrong_method_is_a_json_405_with_allow(client: Client) -> None:
    resp = await client.get("/webhooks")
    assert resp.status == 405
    assert resp.headers["Allow"] == "POST"
    error = (await resp.json())["error"]
    assert error["code"] == "method_not_allowed"
    assert error["details"] == {"allowed": ["POST"]}
    assert "use POST" in error["message"]


async def test_admin_paths_are_json_404_when_the_admin_api_is_off(client: Client) -> None:
    for path in ("/events", "/ui", "/deadletters/dl_1"):
        resp = await client.get(path, headers=AUTH)
        assert resp.status == 404
        error = (await resp.json())["error"]
        assert error["code"] == "not_found"
        assert "set TASHOOKS_ADMIN_TOKEN to turn them on" in error["message"], path


async def test_an_unknown_path_with_the_admin_api_on_has_no_such_hint(admin: Client) -> None:
    resp = await admin.get("/events/evt_1/nothing", headers=AUTH)
    assert resp.status == 404
    assert "TASHOOKS_ADMIN_TOKEN" not in (await resp.json())["error"]["message"]


async def test_admin_wrong_method_is_json(admin: Client) -> None:
    resp = await admin.put("/deadletters", headers=AUTH)
    assert resp.status == 405
    assert (await resp.json())["error"]["details"]["allowed"] == ["GET", "HEAD"]


async def test_webhook_answers_are_unchanged(client: Client) -> None:
    resp = await client.post("/webhooks", data=b"{}", headers={"X-Signature": "0" * 64})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_an_unexpected_failure_is_a_json_500_and_logged(
    aiohttp_client: Callable[[Any], Awaitable[Client]], caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("boom")

    async def too_big(request: web.Request) -> web.Response:
        await request.read()
        return web.Response()

    app = web.Application(middlewares=[json_errors], client_max_size=10)
    app.router.add_get("/broken", broken)
    app.router.add_post("/read", too_big)
    client = await aiohttp_client(app)
    with caplog.at_level(logging.ERROR, logger="tashooks.receiver"):
        resp = await client.get("/broken")
    assert resp.status == 500
    error = (await resp.json())["error"]
    assert error["code"] == "internal_error"
    assert "boom" not in error["message"]  # the details go to the log, not to the caller
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)

    resp = await client.post("/read", data=b"x" * 100)
    assert resp.status == 413
    error = (await resp.json())["error"]
    assert error["code"] == "payload_too_large"
    assert "send a smaller body" in error["message"]
