"""The loaded rules: RuleSet, Rule, StepSpec, RetryPolicy, Throttle, RuleTest.

Built by ``handlers.rules.load_rules`` (which also re-exports these names); immutable once
built, so a running worker can swap in a new RuleSet on reload without locks.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from handlers.conditions import Condition
from handlers.exceptions import Problem, StepError
from handlers.steps.base import Params, StepType, Target
from handlers.templates import Predicate, Template, render_params

# The platform's event types; rules naming none of them are warned.
from receiver.events import KNOWN_EVENT_TYPES as KNOWN_EVENT_TYPES


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a step is tried and how long to wait between tries.

    ``attempts`` counts every try (1 = never retry). ``delay`` uses *equal jitter*: half of
    the backoff is always waited, the other half is random. Compared with full jitter this
    never retries almost at once, which matters for a rate-limited API, while still
    spreading workers that failed together.
    """

    attempts: int = 5
    backoff: Literal["exponential", "fixed"] = "exponential"
    initial: float = 1.0
    max: float = 300.0

    def base_delay(self, attempt: int) -> float:
        """The wait after failed try ``attempt`` (1-based), before jitter."""
        if self.backoff == "fixed":
            return min(self.initial, self.max)
        # Cap the exponent: 2**attempt overflows float long before anyone waits that long.
        return min(self.max, self.initial * 2.0 ** min(max(attempt - 1, 0), 64))

    def delay(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """The wait after failed try ``attempt``: equal jitter on ``base_delay``."""
        base = self.base_delay(attempt)
        return base / 2 + rand() * base / 2


@dataclass(frozen=True, slots=True)
class Throttle:
    """At most ``limit`` runs per ``per`` seconds for each rendered ``key``."""

    limit: int
    per: float
    key: Template | str = ""
    line: int = 0
    # drop: runs over the limit are recorded as throttled and skipped; delay: they wait
    # for the next window.
    mode: str = "drop"

    def render_key(self, context: Mapping[str, Any]) -> str:
        """The throttle bucket for this event (``steps`` is empty at this point)."""
        return self.key if isinstance(self.key, str) else self.key.render(context)


@dataclass(frozen=True, slots=True, eq=False)
class StepSpec:
    """One step of a rule, ready to render and run."""

    type: str
    step_type: StepType
    # Parameters as written, with string values compiled to Templates (literal ones kept).
    params: Mapping[str, Any]
    index: int
    line: int
    timeout: float
    retry: RetryPolicy
    id: str | None = None
    continue_on_error: bool = False
    condition: Predicate | None = None
    # What a run's progress records the step under: a digest of its definition (and its
    # occurrence, for identical steps), so a re-run after the rule was edited — a step
    # inserted, removed or changed — skips only the steps that ran as they are now.
    key: str = ""

    @property
    def label(self) -> str:
        """How messages name this step: ``step 2 (api)`` or ``step 'kubeconfig' (api)``."""
        name = f"'{self.id}'" if self.id else str(self.index + 1)
        return f"step {name} ({self.type})"

    def should_run(self, context: Mapping[str, Any]) -> bool:
        """Whether ``if:`` holds (always true without one); raises TemplateError."""
        return self.condition is None or self.condition.evaluate(context)

    def render(self, context: Mapping[str, Any]) -> Params:
        """Render the parameters and validate them with the step type's model.

        Raises TemplateError, or StepError (not retryable) when the rendered values do not
        validate, e.g. an empty required field.
        """
        rendered = render_params(self.params, context, self.step_type.encoded)
        try:
            return self.step_type.params.model_validate(rendered)
        except ValidationError as exc:
            details = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'parameters'}: {err['msg']}"
                for err in exc.errors()
            )
            raise StepError(
                f"{self.label}: parameters invalid after rendering: {details}", retryable=False
            ) from None


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """A rule: which events (``on`` + ``when``) and what to do (``steps``)."""

    name: str
    on: tuple[str, ...]
    steps: list[StepSpec]
    line: int
    when: Condition | None = None
    throttle: Throttle | None = None
    ordered: bool = True
    # Runs of this rule at once, across all workers (None: no limit).
    concurrency: int | None = None

    def matches_type(self, event_type: str) -> bool:
        """Whether ``event_type`` matches one of the ``on`` patterns (fnmatch, case-sensitive)."""
        return any(fnmatchcase(event_type, pattern) for pattern in self.on)

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the rule fires for ``event`` (the raw event document)."""
        event_type = event.get("event")
        if not isinstance(event_type, str) or not self.matches_type(event_type):
            return False
        return self.when is None or self.when.evaluate(event)


@dataclass(frozen=True, slots=True)
class Expectation:
    """A test's claim that ``rule`` fires (or, ``fires=False``, does not), written at ``line``."""

    rule: str
    fires: bool
    line: int


@dataclass(frozen=True, slots=True, eq=False)
class RuleTest:
    """One entry of the rules file's ``tests:``: an event and which rules must (not) fire."""

    name: str
    event_type: str
    data: Mapping[str, Any]
    line: int
    expect: tuple[Expectation, ...] = ()
    timestamp: str | None = None  # None: the time the test runs

    def event(self, now: datetime | None = None) -> dict[str, Any]:
        """The event document, stamped ``now`` (default: the current time) without a timestamp."""
        stamp = self.timestamp or timestamp_of(now or datetime.now(UTC))
        return {"event": self.event_type, "timestamp": stamp, "data": dict(self.data)}


def timestamp_of(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second, as the platform writes it."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    """A validated rules file."""

    path: Path
    version: int
    digest: str  # sha256 hex of the file's bytes
    targets: dict[str, Target] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    # Warnings found while loading (they do not stop the rules from loading).
    warnings: tuple[Problem, ...] = ()
    # The file's ``tests:`` (run by ``tashooks check --test``; the worker ignores them).
    tests: tuple[RuleTest, ...] = ()
    # The values ``${NAME}`` put into the file: masked in audit records and logs like the
    # configured secrets (a webhook URL or a token is often one of them).
    env_values: tuple[str, ...] = ()

    @property
    def version_hash(self) -> str:
        """Short digest for logs and audit records."""
        return self.digest[:12]

    def match(self, event: Mapping[str, Any]) -> list[Rule]:
        """The rules that fire for ``event``, in file order."""
        return [rule for rule in self.rules if rule.matches(event)]

    def get(self, name: str) -> Rule | None:
        """The rule called ``name``."""
        return next((rule for rule in self.rules if rule.name == name), None)
