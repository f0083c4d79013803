"""Validating one step of a rule: its type, parameters (with their templates) and options.

Parameters are validated twice: here as written (string values are still template source),
and by ``StepSpec.render`` after rendering. Each string parameter not in the step type's
``literal`` set is compiled as a template; ``encoded`` ones in percent-encoding mode.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from handlers.ruleset import RetryPolicy, StepSpec
from handlers.schema import Reader, TargetRef, did_you_mean, kind_of
from handlers.steps import REGISTRY
from handlers.steps.base import StepType
from handlers.templates import Predicate
from handlers.yamlload import Map, Node, Scalar, Seq, to_python

STEP_KEYS = ("id", "if", "timeout", "retry", "continue_on_error")
_STEP_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StepReader(Reader):
    """Reads a rule's ``steps:``."""

    def steps(
        self,
        node: Node | None,
        rule: str,
        ids: dict[str, int],
        timeout: float,
        retry: RetryPolicy,
    ) -> list[StepSpec] | None:
        if node is None:
            return None
        if not isinstance(node, Seq) or not node.items:
            self.error(node.line, "steps must be a non-empty list of steps")
            return None
        # Ids first, so templates can be checked against the whole rule.
        for index, item in enumerate(node.items):
            if isinstance(item, Map) and (id_node := item.get("id")) is not None:
                step_id = self.text(id_node, "step id")
                if step_id is not None and not _STEP_ID.match(step_id):
                    self.error(
                        id_node.line,
                        f"step id '{step_id}' must be an identifier "
                        "(letters, digits and '_', not starting with a digit)",
                    )
                elif step_id is not None and step_id in ids:
                    first = node.items[ids[step_id]].line
                    self.error(
                        id_node.line, f"duplicate step id '{step_id}' (first used at line {first})"
                    )
                elif step_id is not None:
                    ids[step_id] = index
        steps = [
            self.step(item, index, rule, ids, timeout, retry)
            for index, item in enumerate(node.items)
        ]
        if not all(steps):
            return None
        seen: Counter[str] = Counter()
        keyed: list[StepSpec] = []
        for spec, item in zip(steps, node.items, strict=True):
            assert spec is not None
            definition = json.dumps(to_python(item), sort_keys=True, default=str)
            digest = hashlib.sha256(definition.encode()).hexdigest()[:16]
            seen[digest] += 1
            key = digest if seen[digest] == 1 else f"{digest}#{seen[digest]}"
            keyed.append(replace(spec, key=key))
        return keyed

    def step(
        self,
        node: Node,
        index: int,
        rule: str,
        ids: dict[str, int],
        timeout: float,
        retry: RetryPolicy,
    ) -> StepSpec | None:
        spec = self.mapping(node, "each step")
        if spec is None:
            return None
        step_type = self.step_type(spec)
        params = None
        if step_type is not None:
            params = self.params(step_type, spec.get(step_type.name), spec, rule, index, ids)
        ok = params is not None
        step_id = None
        if (value := spec.get("id")) is not None:
            step_id = self.text(value, "step id")  # validated with the other ids
        condition: Predicate | None = None
        if (value := spec.get("if")) is not None:
            if isinstance(value, Scalar) and isinstance(value.value, bool):
                source: str | None = "true" if value.value else "false"
            else:
                source = self.text(value, "if")
            condition = self.predicate(value, source, rule, index, ids)
            ok = ok and condition is not None
        step_timeout: float | None = timeout
        if (value := spec.get("timeout")) is not None:
            step_timeout = self.duration(value, "timeout")
        step_retry: RetryPolicy | None = retry
        if (value := spec.get("retry")) is not None:
            step_retry = self.retry(value, retry, "retry")
        continue_on_error: bool | None = False
        if (value := spec.get("continue_on_error")) is not None:
            continue_on_error = self.boolean(value, "continue_on_error")
        if (
            not ok
            or step_type is None
            or params is None
            or step_timeout is None
            or step_retry is None
            or continue_on_error is None
        ):
            return None
        return StepSpec(
            step_type.name,
            step_type,
            params,
            index,
            spec.line,
            step_timeout,
            step_retry,
            step_id,
            continue_on_error,
            condition,
        )

    def step_type(self, spec: Map) -> StepType | None:
        """The one step-type key of a step; every other key must be a step option."""
        types = [k for k in spec.entries if k in REGISTRY]
        unknown = [k for k in spec.entries if k not in REGISTRY and k not in STEP_KEYS]
        known = ", ".join(REGISTRY)
        if not types and len(unknown) == 1:
            self.error(
                spec.key_line(unknown[0]),
                f"unknown step type '{unknown[0]}'; expected one of: {known}"
                + did_you_mean(unknown[0], REGISTRY),
            )
            return None
        for key in unknown:
            self.error(
                spec.key_line(key),
                f"unknown key '{key}' in step; expected one of: "
                f"{', '.join(STEP_KEYS)}, or a step type ({known})"
                + did_you_mean(key, [*STEP_KEYS, *REGISTRY]),
            )
        if not types:
            self.error(spec.line, f"step has no type; add one of: {known}")
            return None
        if len(types) > 1:
            self.error(
                spec.key_line(types[1]),
                f"step has more than one type ({', '.join(types)}); put each in its own step",
            )
            return None
        return REGISTRY[types[0]]

    def params(
        self,
        step_type: StepType,
        node: Node | None,
        step: Map,
        rule: str,
        index: int,
        ids: dict[str, int],
    ) -> dict[str, Any] | None:
        """Validate a step's parameters as written, then compile their templates."""
        name = step_type.name
        if node is None or (isinstance(node, Scalar) and node.value is None):
            node = Map({}, step.key_line(name))  # `- log:` alone: report what is missing
        if not isinstance(node, Map):
            self.error(
                node.line,
                f"{name} parameters must be a mapping, e.g. {name}: {{...}}, not {kind_of(node)}",
            )
            return None
        field = step_type.target_field
        target = node.get(field) if field else None
        # Recorded before validating, so an unknown target is reported with other mistakes.
        if field and isinstance(target, Scalar) and target.value is not None and not target.broken:
            written = target.text if target.plain else str(target.value)
            self.target_refs.append(TargetRef(node.key_line(field), written, name))
        raw = self.validated(step_type, node)
        # Even when some parameter is wrong, the others' templates are checked.
        known = {f.alias or n for n, f in step_type.params.model_fields.items()}
        given = (
            raw
            if raw is not None
            else {key: to_python(value) for key, (_, value) in node.entries.items() if key in known}
        )
        compiled = self.compile_params(step_type, given, node, rule, index, ids)
        return compiled if raw is not None else None

    def compile_params(
        self,
        step_type: StepType,
        raw: dict[str, Any],
        node: Map,
        rule: str,
        index: int,
        ids: dict[str, int],
    ) -> dict[str, Any] | None:
        """The parameters with their templates compiled; None when a template is wrong."""
        compiled: dict[str, Any] = {}
        ok = True
        for key, value in raw.items():
            if key in step_type.literal:
                compiled[key] = value
                continue
            compiled[key] = self.compile_value(
                value, node.get(key) or node, rule, index, ids, encoded=key in step_type.encoded
            )
            ok = ok and compiled[key] is not _BROKEN
        return compiled if ok else None

    def validated(self, step_type: StepType, node: Map) -> dict[str, Any] | None:
        """The parameters as plain values, if the step type's model accepts them.

        Where the model wants a string and the file has an unquoted number (``mode: 0600``,
        an id ``0123``), the text as written is used: YAML 1.2 typing must not change it.
        """
        raw: dict[str, Any] = to_python(node)
        for _ in range(len(raw) * 8 + 8):  # each round fixes at least one scalar
            try:
                step_type.params.model_validate(raw)
                return raw
            except ValidationError as exc:
                errors = exc.errors()
            fixes = [
                (err["loc"], found)
                for err in errors
                if err["type"] == "string_type"
                and isinstance(found := _node_at(node, err["loc"]), Scalar)
                and found.plain
                and found.value is not None
            ]
            if not fixes:
                break
            for loc, found in fixes:
                _set_at(raw, loc, found.text)
        for err in errors:
            loc = err["loc"]
            found = _node_at(node, loc)
            line = found.line
            if err["type"] == "extra_forbidden" and isinstance(loc[-1], str):
                line = node.key_line(loc[-1]) if len(loc) == 1 else line
            self.error(line, _param_message(step_type, err))
        return None

    def compile_value(
        self,
        value: Any,
        node: Node,
        rule: str,
        index: int,
        ids: dict[str, int],
        *,
        encoded: bool = False,
    ) -> Any:
        """Strings compiled to Templates, recursively; ``_BROKEN`` if any has a mistake."""
        if isinstance(value, str):
            compiled = self.template(node, value, rule, index, ids, encoded=encoded)
            return _BROKEN if compiled is None else compiled
        if isinstance(value, dict):
            out = {
                k: self.compile_value(
                    v, node.get(k) or node if isinstance(node, Map) else node, rule, index, ids
                )
                for k, v in value.items()
            }
            return _BROKEN if _BROKEN in out.values() else out
        if isinstance(value, list):
            items = [
                self.compile_value(
                    v,
                    node.items[i] if isinstance(node, Seq) and i < len(node.items) else node,
                    rule,
                    index,
                    ids,
                )
                for i, v in enumerate(value)
            ]
            return _BROKEN if any(i is _BROKEN for i in items) else items
        return value


# Marks a parameter whose template has a mistake (already reported).
_BROKEN: Any = object()


def _node_at(node: Node, loc: tuple[int | str, ...]) -> Node:
    """The deepest node along a pydantic error location (unions add extra parts: skip)."""
    current = node
    for part in loc:
        if isinstance(current, Map) and isinstance(part, str) and part in current.entries:
            current = current.entries[part][1]
        elif isinstance(current, Seq) and isinstance(part, int) and part < len(current.items):
            current = current.items[part]
        else:
            break
    return current


def _set_at(raw: Any, loc: tuple[int | str, ...], value: Any) -> None:
    """Set ``value`` at ``loc`` inside ``raw`` (ignoring parts that are not keys/indexes)."""
    parents: list[tuple[Any, int | str]] = []
    current = raw
    for part in loc:
        if isinstance(current, dict) and part in current:
            parents.append((current, part))
            current = current[part]
        elif isinstance(current, list) and isinstance(part, int) and part < len(current):
            parents.append((current, part))
            current = current[part]
        else:
            break
    if parents:
        container, key = parents[-1]
        container[key] = value


def _param_message(step_type: StepType, err: Any) -> str:
    name = step_type.name
    loc = ".".join(str(part) for part in err["loc"])
    if err["type"] == "missing":
        return f"{name} step is missing required parameter '{loc}'"
    if err["type"] == "extra_forbidden":
        fields = ", ".join(f.alias or n for n, f in step_type.params.model_fields.items())
        return f"unknown parameter '{loc}' for {name}; expected one of: {fields}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return f"{name} parameter '{loc}': {message}" if loc else f"{name}: {message}"
