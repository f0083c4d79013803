"""``api``: call the tasmanian.cloud API (``method`` + ``path`` under API_URL)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from handlers.steps.base import Params, StepContext, StepType


class ApiParams(Params):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"] = "GET"
    path: str
    json_: Any = Field(default=None, alias="json")
    query: dict[str, str] | None = None


async def run(ctx: StepContext, params: ApiParams) -> dict[str, Any]:
    response = await ctx.api.request(
        params.method,
        params.path,
        json_body=params.json_,
        query=params.query,
        idempotency_key=ctx.idempotency_key,
    )
    return response.as_result()


STEP = StepType(
    name="api",
    params=ApiParams,
    run=run,
    encoded=frozenset({"path"}),
    literal=frozenset({"method"}),
    describe=lambda p: f"{p.method} {p.path}" + (f" json={p.json_}" if p.json_ is not None else ""),
)
