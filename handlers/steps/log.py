"""``log``: write a line to the worker's log."""

from __future__ import annotations

import logging
from typing import Literal

from handlers.steps.base import Params, StepContext, StepType

logger = logging.getLogger("tashooks.rules")
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class LogParams(Params):
    message: str
    level: Literal["debug", "info", "warning", "error"] = "info"


async def run(ctx: StepContext, params: LogParams) -> None:
    logger.log(
        _LEVELS[params.level],
        "%s",
        params.message,
        extra={"event_id": ctx.event_id, "rule": ctx.rule},
    )


STEP = StepType(
    name="log",
    params=LogParams,
    run=run,
    literal=frozenset({"level"}),
    describe=lambda p: f"log {p.level}: {p.message}",
)
