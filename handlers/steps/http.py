"""``http``: send a request to a named target (forward the event elsewhere).

Without ``json`` or ``body`` the event itself is sent as JSON. The target's host must be
public unless the target says ``allow_private: true`` (``handlers.netguard``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from handlers.client import send
from handlers.exceptions import StepError
from handlers.steps.base import Params, StepContext, StepType


class HttpParams(Params):
    target: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    headers: dict[str, str] | None = None


async def run(ctx: StepContext, params: HttpParams) -> dict[str, Any]:
    target = ctx.targets.get(params.target)
    if target is None:
        raise StepError(f"unknown target {params.target!r}", retryable=False)
    headers = {
        **target.headers,
        **(params.headers or {}),
        "Idempotency-Key": ctx.idempotency_key,
        "X-Tashooks-Event": ctx.event_id,
    }
    json_body: Any = params.json_
    if params.json_ is None and params.body is None:
        json_body = dict(ctx.event)
    response = await send(
        ctx.http,
        params.method,
        target.url,
        json_body=json_body,
        content=params.body,
        headers=headers,
        allow_private=target.allow_private,
    )
    return {"status": response.status, "body": response.body}


STEP = StepType(
    name="http",
    params=HttpParams,
    run=run,
    literal=frozenset({"target", "method"}),
    target_field="target",
    describe=lambda p: (
        f"{p.method} target {p.target}"
        + (" with the event as JSON" if p.json_ is None and p.body is None else "")
    ),
)
