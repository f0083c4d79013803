"""``when:`` conditions: a small typed union (All, Any, Not, Match), each with ``evaluate``.

A ``when:`` mapping holds when every entry holds. A key is a dotted path into the event
document (``data.status``, ``event``, ``data.tags.0``) or one of the composing keys ``all:``
(a list of conditions), ``any:`` (a list) and ``not:`` (one condition). A value is either a
plain value (equality) or a mapping with exactly one operator:

    eq ne in not_in matches not_matches exists gt gte lt lte

A field that is missing fails every operator except ``exists: false``, ``ne`` and
``not_in``. ``gt``/``gte``/``lt``/``lte`` compare numbers and are false (never an error)
when the field is not a number. ``matches`` uses ``re.search`` on the field's text (JSON for
non-strings). An unquoted operand such as ``0123`` also equals the string it was written as,
so ids written without quotes still match string ids in events.

Evaluation never raises: events come from outside and a rule simply does not fire.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any as AnyValue

from handlers.exceptions import Problem
from handlers.yamlload import Map, Node, Scalar, Seq, parse, to_python

OPERATORS = (
    "eq",
    "ne",
    "in",
    "not_in",
    "matches",
    "not_matches",
    "exists",
    "gt",
    "gte",
    "lt",
    "lte",
)
_COMPARE = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}
_PATH = re.compile(r"^[^.\s]+(?:\.[^.\s]+)*$")
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Loose:
    """An unquoted operand: equal to its value, or to the string it was written as."""

    value: AnyValue
    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Match:
    """One field test: ``path`` (dotted) ``operator`` ``operand``."""

    path: str
    operator: str
    operand: AnyValue
    line: int = 0

    def evaluate(self, event: Mapping[str, AnyValue]) -> bool:
        """Whether the event's field satisfies the operator."""
        actual = lookup(event, self.path)
        op, operand = self.operator, self.operand
        if actual is _MISSING:
            return op in ("ne", "not_in") or (op == "exists" and operand is False)
        if op == "exists":
            return operand is True
        if op in ("eq", "ne"):
            return _equal(actual, operand) == (op == "eq")
        if op in ("in", "not_in"):
            found = any(_equal(actual, item) for item in operand)
            return found == (op == "in")
        if op in ("matches", "not_matches"):
            found = operand.search(_text(actual)) is not None
            return found == (op == "matches")
        if not _is_number(actual):
            return False
        try:
            return bool(_COMPARE[op](actual, operand))
        except (TypeError, ValueError):  # pragma: no cover - numbers always compare
            return False

    def explain(self, event: Mapping[str, AnyValue]) -> str | None:
        """None when the test holds, else why not (for dry runs)."""
        if self.evaluate(event):
            return None
        actual = lookup(event, self.path)
        shown = "missing" if actual is _MISSING else _show(actual)
        return f"{self.path} is {shown}; wanted {self.describe()}"

    def describe(self) -> str:
        """The test as people write it, e.g. ``data.status in ['stopped', 'error']``."""
        operand = self.operand
        if self.operator in ("matches", "not_matches"):
            return f"{self.path} {self.operator} {operand.pattern!r}"
        if self.operator in ("in", "not_in"):
            return f"{self.path} {self.operator} [{', '.join(_show(o) for o in operand)}]"
        return f"{self.path} {self.operator} {_show(operand)}"


@dataclass(frozen=True, slots=True)
class All:
    """Every condition holds (a ``when:`` mapping, or ``all: [...]``)."""

    conditions: tuple[Condition, ...]
    line: int = 0

    def evaluate(self, event: Mapping[str, AnyValue]) -> bool:
        """Whether every condition holds (true when empty)."""
        return all(c.evaluate(event) for c in self.conditions)

    def explain(self, event: Mapping[str, AnyValue]) -> str | None:
        """None when all hold, else the reasons of those that fail."""
        reasons = [r for c in self.conditions if (r := c.explain(event)) is not None]
        return "; ".join(reasons) or None

    def describe(self) -> str:
        """``all(a, b)``."""
        return "all(" + ", ".join(c.describe() for c in self.conditions) + ")"


@dataclass(frozen=True, slots=True)
class Any:
    """At least one condition holds (``any: [...]``)."""

    conditions: tuple[Condition, ...]
    line: int = 0

    def evaluate(self, event: Mapping[str, AnyValue]) -> bool:
        """Whether some condition holds."""
        return any(c.evaluate(event) for c in self.conditions)

    def explain(self, event: Mapping[str, AnyValue]) -> str | None:
        """None when one holds, else every reason."""
        if self.evaluate(event):
            return None
        return "none of: " + "; ".join(str(c.explain(event)) for c in self.conditions)

    def describe(self) -> str:
        """``any(a, b)``."""
        return "any(" + ", ".join(c.describe() for c in self.conditions) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    """The condition does not hold (``not: {...}``)."""

    condition: Condition
    line: int = 0

    def evaluate(self, event: Mapping[str, AnyValue]) -> bool:
        """Whether the inner condition fails."""
        return not self.condition.evaluate(event)

    def explain(self, event: Mapping[str, AnyValue]) -> str | None:
        """None when the inner condition fails, else that it held."""
        if self.evaluate(event):
            return None
        return f"{self.condition.describe()} holds; wanted it not to"

    def describe(self) -> str:
        """``not(a)``."""
        return f"not({self.condition.describe()})"


Condition = All | Any | Not | Match


def lookup(document: Mapping[str, AnyValue], path: str) -> AnyValue:
    """The value at dotted ``path`` (list items by number), or the ``_MISSING`` sentinel."""
    current: AnyValue = document
    for part in path.split("."):
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            return _MISSING
    return current


def is_missing(value: object) -> bool:
    """Whether ``lookup`` found nothing."""
    return value is _MISSING


def _equal(actual: AnyValue, expected: AnyValue) -> bool:
    if isinstance(expected, Loose):
        return _same(actual, expected.value) or actual == expected.text
    return _same(actual, expected)


def _same(a: AnyValue, b: AnyValue) -> bool:
    """Equality as in JSON: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: AnyValue) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def _show(value: AnyValue) -> str:
    """An operand or field value as in the rules file: 'text', 4, true, null."""
    if isinstance(value, Loose):
        return value.text
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return repr(value)


class _Builder:
    """Turns a ``when:`` node into a Condition, reporting mistakes as it goes."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        self.file = file
        self.problems = problems

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def mapping(self, node: Node, where: str) -> Condition | None:
        if not isinstance(node, Map):
            self.error(node.line, f"{where} must be a mapping of field paths to values")
            return None
        if not node.entries:
            self.error(node.line, f"{where} is empty; give at least one field or any/all/not")
            return None
        parts: list[Condition] = []
        for key, (key_node, value) in node.entries.items():
            part = self.entry(key, key_node, value)
            if part is not None:
                parts.append(part)
        if len(parts) != len(node.entries):
            return None
        # One entry needs no all(...) around it (shorter explanations).
        return parts[0] if len(parts) == 1 else All(tuple(parts), node.line)

    def entry(self, key: str, key_node: Scalar, value: Node) -> Condition | None:
        if key in ("all", "any"):
            if not isinstance(value, Seq) or not value.items:
                self.error(value.line, f"{key} needs a non-empty list of conditions")
                return None
            items = [self.mapping(item, f"each condition in {key}") for item in value.items]
            if any(item is None for item in items):
                return None
            kept = tuple(i for i in items if i is not None)
            return All(kept, value.line) if key == "all" else Any(kept, value.line)
        if key == "not":
            inner = self.mapping(value, "not")
            return Not(inner, value.line) if inner is not None else None
        if not _PATH.match(key):
            self.error(key_node.line, f"'{key}' is not a field path; write e.g. data.status")
            return None
        if isinstance(value, Map):
            return self.operator(key, value)
        return Match(key, "eq", _operand(value), value.line)

    def operator(self, path: str, node: Map) -> Match | None:
        if len(node.entries) != 1:
            names = ", ".join(node.entries) or "none"
            self.error(
                node.line,
                f"{path} needs exactly one operator, found {names}; combine several with all:",
            )
            return None
        op, (op_node, value) = next(iter(node.entries.items()))
        line = value.line
        if op not in OPERATORS:
            expected = ", ".join(OPERATORS)
            self.error(
                op_node.line, f"unknown operator '{op}' for {path}; expected one of: {expected}"
            )
            return None
        if op in ("in", "not_in"):
            if not isinstance(value, Seq):
                self.error(line, f"{op} needs a list, e.g. {op}: [a, b]")
                return None
            return Match(path, op, tuple(_operand(i) for i in value.items), line)
        if op in ("matches", "not_matches"):
            if (
                not isinstance(value, Scalar)
                or value.value is None
                or isinstance(value.value, bool)
            ):
                self.error(line, f"{op} needs a regular expression string")
                return None
            pattern = value.text if value.plain else str(value.value)
            try:
                return Match(path, op, re.compile(pattern), line)
            except re.error as exc:
                self.error(line, f"invalid regular expression {pattern!r}: {exc}")
                return None
        if op == "exists":
            if not isinstance(value, Scalar) or not isinstance(value.value, bool):
                self.error(line, "exists needs true or false")
                return None
            return Match(path, op, value.value, line)
        if op in _COMPARE:
            if not isinstance(value, Scalar) or not _is_number(value.value):
                self.error(line, f"{op} needs a number")
                return None
            return Match(path, op, value.value, line)
        return Match(path, op, _operand(value), line)


def _operand(node: Node) -> AnyValue:
    # null stays JSON null only: an empty value must not also mean "".
    if (
        isinstance(node, Scalar)
        and node.plain
        and node.value is not None
        and not isinstance(node.value, str)
    ):
        return Loose(node.value, node.text)
    return to_python(node)


def build(node: Node, *, file: str, problems: list[Problem]) -> Condition | None:
    """The condition for a ``when:`` node; mistakes are appended to ``problems``.

    Returns None when the node has a mistake (and then ``problems`` says which).
    """
    return _Builder(file, problems).mapping(node, "when")


def from_mapping(when: Mapping[str, AnyValue]) -> Condition:
    """Build from plain Python values (tests, tools); raises ValueError on a mistake."""
    node, problems = parse(json.dumps({"when": when}), file="<when>", env={})
    assert isinstance(node, Map)
    condition = build(node.entries["when"][1], file="<when>", problems=problems)
    if condition is None or problems:
        raise ValueError("; ".join(p.message for p in problems))
    return condition
