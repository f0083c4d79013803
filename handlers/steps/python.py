"""``python``: await a function of yours: ``python: {handler: "module:function", with: {...}}``.

The function is ``async def fn(event, api, params)``: ``event`` is a copy of the delivery
(``event``, ``timestamp``, ``data``), ``api`` the worker's ``ApiClient``, ``params`` the
rendered ``with:`` mapping. What it returns (JSON-able) becomes ``steps.<id>``.

The module is imported and the function looked up when the rules file loads (so
``tashooks check`` reports a wrong name at its line); importing runs the module's code.
A ``StepError`` it raises keeps its ``retryable``; any other exception is not retried.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import Field, field_validator

from handlers.exceptions import StepError
from handlers.steps.base import Params, StepContext, StepType

_HANDLER = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def resolve(handler: str) -> Callable[..., Any]:
    """The async function ``module:function`` names; ``ValueError`` saying what is wrong."""
    if not _HANDLER.match(handler):
        raise ValueError(f"handler {handler!r} must be 'package.module:function'")
    module_name, _, attr_path = handler.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import module '{module_name}': {exc}") from None
    except Exception as exc:  # the module's own code failed while importing
        raise ValueError(
            f"importing module '{module_name}' failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise ValueError(
                f"module '{module_name}' has no '{attr_path}' (a running worker imports a "
                "module once: after adding a function to it, restart the worker)"
            )
        target = getattr(target, part)
    if not inspect.iscoroutinefunction(target):
        raise ValueError(
            f"{handler} is not an async function; define it as async def (event, api, params)"
        )
    return target  # type: ignore[no-any-return]


class PythonParams(Params):
    handler: str
    with_: dict[str, Any] | None = Field(default=None, alias="with")

    @field_validator("handler")
    @classmethod
    def _importable(cls, value: str) -> str:
        resolve(value)
        return value


async def run(ctx: StepContext, params: PythonParams) -> Any:
    fn = resolve(params.handler)
    try:
        result = await fn(copy.deepcopy(dict(ctx.event)), ctx.api, params.with_ or {})
    except StepError:
        raise
    except Exception as exc:
        raise StepError(
            f"{params.handler} raised {type(exc).__name__}: {exc}", retryable=False
        ) from exc
    # Stored as the step's result and read back after a crash or a retry: it must come
    # back the same, so only JSON's values (a set or a datetime would come back a string).
    try:
        json.dumps(result, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StepError(
            f"{params.handler} returned a value that is not JSON ({exc}); return dicts, "
            "lists, strings, numbers, booleans or None (e.g. a list for a set, an ISO "
            "string for a datetime)",
            retryable=False,
        ) from None
    return result


STEP = StepType(
    name="python",
    params=PythonParams,
    run=run,
    literal=frozenset({"handler"}),
    describe=lambda p: f"await {p.handler}(event, api, {p.with_ or {}})",
)
