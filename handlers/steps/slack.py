"""``slack``: post a message to a Slack incoming webhook (a target, or ``url``).

Slack answers 200 ``ok``; its permanent errors (``invalid_payload``, ``channel_not_found``,
``no_service``, ``channel_is_archived``, ...) are 4xx and are not retried; 429 and 5xx are.

What templates put into ``text`` and ``blocks`` is escaped for Slack (``&``, ``<``, ``>``
become entities): event data cannot mention ``<!channel>`` or forge a link; the rule's own
text can. The webhook's host must be public unless the target (or, with ``url:``, the step)
says ``allow_private: true``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import field_validator, model_validator

from handlers.client import send
from handlers.exceptions import StepError
from handlers.steps.base import Params, StepContext, StepType
from handlers.transforms import escape_slack

# Slack's documented limits: a message's text, and blocks in one message.
MAX_TEXT = 40_000
MAX_BLOCKS = 50
_ENTITIES = ("&amp;", "&lt;", "&gt;")


class SlackParams(Params):
    target: str | None = None
    url: str | None = None
    text: str | None = None
    blocks: list[Any] | None = None
    # Only with ``url``: a target carries its own ``allow_private``. None (not given) is left
    # out of dry runs and audit records, which would otherwise show a false the target
    # may not mean.
    allow_private: bool | None = None

    @field_validator("blocks")
    @classmethod
    def _few_blocks(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and len(value) > MAX_BLOCKS:
            raise ValueError(
                f"at most {MAX_BLOCKS} blocks fit in a Slack message, not {len(value)}"
            )
        return value

    @model_validator(mode="after")
    def _one_destination(self) -> SlackParams:
        if (self.target is None) == (self.url is None):
            raise ValueError("give exactly one of target (a name from targets:) or url")
        if self.url is not None and urlsplit(self.url).scheme not in ("http", "https"):
            raise ValueError(f"url {self.url!r} is not an http(s) URL")
        if self.target is not None and self.allow_private:
            raise ValueError(
                "allow_private belongs to the target: set it under targets: "
                f"{self.target}: {{..., allow_private: true}}"
            )
        if self.text is None and self.blocks is None:
            raise ValueError("give text, blocks, or both")
        return self


def cut(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, never in the middle of an escape (``&amp;``)."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    amp = head.rfind("&", max(0, limit - 4))  # an escape is at most 5 characters long
    if amp != -1 and any(text.startswith(e, amp) and amp + len(e) > limit for e in _ENTITIES):
        head = head[:amp]
    return head


async def run(ctx: StepContext, params: SlackParams) -> dict[str, Any]:
    if params.target is not None:
        target = ctx.targets.get(params.target)
        if target is None:
            raise StepError(f"unknown target {params.target!r}", retryable=False)
        url, allow_private = target.url, target.allow_private
    else:
        assert params.url is not None
        url, allow_private = params.url, bool(params.allow_private)
    payload: dict[str, Any] = {}
    if params.text is not None:
        payload["text"] = cut(params.text)
    if params.blocks is not None:
        payload["blocks"] = params.blocks[:MAX_BLOCKS]
    response = await send(ctx.http, "POST", url, json_body=payload, allow_private=allow_private)
    return {"status": response.status}


STEP = StepType(
    name="slack",
    params=SlackParams,
    run=run,
    transforms={"text": escape_slack, "blocks": escape_slack},
    # ``url`` is never a template: the host a message goes to comes from the rules file.
    literal=frozenset({"target", "url", "allow_private"}),
    target_field="target",
    describe=lambda p: f"slack {p.target or 'url'}: {p.text!r}",
)
