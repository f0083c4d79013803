"""A stand-in for Slack incoming webhooks, plus a generic HTTP sink.

``POST /services/<T>/<B>/<X>`` answers as Slack does: 200 ``ok`` (``text/plain``) for a
JSON payload with ``text`` or ``blocks``, and Slack's plain-text error strings otherwise:

====================  ======  ==========================================================
body                  status  when
====================  ======  ==========================================================
invalid_payload       400     body is not a JSON object, or has neither text nor blocks
no_text               400     ``text`` is empty and there are no blocks
invalid_blocks        400     ``blocks`` is not a list
no_service            404     a ``/services/...`` path that is not ``T/B/X`` shaped
====================  ======  ==========================================================

Failures a real workspace produces (``channel_not_found`` 404, ``channel_is_archived``
410, ``action_prohibited`` 403, ``rollup_error`` 500, ``rate_limited`` 429 with
``Retry-After``, ...) are switched on per path with :meth:`StubState.fail` or
``POST /_stub/fail``. ``POST|PUT /sink/<name>`` records anything and answers
``{"ok": true}`` (the demo's audit target).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from aiohttp.typedefs import Handler

from tashooks.serving import RunningServer, serve_app

#: Slack's error strings and the status each comes with.
SLACK_ERRORS: dict[str, int] = {
    "invalid_payload": 400,
    "no_text": 400,
    "invalid_blocks": 400,
    "user_not_found": 400,
    "action_prohibited": 403,
    "invalid_token": 403,
    "team_disabled": 403,
    "no_service": 404,
    "no_team": 404,
    "channel_not_found": 404,
    "channel_is_archived": 410,
    "rate_limited": 429,
    "rollup_error": 500,
}


@dataclass(slots=True)
class StubRequest:
    """Any request the stub received (Slack paths and sinks alike); ``json`` is the parsed
    body or None, ``status`` the answer given."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float
    status: int | None = None

    def to_json(self) -> dict[str, Any]:
        """As JSON for ``GET /_stub/requests`` (the body as text)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
            "json": self.json,
            "time": self.time,
            "status": self.status,
        }


@dataclass(slots=True)
class SlackMessage:
    """A payload Slack would have posted; ``path`` tells which webhook URL it came to."""

    path: str
    payload: dict[str, Any]

    @property
    def text(self) -> str | None:
        """The payload's ``text`` (None when it has only blocks or attachments)."""
        value = self.payload.get("text")
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "payload": self.payload}


@dataclass(slots=True)
class Failure:
    """Answer ``status`` with ``body`` on the next ``count`` requests whose path matches
    the glob ``path`` (``count`` None: until cleared); 429s carry ``Retry-After``."""

    path: str
    status: int
    body: str
    count: int | None = 1
    retry_after: int | None = None
    hits: int = 0


@dataclass
class StubState:
    """What the stub received and which failures are armed."""

    requests: list[StubRequest] = field(default_factory=list)
    messages: list[SlackMessage] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def fail(
        self,
        path: str,
        error: str | None = None,
        *,
        status: int | None = None,
        count: int | None = 1,
        retry_after: int | None = None,
    ) -> Failure:
        """Make ``path`` (a glob) fail, e.g. ``fail(p, "channel_is_archived")``,
        ``fail(p, status=500)`` or ``fail(p, "rate_limited", retry_after=2, count=3)``."""
        if error is None and status is None:
            raise ValueError("give a Slack error string or a status")
        if error is not None and status is None:
            if error not in SLACK_ERRORS:
                raise ValueError(f"unknown Slack error {error!r}; known: {sorted(SLACK_ERRORS)}")
            status = SLACK_ERRORS[error]
        assert status is not None
        if status == 429 and retry_after is None:
            retry_after = 1
        failure = Failure(
            path=path,
            status=status,
            body=error or ("rollup_error" if status >= 500 else "error"),
            count=count,
            retry_after=retry_after,
        )
        self.failures.append(failure)
        return failure

    def clear_failures(self) -> None:
        self.failures.clear()

    def take_failure(self, path: str) -> Failure | None:
        """The first armed failure for ``path``, counted as used."""
        for failure in self.failures:
            if fnmatch.fnmatchcase(path, failure.path):
                failure.hits += 1
                if failure.count is not None and failure.hits >= failure.count:
                    self.failures.remove(failure)
                return failure
        return None

    def sink_requests(self, name: str | None = None) -> list[StubRequest]:
        """Requests to ``/sink/<name>`` (all sinks when ``name`` is None)."""
        if name is None:
            return [r for r in self.requests if r.path.startswith("/sink/")]
        return [r for r in self.requests if r.path == f"/sink/{name}"]

    async def wait_for(self, predicate: Callable[[StubState], bool], max_wait: float = 5.0) -> None:
        """Wait until ``predicate(self)`` holds (``TimeoutError`` after ``max_wait``)."""
        async with asyncio.timeout(max_wait), self.changed:
            await self.changed.wait_for(lambda: predicate(self))

    async def notify(self) -> None:
        """Wake ``wait_for`` callers (after each recorded request)."""
        async with self.changed:
            self.changed.notify_all()


STUB = web.AppKey("tashooks.slackstub.state", StubState)


def _parse_json(request: web.Request, body: bytes) -> Any:
    """JSON body, or Slack's form style ``payload=<json>``; raises ValueError."""
    if request.content_type == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8"), strict_parsing=True).get("payload")
        if not values:
            raise ValueError("no payload field")
        return json.loads(values[0])
    return json.loads(body)


def _slack_check(payload: Any) -> str | None:
    """Slack's error string for a payload it would refuse, else None."""
    if not isinstance(payload, dict):
        return "invalid_payload"
    if "blocks" in payload and not isinstance(payload["blocks"], list):
        return "invalid_blocks"
    if payload.get("blocks") or payload.get("attachments"):
        return None
    if "text" not in payload:
        return "invalid_payload"
    if not isinstance(payload["text"], str):
        return "invalid_payload"
    if not payload["text"].strip():
        return "no_text"
    return None


def _text(status: int, body: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/plain", headers=headers)


@web.middleware
async def _record(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log every non-control request, then apply any armed failure."""
    if request.path.startswith("/_stub/"):
        return await handler(request)
    state = request.app[STUB]
    body = await request.read()
    try:
        parsed: Any = _parse_json(request, body) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    record = StubRequest(
        method=request.method,
        path=request.path,
        headers=dict(request.headers),
        body=body,
        json=parsed,
        time=time.time(),
    )
    state.requests.append(record)
    failure = state.take_failure(request.path)
    if failure is not None:
        headers = {"Retry-After": str(failure.retry_after)} if failure.retry_after else None
        response: web.StreamResponse = _text(failure.status, failure.body, headers)
    else:
        response = await handler(request)
    record.status = response.status
    await state.notify()
    return response


async def _slack_webhook(request: web.Request) -> web.Response:
    body = await request.read()
    try:
        payload = _parse_json(request, body)
    except (ValueError, UnicodeDecodeError):
        return _text(400, "invalid_payload")
    error = _slack_check(payload)
    if error is not None:
        return _text(SLACK_ERRORS[error], error)
    request.app[STUB].messages.append(SlackMessage(path=request.path, payload=payload))
    return _text(200, "ok")


async def _no_service(request: web.Request) -> web.Response:
    return _text(404, "no_service")


async def _sink(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _control_fail(request: web.Request) -> web.Response:
    """``POST /_stub/fail {"path", "error"|"status", "count", "retry_after"}``."""
    try:
        spec = await request.json()
        failure = request.app[STUB].fail(
            str(spec["path"]),
            spec.get("error"),
            status=spec.get("status"),
            count=spec.get("count", 1),
            retry_after=spec.get("retry_after"),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return web.json_response({"ok": False, "error": str(exc)}, status=400)
    return web.json_response({"ok": True, "path": failure.path, "status": failure.status})


async def _control_clear(request: web.Request) -> web.Response:
    request.app[STUB].clear_failures()
    return web.json_response({"ok": True})


async def _control_messages(request: web.Request) -> web.Response:
    messages = request.app[STUB].messages
    return web.json_response({"data": [m.to_json() for m in messages]})


async def _control_requests(request: web.Request) -> web.Response:
    return web.json_response({"data": [r.to_json() for r in request.app[STUB].requests]})


def create_slack_app() -> web.Application:
    """The Slack stand-in and sink as an aiohttp application."""
    app = web.Application(middlewares=[_record])
    app[STUB] = StubState()
    app.router.add_post("/services/{team}/{bot}/{token}", _slack_webhook)
    app.router.add_route("*", "/services/{tail:.*}", _no_service)
    app.router.add_post("/sink/{name:.+}", _sink)
    app.router.add_put("/sink/{name:.+}", _sink)
    app.router.add_post("/_stub/fail", _control_fail)
    app.router.add_delete("/_stub/fail", _control_clear)
    app.router.add_get("/_stub/messages", _control_messages)
    app.router.add_get("/_stub/requests", _control_requests)
    return app


class RunningStub(RunningServer):
    """The stub serving on a real port; ``async with`` closes it."""

    @property
    def state(self) -> StubState:
        return self.app[STUB]

    @property
    def messages(self) -> list[SlackMessage]:
        """Accepted Slack payloads, oldest first."""
        return self.state.messages

    @property
    def requests(self) -> list[StubRequest]:
        """Every request received (not ``/_stub`` controls), oldest first."""
        return self.state.requests

    def url_for(self, path: str = "/services/T000/B000/XXXX") -> str:
        """Absolute URL of ``path`` on the stub (default: a Slack webhook URL)."""
        return self.root_url + (path if path.startswith("/") else "/" + path)

    def fail(
        self,
        path: str,
        error: str | None = None,
        *,
        status: int | None = None,
        count: int | None = 1,
        retry_after: int | None = None,
    ) -> Failure:
        """See :meth:`StubState.fail`."""
        return self.state.fail(path, error, status=status, count=count, retry_after=retry_after)

    async def wait_for_messages(self, n: int, max_wait: float = 5.0) -> list[SlackMessage]:
        """Wait until at least ``n`` Slack messages arrived; returns them all."""
        await self.state.wait_for(lambda s: len(s.messages) >= n, max_wait)
        return self.messages


async def start_slack_stub(
    host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> RunningStub:
    """Start the stub in this event loop; ``await stub.close()`` when done."""
    app = create_slack_app()
    runner, root_url = await serve_app(app, host, port, access_log=access_log)
    return RunningStub(app, runner, root_url)
