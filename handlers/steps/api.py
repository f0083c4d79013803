"""``api``: call the tasmanian.cloud API, by name (``call: vps.get`` with ``id:``) or by
``method`` + ``path`` under API_URL. The names are in ``handlers.apicatalog``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from handlers.apicatalog import CATALOG, PATH_PARAMS, unknown_call_message
from handlers.steps.base import Params, StepContext, StepType
from handlers.transforms import encode_segment

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class ApiParams(Params):
    # Field order matters: validators of later fields read ``call`` from ``info.data``.
    call: str | None = None
    method: Method | None = None
    path: str | None = None
    # The catalogue's path parameters (``PATH_PARAMS``); checked against the call.
    id: str | None = Field(default=None, validate_default=True)
    name: str | None = Field(default=None, validate_default=True)
    json_: Any = Field(default=None, alias="json")
    query: dict[str, str] | None = None

    @field_validator("call")
    @classmethod
    def _known_call(cls, value: str | None) -> str | None:
        if value is not None and value not in CATALOG:
            raise ValueError(unknown_call_message(value))
        return value

    @field_validator("method", "path")
    @classmethod
    def _not_with_call(cls, value: str | None, info: ValidationInfo) -> str | None:
        call = info.data.get("call")
        if value is not None and call is not None:
            op = CATALOG[call]
            raise ValueError(
                f"give call or method and path, not both ({call} is {op.method} {op.path})"
            )
        return value

    @field_validator("path")
    @classmethod
    def _under_the_base(cls, value: str | None) -> str | None:
        if value is not None and any(seg in (".", "..") for seg in value.split("?")[0].split("/")):
            raise ValueError(
                f"path {value!r} has a '.' or '..' segment, which would leave API_URL's path "
                "(e.g. /v1); write the path as it is under API_URL"
            )
        return value

    @field_validator(*PATH_PARAMS)
    @classmethod
    def _path_param(cls, value: str | None, info: ValidationInfo) -> str | None:
        param = info.field_name
        if "call" not in info.data:  # the call itself is wrong: reported there
            return value
        call = info.data["call"]
        if call is None:
            if value is not None:
                raise ValueError(
                    f"'{param}' is a path parameter of call:; with method and path, "
                    "write the value into the path"
                )
            return value
        op = CATALOG[call]
        if param in op.path_params and not value:
            raise ValueError(f"{call} needs '{param}' (a non-empty value for {op.path})")
        if param not in op.path_params and value is not None:
            takes = ", ".join(op.path_params) or "no path parameters"
            raise ValueError(f"{call} ({op.method} {op.path}) takes {takes}, not '{param}'")
        return value

    @model_validator(mode="after")
    def _call_or_path(self) -> ApiParams:
        if self.call is None and self.path is None:
            raise ValueError("give call (e.g. call: vps.get) or path (with method)")
        return self

    def resolved(self) -> tuple[str, str]:
        """The request's method and path (path parameters each one encoded segment)."""
        if self.call is None:
            assert self.path is not None
            return self.method or "GET", self.path
        op = CATALOG[self.call]
        return op.method, op.path_for({p: getattr(self, p) for p in op.path_params})


async def run(ctx: StepContext, params: ApiParams) -> dict[str, Any]:
    method, path = params.resolved()
    response = await ctx.api.request(
        method,
        path,
        json_body=params.json_,
        query=params.query,
        idempotency_key=ctx.idempotency_key,
    )
    return response.as_result()


def describe(params: ApiParams) -> str:
    method, path = params.resolved()
    call = f" ({params.call})" if params.call else ""
    body = f" json={params.json_}" if params.json_ is not None else ""
    return f"{method} {path}{call}{body}"


STEP = StepType(
    name="api",
    params=ApiParams,
    run=run,
    transforms={"path": encode_segment},
    literal=frozenset({"method", "call"}),
    describe=describe,
)
