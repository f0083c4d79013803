"""Shared by the rules loader: reporting problems, typed reads of nodes, templates.

``Reader`` appends a ``Problem`` for each mistake (never raises), so one pass over the file
finds them all. Template references (``steps.<id>``) and target names used by steps are
recorded here and checked by the loader once the whole file has been read.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from handlers.exceptions import Problem
from handlers.ruleset import RetryPolicy
from handlers.templates import (
    Predicate,
    Template,
    TemplateSourceError,
    compile_predicate,
    compile_template,
    is_template,
)
from handlers.yamlload import Map, Node, Scalar, Seq
from receiver.durations import parse_duration

RETRY_KEYS = ("attempts", "backoff", "initial", "max")


@dataclass(frozen=True, slots=True)
class StepRef:
    """``steps.<step_id>`` used at ``line`` by step ``index`` (-1: the throttle key)."""

    line: int
    step_id: str
    index: int
    rule: str
    ids: dict[str, int]


@dataclass(frozen=True, slots=True)
class TargetRef:
    """A target named by a step of type ``step_type``."""

    line: int
    name: str
    step_type: str


def kind_of(node: Node) -> str:
    """How a wrong value is named in messages."""
    if isinstance(node, Map):
        return "a mapping"
    if isinstance(node, Seq):
        return "a list"
    value = node.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return node.text or str(value).lower()
    if isinstance(value, int | float):
        return f"the number {node.text}"
    return f"the string {value!r}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or nothing; appended to messages."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Reader:
    """Typed reads of rules-file nodes; every mistake becomes a Problem."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems
        self.target_refs: list[TargetRef] = []
        self.step_refs: list[StepRef] = []

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def warn(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message, warning=True))

    def mapping(self, node: Node, what: str) -> Map | None:
        if isinstance(node, Map):
            return node
        if _broken(node):
            return None
        self.error(node.line, f"{what} must be a mapping, not {kind_of(node)}")
        return None

    def text(self, node: Node, what: str) -> str | None:
        """A string where the schema wants one: unquoted scalars keep the text as written."""
        if _broken(node):
            return None
        if isinstance(node, Scalar) and node.value is not None:
            return node.text if node.plain else str(node.value)
        self.error(node.line, f"{what} must be a string, not {kind_of(node)}")
        return None

    def integer(self, node: Node, what: str) -> int | None:
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if _broken(node):
            return None
        self.error(node.line, f"{what} must be a whole number greater than 0, not {kind_of(node)}")
        return None

    def boolean(self, node: Node, what: str) -> bool | None:
        if isinstance(node, Scalar) and isinstance(node.value, bool):
            return node.value
        if _broken(node):
            return None
        self.error(node.line, f"{what} must be true or false, not {kind_of(node)}")
        return None

    def duration(self, node: Node, what: str, *, zero_ok: bool = False) -> float | None:
        if _broken(node):
            return None
        if not isinstance(node, Scalar) or node.value is None or isinstance(node.value, bool):
            self.error(
                node.line, f"{what} must be a duration such as 10s or 5m, not {kind_of(node)}"
            )
            return None
        raw = node.value if isinstance(node.value, int | float) else node.text
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            self.error(node.line, f"{what}: {exc}")
            return None
        if not math.isfinite(seconds) or (seconds <= 0 and not zero_ok):
            self.error(node.line, f"{what} must be a duration greater than 0")
            return None
        return seconds

    def unknown_keys(self, node: Map, allowed: tuple[str, ...], where: str) -> None:
        for key, (key_node, _) in node.entries.items():
            if key not in allowed:
                place = f" in {where}" if where else ""
                self.error(
                    key_node.line,
                    f"unknown key '{key}'{place}; expected one of: "
                    + ", ".join(allowed)
                    + did_you_mean(key, allowed),
                )

    def required(self, node: Map, key: str, where: str) -> Node | None:
        value = node.get(key)
        if value is None:
            self.error(node.line, f"{where} is missing required key '{key}'")
        return value

    def retry(self, node: Node, base: RetryPolicy, what: str) -> RetryPolicy | None:
        section = self.mapping(node, what)
        if section is None:
            return None
        self.unknown_keys(section, RETRY_KEYS, what)
        given: dict[str, Any] = {}
        if (value := section.get("attempts")) is not None:
            given["attempts"] = self.integer(value, f"{what}.attempts")
        if (value := section.get("backoff")) is not None:
            backoff = self.text(value, f"{what}.backoff")
            if backoff is not None and backoff not in ("exponential", "fixed"):
                self.error(
                    value.line, f"{what}.backoff must be exponential or fixed, not {kind_of(value)}"
                )
                backoff = None
            given["backoff"] = backoff
        for key in ("initial", "max"):
            if (value := section.get(key)) is not None:
                given[key] = self.duration(value, f"{what}.{key}", zero_ok=True)
        ok = all(v is not None for v in given.values())
        return replace(base, **given) if ok else None

    def template(
        self,
        node: Node,
        source: str | None,
        rule: str,
        index: int,
        ids: dict[str, int],
        *,
        encoded: bool = False,
    ) -> Template | str | None:
        """A compiled template, the string itself when it has no Jinja syntax, or None."""
        if source is None:
            return None
        source = _template_source(node, source)
        if not is_template(source):
            return source
        try:
            template = compile_template(source, encoded=encoded)
        except TemplateSourceError as exc:
            self.source_issues(node, exc, rule, index, ids)
            return None
        self.record_refs(node, template.step_refs, rule, index, ids)
        return template

    def predicate(
        self, node: Node, source: str | None, rule: str, index: int, ids: dict[str, int]
    ) -> Predicate | None:
        if source is None:
            return None
        try:
            predicate = compile_predicate(source)
        except TemplateSourceError as exc:
            self.source_issues(node, exc, rule, index, ids)
            return None
        self.record_refs(node, predicate.step_refs, rule, index, ids)
        return predicate

    def source_issues(
        self, node: Node, exc: TemplateSourceError, rule: str, index: int, ids: dict[str, int]
    ) -> None:
        for line, message in exc.issues:
            self.error(template_line(node, line), message)
        # A template with a mistake may also name a missing step: report that as well.
        self.record_refs(node, exc.step_refs, rule, index, ids)

    def record_refs(
        self,
        node: Node,
        refs: tuple[tuple[str, int], ...],
        rule: str,
        index: int,
        ids: dict[str, int],
    ) -> None:
        for step_id, line in refs:
            self.step_refs.append(StepRef(template_line(node, line), step_id, index, rule, ids))


def _template_source(node: Node, source: str) -> str:
    """``source``, with any ``${NAME}`` value in it as literal text (never Jinja syntax)."""
    if isinstance(node, Scalar) and node.template_text is not None and node.value == source:
        return node.template_text
    return source


def template_line(node: Node, line: int) -> int:
    """The file line of line ``line`` of a template written at ``node``."""
    # Only a literal block keeps the template's lines; other styles fold them.
    return node.line + line if isinstance(node, Scalar) and node.block else node.line


def _broken(node: Node) -> bool:
    """A value whose problem is already reported (an unset ${NAME}, a bad tag)."""
    return isinstance(node, Scalar) and node.broken
