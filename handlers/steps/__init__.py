"""Built-in step types. Adding one: a module with a ``STEP`` and a line here."""

from __future__ import annotations

from handlers.steps import api, file, http, log, python, slack
from handlers.steps.base import StepType

REGISTRY: dict[str, StepType] = {
    step.name: step for step in (api.STEP, slack.STEP, http.STEP, file.STEP, log.STEP, python.STEP)
}
