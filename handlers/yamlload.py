"""YAML 1.2 for the rules file: a small tree in which every node knows its line.

ruamel.yaml scans and parses; this module composes the events into ``Scalar``, ``Map`` and
``Seq`` nodes itself, rather than using ruamel's constructors, because the rules loader needs:

- a line on every node, scalars included, for ``file:line: message`` problems;
- the source text of unquoted scalars, so an id written ``0123`` or ``1e3`` stays that
  text wherever the schema wants a string (YAML 1.2 would make them numbers);
- duplicate keys reported like any other problem instead of raised one at a time;
- ``${NAME}`` replaced *after* parsing, inside string scalars only, so an environment
  value can never add YAML structure.

Plain scalars are resolved with the YAML 1.2 core schema: ``on``, ``off``, ``yes`` and
``no`` are strings; only ``true``/``false`` are booleans.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    ScalarEvent,
    SequenceStartEvent,
    StreamEndEvent,
)

from handlers.exceptions import Problem

_CORE = "tag:yaml.org,2002:"
# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT = re.compile(r"^[-+]?[0-9]+$")
_OCT = re.compile(r"^0o[0-7]+$")
_HEX = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")
# ``$${`` is a literal ``${``; ``${NAME}`` a variable; any other ``${...}`` a mistake.
_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{[^}]*\}?")


@dataclass(eq=False, slots=True)
class Scalar:
    """A scalar: its value (None, bool, int, float or str) and the text it was written as."""

    value: Any
    text: str
    line: int
    # Unquoted and untagged: ``value`` was resolved from ``text`` by the core schema.
    plain: bool = False
    # A literal block scalar (``|``): its content starts on the line after ``line``.
    block: bool = False
    # A problem was already reported for this value; checks on it would only repeat it.
    broken: bool = False
    # An unset ``${NAME}`` in it was replaced by ``<NAME>`` (a PlaceholderEnv, dry runs).
    placeholder: bool = False
    # Where a ``${NAME}`` value has characters of Jinja syntax: the text for a template,
    # with each such value as literal text, so that it can never become template source.
    template_text: str | None = None


@dataclass(eq=False, slots=True)
class Map:
    """A mapping with string keys, in file order; each key keeps its own node (and line)."""

    entries: dict[str, tuple[Scalar, Node]]
    line: int

    def get(self, key: str) -> Node | None:
        """The value node of ``key``, or None when absent."""
        entry = self.entries.get(key)
        return entry[1] if entry else None

    def key_line(self, key: str) -> int:
        """The line of ``key`` itself (the map's line when absent)."""
        entry = self.entries.get(key)
        return entry[0].line if entry else self.line


@dataclass(eq=False, slots=True)
class Seq:
    """A sequence."""

    items: list[Node]
    line: int


Node = Scalar | Map | Seq


def to_python(node: Node) -> Any:
    """Plain Python values (dict, list, scalars) for ``node``."""
    if isinstance(node, Scalar):
        return node.value
    if isinstance(node, Seq):
        return [to_python(item) for item in node.items]
    return {key: to_python(value) for key, (_, value) in node.entries.items()}


def resolve_plain(text: str) -> Any:
    """The value of an unquoted scalar under the YAML 1.2 core schema."""
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    if _INT.match(text):
        return int(text, 10)
    if _OCT.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        return float(text)
    if _INF.match(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def substitute(
    text: str, env: Mapping[str, str], quote: Callable[[str], str] | None = None
) -> tuple[str, list[str]]:
    """Replace ``${NAME}`` with ``env[NAME]`` (passed through ``quote`` when given) and
    ``$${`` with ``${``; return the mistakes."""
    errors: list[str] = []

    def replace(match: re.Match[str]) -> str:
        whole, name = match.group(0), match.group(1)
        if whole == "$${":
            return "${"
        if name is None:
            errors.append(
                f"invalid reference '{whole}'; write ${{NAME}}, or $${{ for a literal ${{"
            )
            return whole
        if name not in env:
            errors.append(f"environment variable {name} is not set")
            return whole
        return env[name] if quote is None else quote(env[name])

    return _REFERENCE.sub(replace, text), errors


_JINJA_CHARS = frozenset("{}%#")


def jinja_literal(value: str) -> str:
    """``value`` as template source that renders exactly ``value`` (raw text when it can
    be; else a string literal of escapes, which Jinja reads back character for character)."""
    if not _JINJA_CHARS.intersection(value):
        return value
    if "endraw" not in value:
        return "{% raw %}" + value + "{% endraw %}"
    escaped = "".join(f"\\U{ord(c):08x}" for c in value)
    return '{{ "' + escaped + '" }}'


class PlaceholderEnv(Mapping[str, str]):
    """An environment in which an unset variable reads as ``<NAME>``, for dry runs.

    ``unset`` lists the names that were replaced, in the order they were first used.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.unset: list[str] = []

    def __getitem__(self, name: str) -> str:
        if name in self.env:
            return self.env[name]
        if name not in self.unset:
            self.unset.append(name)
        return f"<{name}>"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str)

    def __iter__(self) -> Iterator[str]:
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)

    def is_placeholder(self, name: str) -> bool:
        """Whether ``${name}`` reads as a placeholder."""
        return name not in self.env


# Values a document may hold once its aliases are expanded. A rules file has a few thousand
# at most; nested aliases (a "billion laughs") could otherwise make millions from a few lines.
MAX_EXPANDED = 100_000


class _TooBig(Exception):
    def __init__(self, line: int) -> None:
        self.line = line


def parse(text: str, *, file: str, env: Mapping[str, str]) -> tuple[Node | None, list[Problem]]:
    """Parse one YAML document into nodes; return it (None if unusable) and the problems."""
    composer = _Composer(file, env)
    try:
        node = composer.document(YAML(typ="rt").parse(StringIO(text)))
    except MarkedYAMLError as exc:
        last_line = max(1, len(text.splitlines()))
        return None, [*composer.problems, _syntax_problem(file, exc, last_line)]
    except _TooBig as exc:
        message = (
            f"the aliases here expand the file to more than {MAX_EXPANDED:,} values; "
            "use fewer nested aliases (a rules file needs far fewer)"
        )
        return None, [*composer.problems, Problem(file, exc.line, message)]
    return node, composer.problems


# Hints for the parser's terse messages, by the start of the message.
_HINTS = {
    "mapping values are not allowed": "check the indentation, and quote a value that holds ': '",
    "could not find expected ':'": "check the indentation, or a key missing its ':'",
    "found character that cannot start any token": "quote a value that starts with @ or `",
    "found undefined alias": "define the &anchor before the *alias that uses it",
}


def _syntax_problem(file: str, exc: MarkedYAMLError, last_line: int) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    # The parser may point just past the end (an unclosed bracket): the last line.
    line = min(mark.line + 1, last_line) if mark is not None else 1
    problem = exc.problem or "invalid YAML"
    if "'\\t'" in problem:
        return Problem(file, line, "tab character in indentation; YAML indents with spaces")
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} started at line {exc.context_mark.line + 1})"
    elif exc.context:
        message += f" ({exc.context})"
    hint = next((h for start, h in _HINTS.items() if problem.startswith(start)), None)
    if hint:
        message += f"; {hint}"
    return Problem(file, line, message)


@dataclass
class _Composer:
    file: str
    env: Mapping[str, str]
    problems: list[Problem] = field(default_factory=list)
    anchors: dict[str, Node] = field(default_factory=dict)
    # Values under each node with its aliases expanded, by node id.
    sizes: dict[int, int] = field(default_factory=dict)

    def error(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def document(self, events: Iterator[Event]) -> Node | None:
        root: Node | None = None
        documents = 0
        for event in events:
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents == 2:
                    self.error(_line(event), "only one YAML document is allowed in a rules file")
            elif isinstance(event, StreamEndEvent):
                break
            elif isinstance(event, ScalarEvent | MappingStartEvent | SequenceStartEvent):
                node = self.node(event, events)
                if documents == 1:
                    root = node
        return root

    def node(self, event: Event, events: Iterator[Event]) -> Node:
        if isinstance(event, AliasEvent):
            found = self.anchors.get(str(event.anchor))
            if found is None:
                self.error(_line(event), f"unknown alias '*{event.anchor}'")
                return Scalar(None, "", _line(event), broken=True)
            return found
        node: Node
        if isinstance(event, ScalarEvent):
            node = self.scalar(event)
        elif isinstance(event, SequenceStartEvent):
            self.check_tag(event, "seq")
            node = Seq([], _line(event))
            for child in events:
                if not isinstance(
                    child, ScalarEvent | MappingStartEvent | SequenceStartEvent | AliasEvent
                ):
                    break  # SequenceEndEvent
                node.items.append(self.node(child, events))
        else:
            assert isinstance(event, MappingStartEvent)
            node = self.mapping(event, events)
        self.measure(node, _line(event))
        if event.anchor:
            # Registered only once complete, so an alias can never refer to its own parent.
            self.anchors[str(event.anchor)] = node
        return node

    def measure(self, node: Node, line: int) -> None:
        """Record how many values ``node`` stands for; ``_TooBig`` past ``MAX_EXPANDED``."""
        size = 1
        if isinstance(node, Seq):
            size += sum(self.sizes.get(id(item), 1) for item in node.items)
        elif isinstance(node, Map):
            size += sum(
                self.sizes.get(id(k), 1) + self.sizes.get(id(v), 1)
                for k, v in node.entries.values()
            )
        if size > MAX_EXPANDED:
            raise _TooBig(line)
        self.sizes[id(node)] = size

    def mapping(self, start: MappingStartEvent, events: Iterator[Event]) -> Map:
        self.check_tag(start, "map")
        node = Map({}, _line(start))
        merges: list[Node] = []
        for event in events:
            if not isinstance(
                event, ScalarEvent | MappingStartEvent | SequenceStartEvent | AliasEvent
            ):
                break  # MappingEndEvent
            key = self.node(event, events)
            value = self.node(next(events), events)
            if not isinstance(key, Scalar):
                self.error(key.line, "mapping keys must be plain strings, not a list or mapping")
                continue
            name = key.text if key.plain else str(key.value)
            if key.plain and name == "<<":
                merges.append(value)
            elif name in node.entries:
                first = node.entries[name][0].line
                self.error(key.line, f"duplicate key '{name}' (first defined at line {first})")
            else:
                node.entries[name] = (key, value)
        for merged in merges:
            self.merge(node, merged)
        return node

    def merge(self, node: Map, merged: Node) -> None:
        """``<<: *defaults``: copy keys the mapping does not set itself."""
        sources = merged.items if isinstance(merged, Seq) else [merged]
        for source in sources:
            if not isinstance(source, Map):
                self.error(source.line, "'<<' merges a mapping or a list of mappings")
                continue
            for name, entry in source.entries.items():
                node.entries.setdefault(name, entry)

    def scalar(self, event: ScalarEvent) -> Scalar:
        line = _line(event)
        tag = str(event.tag) if event.tag else None
        plain = event.style is None and tag is None
        text = str(event.value)
        broken = placeholder = False
        template_text: str | None = None
        if "${" in text:
            if isinstance(self.env, PlaceholderEnv):
                names = (m.group(1) for m in _REFERENCE.finditer(text) if m.group(1))
                placeholder = any(self.env.is_placeholder(name) for name in names)
            source = text
            text, errors = substitute(source, self.env)
            for message in errors:
                self.error(line, message)
            broken = bool(errors)
            if not broken:
                quoted, _ = substitute(source, self.env, jinja_literal)
                template_text = quoted if quoted != text else None
        node = Scalar(text, text, line, plain=plain, block=event.style == "|", broken=broken)
        node.placeholder = placeholder
        node.template_text = template_text
        if plain:
            node.value = resolve_plain(text)
        elif tag is not None and tag != "!":
            self.apply_tag(node, tag)
        return node

    def apply_tag(self, node: Scalar, tag: str) -> None:
        """Honour an explicit core tag (``!!str 5``, ``!!int "5"``); refuse others."""
        kind = tag.removeprefix(_CORE) if tag.startswith(_CORE) else None
        if kind == "str":
            return
        value = resolve_plain(node.text)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        fits = {
            "int": number and isinstance(value, int),
            "float": number,
            "bool": isinstance(value, bool),
            "null": value is None,
        }
        if kind is not None and fits.get(kind):
            node.value = float(value) if kind == "float" else value
            return
        shown = f"!!{kind}" if kind else tag
        if kind in fits:
            self.error(node.line, f"'{node.text}' is not a valid {shown}")
        else:
            self.error(node.line, f"unsupported YAML tag '{shown}'")
        node.broken = True

    def check_tag(self, event: MappingStartEvent | SequenceStartEvent, kind: str) -> None:
        tag = str(event.tag) if event.tag else None
        if tag not in (None, "!", _CORE + kind):
            shown = "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag
            self.error(_line(event), f"unsupported YAML tag '{shown}'")


def _line(event: Event) -> int:
    mark = event.start_mark
    return mark.line + 1 if mark is not None else 1
