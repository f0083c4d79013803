"""HTTP clients of the worker: the tasmanian.cloud API, and plain requests to targets.

This is the one module that catches ``httpx`` exceptions; everything else sees
``handlers.exceptions``.

Retry policy (the step runner does the retrying; this module says what is safe):
- 429 is always safe to retry, after ``Retry-After`` or ``X-RateLimit-Reset``.
- 5xx and errors after the request may have reached the server are retried only for
  idempotent methods (GET, HEAD, OPTIONS, PUT, DELETE) and for requests that carry an
  ``Idempotency-Key`` (every non-GET API call a step makes does).
- Errors before anything was sent (connect refused, pool timeout) are safe for any method.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from handlers.exceptions import ApiError, RateLimited, TargetError, TransportError
from handlers.netguard import ALLOW_PRIVATE, TargetClient, check_host
from handlers.redact import redact_url

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# How long one wait for a free pooled connection lasts before it is logged and renewed.
POOL_WAIT_S = 1.0
logger = logging.getLogger("tashooks.client")
USER_AGENT = "tashooks/0.1"


@dataclass(frozen=True, slots=True)
class Response:
    """What a step gets back: status, parsed body (JSON, else text) and headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        return {"status": self.status, "body": self.body, "headers": self.headers}


def _parse_body(response: httpx.Response) -> Any:
    ctype = response.headers.get("content-type", "")
    if "json" in ctype:
        try:
            return response.json()
        except ValueError:
            pass
    return response.text


def wait_seconds(headers: httpx.Headers, now: float | None = None) -> float:
    """How long a 429 asks us to wait: ``Retry-After`` (seconds or HTTP date), else
    ``X-RateLimit-Reset`` (epoch seconds, or seconds from now when small). Past means 0."""
    now = time.time() if now is None else now
    retry_after = headers.get("retry-after")
    if retry_after:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(retry_after)
                return max(0.0, when.timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            value = float(reset)
        except ValueError:
            return 1.0
        # Epoch seconds are ~1.7e9; anything under a year's seconds is a delta.
        return max(0.0, value - now) if value > 31_536_000 else max(0.0, value)
    return 1.0


def _transport_error(
    exc: httpx.HTTPError, method: str, url: str, idempotency_key: str | None = None
) -> TransportError:
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    safe = (not sent) or method in IDEMPOTENT or idempotency_key is not None
    kind = type(exc).__name__
    return TransportError(
        f"{method} {url}: {kind}: {exc or 'no detail'}", retryable=safe, sent=sent
    )


class ApiClient:
    """Async client of the tasmanian.cloud API (one per worker; an async context manager).

    ``transport`` lets tests point it anywhere; redirects are never followed, so the API
    token is only ever sent to the API's own host.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float = 10.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
        on_response: Callable[[str, int | str], None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # Told of every request's outcome: (method, HTTP status or "error"); for metrics.
        self.on_response = on_response or (lambda method, status: None)
        self.max_connections = max_connections
        self.pool_waits = 0  # times a request waited POOL_WAIT_S for a free connection
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(timeout, pool=POOL_WAIT_S),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            follow_redirects=False,
            transport=transport,
        )

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` under the base URL; the host can never change."""
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        query: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send one request; return the response or raise an ``ApiError``/``TransportError``."""
        method = method.upper()
        url = self.url(path)
        headers = {}
        if idempotency_key and method not in ("GET", "HEAD", "OPTIONS"):
            headers["Idempotency-Key"] = idempotency_key
        kwargs: dict[str, Any] = {"headers": headers, "params": query}
        if json_body is not None:
            kwargs["json"] = json_body
        if timeout is not None:
            kwargs["timeout"] = httpx.Timeout(timeout, pool=POOL_WAIT_S)
        waited = 0.0
        while True:
            try:
                response = await self._client.request(method, url, **kwargs)
                break
            except httpx.PoolTimeout:
                # Every connection is busy: that is congestion here, not a failure of the
                # API, so keep waiting (the step's own timeout still bounds the wait).
                waited += POOL_WAIT_S
                self.pool_waits += 1
                logger.info(
                    "all %d API connections busy for %.0fs; still waiting",
                    self.max_connections,
                    waited,
                )
            except httpx.HTTPError as exc:
                self.on_response(method, "error")
                raise _transport_error(exc, method, url, headers.get("Idempotency-Key")) from exc
        self.on_response(method, response.status_code)
        body = _parse_body(response)
        if response.status_code < 300:
            return Response(response.status_code, body, dict(response.headers))
        err = body.get("error") if isinstance(body, dict) else None
        code = str(err.get("code", "")) if isinstance(err, dict) else ""
        message = str(err.get("message", "")) if isinstance(err, dict) else ""
        details = err.get("details") if isinstance(err, dict) else None
        if not isinstance(details, dict):
            details = {}
        if response.status_code == 429:
            raise RateLimited(
                message or "rate limited",
                retry_after=wait_seconds(response.headers),
                details=details,
            )
        if 300 <= response.status_code < 400:
            raise ApiError(
                f"redirect to {response.headers.get('location', '?')} not followed",
                status=response.status_code,
                code="redirect",
                retryable=False,
            )
        # A repeat carrying the same Idempotency-Key is safe: the platform answers it from
        # the first attempt instead of acting twice.
        retryable = response.status_code >= 500 and (
            method in IDEMPOTENT or "Idempotency-Key" in headers
        )
        raise ApiError(
            message or (str(body)[:200] if body else response.reason_phrase),
            status=response.status_code,
            code=code or f"http_{response.status_code}",
            details=details,
            retryable=retryable,
        )


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    content: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float | None = None,
    allow_private: bool = False,
) -> Response:
    """One request to a Slack or HTTP target. Raises ``TargetError``/``TransportError``,
    or ``StepError`` (not retryable) when the host has a non-public address and
    ``allow_private`` is false (see ``handlers.netguard``).

    4xx answers are permanent (not retried) except 408 and 429; 5xx are retried.
    """
    method = method.upper()
    kwargs: dict[str, Any] = {"headers": headers or {}}
    if isinstance(http, TargetClient):
        # Checked when connecting, on the address actually used.
        kwargs["extensions"] = {ALLOW_PRIVATE: allow_private}
    elif not allow_private:
        # A plain client resolves the host again: a DNS answer that changes in between
        # (rebinding) is not caught here. The worker's TargetClient has no such gap.
        await _check(method, url)
    if json_body is not None:
        kwargs["content"] = json.dumps(json_body, separators=(",", ":")).encode()
        kwargs["headers"] = {"Content-Type": "application/json", **kwargs["headers"]}
    elif content is not None:
        kwargs["content"] = content
    if timeout is not None:
        kwargs["timeout"] = httpx.Timeout(timeout, pool=timeout)
    try:
        response = await http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, method, redact_url(url)) from exc
    body = _parse_body(response)
    if response.status_code < 300:
        return Response(response.status_code, body, dict(response.headers))
    status = response.status_code
    retryable = status >= 500 or status in (408, 429)
    raise TargetError(
        f"{method} {redact_url(url)} answered {status}: {str(body)[:200]}",
        status=status,
        retryable=retryable,
        retry_after=wait_seconds(response.headers) if status == 429 else 0.0,
    )


async def _check(method: str, url: str) -> None:
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        await check_host(parsed.host, port)
    except OSError as exc:  # does not resolve: nothing was sent, try again later
        raise TransportError(
            f"{method} {redact_url(url)}: cannot resolve {parsed.host}: {exc}",
            retryable=True,
            sent=False,
        ) from exc
