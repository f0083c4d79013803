"""``slack``: post a message to a Slack incoming webhook (a target, or ``url``).

Slack answers 200 ``ok``; its permanent errors (``invalid_payload``, ``channel_not_found``,
``no_service``, ``channel_is_archived``, ...) are 4xx and are not retried; 429 and 5xx are.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import model_validator

from handlers.client import send
from handlers.exceptions import StepError
from handlers.steps.base import Params, StepContext, StepType

# Slack's documented limit for a message's text.
MAX_TEXT = 40_000


class SlackParams(Params):
    target: str | None = None
    url: str | None = None
    text: str | None = None
    blocks: list[Any] | None = None

    @model_validator(mode="after")
    def _one_destination(self) -> SlackParams:
        if (self.target is None) == (self.url is None):
            raise ValueError("give exactly one of target (a name from targets:) or url")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        if self.text is None and self.blocks is None:
            raise ValueError("give text, blocks, or both")
        return self


async def run(ctx: StepContext, params: SlackParams) -> dict[str, Any]:
    if params.target is not None:
        target = ctx.targets.get(params.target)
        if target is None:
            raise StepError(f"unknown target {params.target!r}", retryable=False)
        url = target.url
    else:
        assert params.url is not None
        url = params.url
    payload: dict[str, Any] = {}
    if params.text is not None:
        payload["text"] = params.text[:MAX_TEXT]
    if params.blocks is not None:
        payload["blocks"] = params.blocks
    response = await send(ctx.http, "POST", url, json_body=payload)
    return {"status": response.status}


STEP = StepType(
    name="slack",
    params=SlackParams,
    run=run,
    # ``url`` is never a template: the host a message goes to comes from the rules file.
    literal=frozenset({"target", "url"}),
    target_field="target",
    describe=lambda p: f"slack {p.target or 'url'}: {p.text!r}",
)
