"""The platform's error format, ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

#: Error code the platform uses for each HTTP status (others fall back to ``error``).
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """Raised by a view to answer with a platform error; ``details`` go out as given."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.details = dict(details or {})
        self.headers = headers or {}

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def response(self) -> web.Response:
        """This error as the HTTP answer."""
        return error_response(
            self.status, self.message, code=self.code, headers=self.headers, details=self.details
        )


def error_body(code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of a platform error."""
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    details: dict[str, Any] | None = None,
) -> web.Response:
    """A platform error answer; the code defaults to the one for ``status``."""
    body = error_body(code or CODES.get(status, "error"), message, dict(details or {}))
    return web.json_response(body, status=status, headers=headers)


def not_found(kind: str, ident: str) -> ApiError:
    """404 for a resource named in the URL."""
    return ApiError(404, f"{kind} {ident} not found", details={"resource": kind, "id": ident})


def invalid(field: str, message: str, **details: Any) -> ApiError:
    """422 naming the offending request field."""
    return ApiError(422, message, details={"field": field, **details})
