"""The OpenAPI 3.1 document of the receiver's HTTP API (``GET /openapi.json``).

It describes every route, the admin API included (whether or not it is switched on), and
holds nothing secret.
"""

from __future__ import annotations

import copy
from typing import Any

from receiver.records import STATUSES

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> Schema:
    return _json(description, _ref("Error"))


def _obj(required: list[str], **properties: Schema) -> Schema:
    return {"type": "object", "required": required, "properties": properties}


_STR: Schema = {"type": "string"}
_INT: Schema = {"type": "integer"}
_NSTR: Schema = {"type": ["string", "null"]}
_TIME: Schema = {"type": "string", "format": "date-time"}
_ANY_OBJ: Schema = {"type": "object"}
_BOOL: Schema = {"type": "boolean"}

_SCHEMAS: dict[str, Schema] = {
    "Error": _obj(
        ["error"],
        error=_obj(["code", "message", "details"], code=_STR, message=_STR, details=_ANY_OBJ),
    ),
    "WebhookEvent": _obj(
        ["event", "timestamp", "data"], event=_STR, timestamp=_TIME, data=_ANY_OBJ
    ),
    "Delivery": _obj(
        ["status", "id"], status={"type": "string", "enum": ["accepted", "duplicate"]}, id=_STR
    ),
    "EventItem": _obj(
        ["stream_id", "received_at", "delivery", "status"],
        id=_STR,
        stream_id=_STR,
        received_at=_TIME,
        type=_STR,
        resource=_NSTR,
        source=_NSTR,
        delivery={"type": "string", "enum": ["accepted", "duplicate", "rejected"]},
        status={"type": "string", "enum": list(STATUSES)},
        rules={"type": "object", "additionalProperties": _STR},
        reason=_STR,
        count=_INT,
        first_at=_TIME,
        last_at=_TIME,
    ),
    "Run": _obj(
        ["rule", "status"],
        rule=_STR,
        status=_STR,
        started_ms=_INT,
        duration_ms=_INT,
        steps={"type": "array", "items": _ANY_OBJ},
        error=_STR,
        deadletter=_STR,
    ),
    "Event": _obj(
        ["id", "stream_id", "received_at", "type", "status", "runs"],
        id=_STR,
        stream_id=_STR,
        received_at=_TIME,
        type=_STR,
        resource=_NSTR,
        source=_NSTR,
        delivery={"type": "string", "const": "accepted"},
        status={"type": "string", "enum": list(STATUSES)},
        replays=_INT,
        event={"type": ["object", "null"]},
        runs={"type": "array", "items": _ref("Run")},
    ),
    "DeadLetter": _obj(
        ["id", "event_id", "event", "rule", "error", "attempts", "failed_at_ms"],
        id=_STR,
        event_id=_STR,
        event=_ANY_OBJ,
        rule=_NSTR,
        step={"type": ["integer", "null"]},
        step_id=_NSTR,
        step_type=_NSTR,
        error=_STR,
        attempts=_INT,
        failed_at_ms=_INT,
    ),
    "Queued": _obj(
        ["status", "job_id", "event_id"],
        status={"type": "string", "const": "queued"},
        job_id=_STR,
        event_id=_STR,
    ),
    "Stats": _obj(
        ["bucket", "bucket_s", "since", "until", "series", "truncated", "buckets"],
        bucket=_STR,
        bucket_s={"type": "number"},
        since=_TIME,
        until=_TIME,
        series=_obj(
            ["deliveries", "runs"],
            deliveries={"type": "array", "items": _STR},
            runs={"type": "array", "items": _STR},
        ),
        truncated=_BOOL,
        scanned_from={"type": ["string", "null"], "format": "date-time"},
        buckets={
            "type": "array",
            "items": _obj(
                ["start", "start_ms", "deliveries", "runs"],
                start=_TIME,
                start_ms=_INT,
                deliveries={"type": "object", "additionalProperties": _INT},
                runs={"type": "object", "additionalProperties": _INT},
            ),
        },
    ),
    "DryRun": _obj(
        ["event", "fired", "rules"],
        event=_ANY_OBJ,
        fired={"type": "array", "items": _STR},
        rules={"type": "array", "items": _ANY_OBJ},
        rules_file=_STR,
        rules_version=_STR,
        running_version=_STR,
        placeholders={"type": "array", "items": _STR},
        note=_STR,
    ),
}


def _page(item: str) -> Schema:
    return _obj(
        ["data", "next_cursor"], data={"type": "array", "items": _ref(item)}, next_cursor=_NSTR
    )


def _query(name: str, description: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "query", "description": description, "schema": schema or _STR}


_ID = {"name": "id", "in": "path", "required": True, "schema": _STR}
_LIMIT = _query(
    "limit", "page size", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}
)
_CURSOR = _query("cursor", "the next_cursor of the previous page")
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]
_ADMIN_ERRORS = {
    "401": _error("missing or wrong admin token"),
    "503": _error("Redis unavailable"),
}
_NOT_FOUND = {"404": _error("no such id (any more)")}


def _admin_op(summary: str, responses: dict[str, Any], **extra: Any) -> Schema:
    return {
        "summary": summary,
        "security": _ADMIN,
        "responses": {**responses, **_ADMIN_ERRORS},
        **extra,
    }


def _paths() -> dict[str, Any]:
    status_help = (
        "comma-separated statuses: delivery (accepted, duplicate, rejected) or outcome "
        "(pending, ok, failed, deferred, throttled, stale, no_match); rejected deliveries "
        "are listed only when asked for"
    )
    when = "RFC 3339 time or a duration meaning that long ago (1h, 7d)"
    return {
        "/webhooks": {
            "post": {
                "summary": "Receive one signed delivery",
                "security": [{"webhookSignature": []}],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("WebhookEvent")}},
                },
                "responses": {
                    "200": _json("the same event again: nothing runs", _ref("Delivery")),
                    "202": _json("stored and queued", _ref("Delivery")),
                    "400": _error("body not valid for its Content-Encoding"),
                    "401": _error("signature missing or wrong"),
                    "408": _error("the body did not arrive within 30 s"),
                    "413": _error("body too large"),
                    "415": _error("Content-Encoding not supported (gzip and deflate are)"),
                    "422": _error("not a valid event"),
                    "503": _error("Redis did not confirm the delivery: not acknowledged; retry"),
                },
            }
        },
        "/healthz": {
            "get": {"summary": "The process is up", "responses": {"200": _json("up", _ANY_OBJ)}}
        },
        "/readyz": {
            "get": {
                "summary": "Redis is reachable",
                "responses": {"200": _json("ready", _ANY_OBJ), "503": _error("not ready")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text exposition",
                        "content": {"text/plain": {"schema": _STR}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {"200": _json("OpenAPI 3.1", _ANY_OBJ)},
            }
        },
        "/events": {
            "get": _admin_op(
                "List events, newest first",
                {"200": _json("one page", _page("EventItem")), "422": _error("bad parameter")},
                parameters=[
                    _query("type", "event type or glob, e.g. vps.*"),
                    _query("resource", "resource id (data.id)"),
                    _query("status", status_help),
                    _query("since", f"received at or after: {when}"),
                    _query("until", f"received at or before: {when}"),
                    _LIMIT,
                    _CURSOR,
                ],
            )
        },
        "/events/stream": {
            "get": _admin_op(
                "Audit records live (Server-Sent Events)",
                {
                    "200": {
                        "description": "id: stream id, event: kind, data: the record as JSON",
                        "content": {"text/event-stream": {"schema": _STR}},
                    },
                    "422": _error("bad last_event_id"),
                },
                parameters=[
                    _query("type", "only records about events of this type (glob)"),
                    _query("resource", "only records about events of this resource"),
                    _query("last_event_id", "resume after this stream id"),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "schema": _STR,
                        "description": "resume after this stream id",
                    },
                ],
            )
        },
        "/events/{id}": {
            "get": _admin_op(
                "One event with its rule runs",
                {"200": _json("the event", _ref("Event")), **_NOT_FOUND},
                parameters=[_ID],
            )
        },
        "/events/{id}/replay": {
            "post": _admin_op(
                "Run the event's rules again",
                {"202": _json("queued", _ref("Queued")), **_NOT_FOUND},
                parameters=[_ID],
            )
        },
        "/deadletters": {
            "get": _admin_op(
                "List dead letters, newest first",
                {"200": _json("one page", _page("DeadLetter")), "422": _error("bad parameter")},
                parameters=[_LIMIT, _CURSOR],
            )
        },
        "/deadletters/{id}/retry": {
            "post": _admin_op(
                "Run the rule again from the failed step; removes the dead letter",
                {"202": _json("queued", _ref("Queued")), **_NOT_FOUND},
                parameters=[_ID],
            )
        },
        "/deadletters/{id}": {
            "delete": _admin_op(
                "Forget a dead letter",
                {"204": {"description": "deleted"}, **_NOT_FOUND},
                parameters=[_ID],
            )
        },
        "/stats": {
            "get": _admin_op(
                "Deliveries and rule runs per time bucket, from the audit stream",
                {
                    "200": _json("counts, oldest bucket first", _ref("Stats")),
                    "422": _error("bad parameter"),
                },
                parameters=[
                    _query("bucket", "bucket size, a duration of at least 1s (default 1m)"),
                    _query("since", f"window start (default 1h): {when}"),
                    _query("until", f"window end (default now): {when}"),
                ],
            )
        },
        "/dry-run": {
            "post": _admin_op(
                "What the rules would do with an event, without doing it "
                "(needs receiver and worker in one process: tashooks serve)",
                {
                    "200": _json("the plan of every rule", _ref("DryRun")),
                    "400": _error("body not valid for its Content-Encoding"),
                    "409": _error("the rules file does not validate"),
                    "413": _error("body too large"),
                    "415": _error("Content-Encoding not supported (gzip and deflate are)"),
                    "422": _error("not a valid event"),
                    "501": _error("this process runs no worker: no rules to dry-run"),
                },
                requestBody={
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": _obj(["event"], event=_STR, timestamp=_TIME, data=_ANY_OBJ)
                        }
                    },
                },
            )
        },
        "/ui": {
            "get": {
                "summary": "The dashboard (on with the admin API; its data calls need the token)",
                "responses": {
                    "200": {"description": "HTML", "content": {"text/html": {"schema": _STR}}}
                },
            }
        },
        "/ui/{name}": {
            "get": {
                "summary": "The dashboard's script and style sheet (ui.js, ui.css)",
                "parameters": [{"name": "name", "in": "path", "required": True, "schema": _STR}],
                "responses": {
                    "200": {"description": "the file", "content": {"text/plain": {"schema": _STR}}},
                    "404": _error("no such file"),
                },
            }
        },
    }


# Every operation may also answer these, in the same error format.
_DEFAULT_ERROR = _error(
    "any other error, in the same format: 405 method_not_allowed (with Allow), "
    "500 internal_error (details in the server's log)"
)


def _with_default_errors(paths: dict[str, Any]) -> dict[str, Any]:
    for operations in paths.values():
        for operation in operations.values():
            operation["responses"].setdefault("default", _DEFAULT_ERROR)
    return paths


def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    return copy.deepcopy(
        {
            "openapi": "3.1.0",
            "info": {
                "title": "tashooks",
                "version": version,
                "description": "Webhook receiver for tasmanian.cloud and its admin API "
                "(Bearer TASHOOKS_ADMIN_TOKEN; off, 404, when unset).",
            },
            "paths": _with_default_errors(_paths()),
            "components": {
                "schemas": _SCHEMAS,
                "securitySchemes": {
                    "adminToken": {"type": "http", "scheme": "bearer"},
                    "webhookSignature": {
                        "type": "apiKey",
                        "in": "header",
                        "name": "X-Signature",
                        "description": "HMAC-SHA256 of the raw body with the webhook secret, hex",
                    },
                },
            },
        }
    )
