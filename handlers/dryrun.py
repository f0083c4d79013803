"""Dry runs: what the rules would do with an event, without doing any of it.

Pure logic: nothing is called, nothing is written, Redis is not asked. For every rule, in
file order: whether it fires and, when it does not, why — ``on`` did not match the event
type, or the ``when`` condition that failed (``Condition.explain``). For a rule that fires,
every step as it would run: the outcome of its ``if:``, its parameters rendered with
``StepSpec.render`` and described by ``StepType.describe``. A step that cannot be rendered
shows its error and the following steps are still shown.

Results of earlier steps do not exist in a dry run: ``steps.<id>`` is an ``Unknown`` that
renders as ``<result of steps.<id>>``, and so does anything read from it
(``steps.kubeconfig.body`` renders as ``<result of steps.kubeconfig.body>``). An ``if:``
that reads ``steps`` cannot be decided: the step is shown as if it ran (status ``maybe``).

What needs state is not evaluated: ``throttle`` (its counts live in Redis), whether an
event is stale (``ordered``) and ``concurrency``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from handlers.exceptions import StepError
from handlers.redact import redact
from handlers.ruleset import Rule, RuleSet, StepSpec, Throttle

DRY_RUN_EVENT_ID = "evt_dry_run"
StepStatus = Literal["runs", "maybe", "skipped", "error"]
# Attributes Jinja looks up on objects it calls; an Unknown must not pretend to have them.
_JINJA_PROBES = frozenset({"jinja_pass_arg", "unsafe_callable", "alters_data"})
_PREFIX, _SUFFIX = "<result of ", ">"


def unknown(expression: str) -> Unknown:
    """The Unknown standing for ``expression`` (e.g. ``steps.kubeconfig``)."""
    return Unknown(f"{_PREFIX}{expression}{_SUFFIX}")


class Unknown(str):
    """An earlier step's result, unknown in a dry run.

    It is the text ``<result of steps.x>``, so filters that take text work on it; any
    attribute, item or call of it is an Unknown too (``steps.x.body.ip``,
    ``steps.x.body['ip']``, ``steps.x.body.items()``), and iterating over it gives one.
    """

    def _expression(self) -> str:
        text = str.__str__(self)
        return text[len(_PREFIX) : -len(_SUFFIX)]

    def __getattribute__(self, name: str) -> Any:
        # Every public name reads as part of the result (``.path``, ``.title``, ``.count``
        # too): str's methods stay reachable for Python itself (dunders) and this class.
        if name.startswith("_") or name in _JINJA_PROBES:
            return super().__getattribute__(name)
        return unknown(f"{self._expression()}.{name}")

    def __getitem__(self, key: Any) -> Unknown:
        return unknown(f"{self._expression()}[{key!r}]")

    def __call__(self, *args: Any, **kwargs: Any) -> Unknown:
        return unknown(f"{self._expression()}(...)")

    def __iter__(self) -> Iterator[Unknown]:
        yield unknown(f"{self._expression()}[0]")

    # Arithmetic gives an Unknown; an order comparison is false (nothing is known).
    def _operation(self, operator: str, other: Any, reverse: bool = False) -> Unknown:
        mine = self._expression()
        left, right = (repr(other), mine) if reverse else (mine, repr(other))
        return unknown(f"{left} {operator} {right}")

    def __add__(self, other: Any) -> Unknown:
        return self._operation("+", other)

    def __radd__(self, other: Any) -> Unknown:
        return self._operation("+", other, reverse=True)

    def __sub__(self, other: Any) -> Unknown:
        return self._operation("-", other)

    def __rsub__(self, other: Any) -> Unknown:
        return self._operation("-", other, reverse=True)

    def __mul__(self, other: Any) -> Unknown:
        return self._operation("*", other)

    def __rmul__(self, other: Any) -> Unknown:
        return self._operation("*", other, reverse=True)

    def __truediv__(self, other: Any) -> Unknown:
        return self._operation("/", other)

    def __mod__(self, other: Any) -> Unknown:
        return self._operation("%", other)

    def __lt__(self, other: Any) -> bool:
        return False

    __le__ = __gt__ = __ge__ = __lt__


@dataclass(frozen=True, slots=True)
class StepPlan:
    """One step as it would run.

    ``status``: ``runs``; ``maybe`` (its ``if:`` reads earlier results, so it is shown as
    if it ran); ``skipped`` (its ``if:`` is false); ``error`` (it would fail: ``error``).
    """

    index: int
    type: str
    id: str | None
    line: int
    label: str
    status: StepStatus
    condition: str | None = None  # the ``if:`` as written
    note: str | None = None  # why skipped, or why maybe
    description: str | None = None
    params: Mapping[str, Any] | None = None  # rendered; secret-looking values masked
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RulePlan:
    """One rule: whether it fires, why not, and (when it fires) its steps."""

    rule: str
    line: int
    fires: bool
    reason: str | None = None
    notes: tuple[str, ...] = ()
    steps: tuple[StepPlan, ...] = ()

    @property
    def errors(self) -> list[StepPlan]:
        """The steps that would fail."""
        return [step for step in self.steps if step.status == "error"]


@dataclass(frozen=True, slots=True)
class DryRun:
    """What every rule would do with ``event``."""

    event: Mapping[str, Any]
    rules: tuple[RulePlan, ...]

    @property
    def fired(self) -> list[RulePlan]:
        """The rules that fire, in file order."""
        return [plan for plan in self.rules if plan.fires]

    def get(self, name: str) -> RulePlan | None:
        """The plan of the rule called ``name``."""
        return next((plan for plan in self.rules if plan.rule == name), None)

    def to_json(self) -> dict[str, Any]:
        """The dry run as JSON-ready values."""
        return {
            "event": dict(self.event),
            "fired": [plan.rule for plan in self.fired],
            "rules": [asdict(plan) for plan in self.rules],
        }


def dry_run(
    ruleset: RuleSet, event: Mapping[str, Any], *, event_id: str = DRY_RUN_EVENT_ID
) -> DryRun:
    """What the rules would do with ``event`` (an event document: event, timestamp, data)."""
    return DryRun(event, tuple(plan_rule(rule, event, event_id) for rule in ruleset.rules))


def plan_rule(rule: Rule, event: Mapping[str, Any], event_id: str = DRY_RUN_EVENT_ID) -> RulePlan:
    """Whether ``rule`` fires for ``event`` and, if it does, what its steps would do."""
    event_type = event.get("event")
    if not isinstance(event_type, str) or not rule.matches_type(event_type):
        shown = repr(event_type) if isinstance(event_type, str) else "missing"
        reason = f"on: {', '.join(rule.on)} does not match the event type {shown}"
        return RulePlan(rule.name, rule.line, False, reason)
    if rule.when is not None and (why := rule.when.explain(event)) is not None:
        return RulePlan(rule.name, rule.line, False, f"when: {why}")
    if rule.throttle is not None:
        context = {"event": event, "steps": {}, "rule": rule.name, "event_id": event_id}
        try:
            rule.throttle.render_key(context)
        except StepError as exc:
            # The daemon cannot place the run in a throttle window: it dead-letters it.
            reason = f"throttle key cannot be rendered ({exc}); the run would be dead-lettered"
            return RulePlan(rule.name, rule.line, False, reason)
    notes = () if rule.throttle is None else (_throttle_note(rule, rule.throttle, event, event_id),)
    return RulePlan(rule.name, rule.line, True, None, notes, plan_steps(rule, event, event_id))


def plan_steps(
    rule: Rule, event: Mapping[str, Any], event_id: str = DRY_RUN_EVENT_ID
) -> tuple[StepPlan, ...]:
    """Each step of ``rule`` as it would run for ``event``, earlier results unknown."""
    steps: dict[str, Any] = {}
    plans: list[StepPlan] = []
    for spec in rule.steps:
        context = {"event": event, "steps": dict(steps), "rule": rule.name, "event_id": event_id}
        plan = _plan_step(spec, context)
        plans.append(plan)
        if spec.id and plan.status != "skipped":  # as in a real run: skipped steps leave none
            steps[spec.id] = unknown(f"steps.{spec.id}")
    return tuple(plans)


def _plan_step(spec: StepSpec, context: Mapping[str, Any]) -> StepPlan:
    condition = spec.condition.source if spec.condition is not None else None
    base: dict[str, Any] = {
        "index": spec.index,
        "type": spec.type,
        "id": spec.id,
        "line": spec.line,
        "label": spec.label,
        "condition": condition,
    }
    status: StepStatus = "runs"
    note: str | None = None
    if spec.condition is not None and spec.condition.step_refs:
        names = ", ".join(sorted({f"steps.{ref}" for ref, _ in spec.condition.step_refs}))
        status = "maybe"
        note = f"if: depends on {names}, unknown in a dry run; shown as if it runs"
    elif spec.condition is not None:
        try:
            runs = spec.should_run(context)
        except StepError as exc:
            return StepPlan(**base, status="error", error=f"if: {exc}")
        if not runs:
            return StepPlan(**base, status="skipped", note=f"if: {condition} is false")
    try:
        params = spec.render(context)
    except StepError as exc:
        return StepPlan(**base, status="error", note=note, error=str(exc))
    shown = params.model_dump(mode="json", by_alias=True, exclude_none=True)
    describe = spec.step_type.describe
    try:
        description = describe(params) if describe else f"{spec.type} {json.dumps(shown)}"
    except Exception as exc:  # a step type's describe must not break the dry run
        description = f"{spec.type} (cannot describe: {type(exc).__name__}: {exc})"
    return StepPlan(
        **base,
        status=status,
        note=note,
        description=description,
        params=redact(shown),
    )


def _throttle_note(rule: Rule, throttle: Throttle, event: Mapping[str, Any], event_id: str) -> str:
    context = {"event": event, "steps": {}, "rule": rule.name, "event_id": event_id}
    try:
        key = repr(throttle.render_key(context))
    except StepError as exc:
        key = f"that cannot be rendered ({exc})"
    runs = "run" if throttle.limit == 1 else "runs"
    over = "wait for the next window" if throttle.mode == "delay" else "are dropped"
    return (
        f"throttle: at most {throttle.limit} {runs} per {format_duration(throttle.per)} for "
        f"key {key} (more {over}); not evaluated in a dry run"
    )


def format_duration(seconds: float) -> str:
    """``600.0`` as ``10m``, ``1.5`` as ``1500ms``: the largest unit that divides it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"
