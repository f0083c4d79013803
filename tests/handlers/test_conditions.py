"""``when:`` conditions: every operator, missing fields, composition, explanations, mistakes."""

from __future__ import annotations

from typing import Any

import pytest

from handlers.conditions import All, Match, Not, build, from_mapping, is_missing, lookup
from handlers.conditions import Any as AnyOf
from handlers.exceptions import Problem
from handlers.yamlload import Map, parse

EVENT: dict[str, Any] = {
    "event": "vps.status_changed",
    "timestamp": "2024-01-15T10:30:00Z",
    "data": {
        "id": "0123",
        "name": "ci-runner-7",
        "status": "stopped",
        "cpus": 4,
        "load": 0.75,
        "enabled": True,
        "nothing": None,
        "tags": ["web", "prod"],
        "labels": {"team": "ops"},
    },
}


def when(yaml_text: str) -> tuple[Any, list[Problem]]:
    """Build the condition of ``when:`` written in YAML (as in a rules file)."""
    node, problems = parse(yaml_text, file="rules.yaml", env={})
    assert isinstance(node, Map) and not problems
    return build(node.entries["when"][1], file="rules.yaml", problems=problems), problems


def holds(yaml_value: str) -> bool:
    condition, problems = when(f"when: {yaml_value}\n")
    assert not problems, problems
    return bool(condition.evaluate(EVENT))


# (when: ..., expected) — every operator, on present and missing fields.
CASES = [
    # equality: a plain value
    ("{data.status: stopped}", True),
    ("{data.status: running}", False),
    ("{event: vps.status_changed}", True),
    ("{data.cpus: 4}", True),
    ("{data.cpus: 4.0}", True),
    ("{data.enabled: true}", True),
    ("{data.cpus: true}", False),  # JSON true is not 1
    ("{data.nothing: null}", True),
    ("{data.tags: [web, prod]}", True),
    ("{data.tags: [prod, web]}", False),
    ("{data.id: 0123}", True),  # unquoted 0123 still equals the string "0123"
    ('{data.id: "0123"}', True),
    ("{data.id: 123}", False),
    ("{data.missing: x}", False),
    # eq / ne
    ("{data.status: {eq: stopped}}", True),
    ("{data.status: {ne: stopped}}", False),
    ("{data.status: {ne: running}}", True),
    ("{data.missing: {eq: x}}", False),
    ("{data.missing: {ne: x}}", True),
    # in / not_in
    ("{data.status: {in: [stopped, error]}}", True),
    ("{data.status: {in: [running]}}", False),
    ("{data.cpus: {in: [2, 4]}}", True),
    ("{data.status: {not_in: [stopped, error]}}", False),
    ("{data.status: {not_in: [running]}}", True),
    ("{data.missing: {in: [x]}}", False),
    ("{data.missing: {not_in: [x]}}", True),
    # matches / not_matches (re.search)
    ("{data.name: {matches: '^ci-'}}", True),
    ("{data.name: {matches: 'runner'}}", True),
    ("{data.name: {matches: '^runner'}}", False),
    ("{data.name: {not_matches: '^ci-'}}", False),
    ("{data.name: {not_matches: '^web-'}}", True),
    ("{data.cpus: {matches: '^4$'}}", True),  # non-strings are matched as JSON text
    ("{data.enabled: {matches: '^true$'}}", True),
    ("{data.missing: {matches: '.*'}}", False),
    ("{data.missing: {not_matches: 'x'}}", False),
    # exists
    ("{data.status: {exists: true}}", True),
    ("{data.nothing: {exists: true}}", True),  # null is present
    ("{data.missing: {exists: true}}", False),
    ("{data.missing: {exists: false}}", True),
    ("{data.status: {exists: false}}", False),
    # gt / gte / lt / lte: numbers only; anything else is false, never an error
    ("{data.cpus: {gt: 2}}", True),
    ("{data.cpus: {gt: 4}}", False),
    ("{data.cpus: {gte: 4}}", True),
    ("{data.cpus: {lt: 4}}", False),
    ("{data.cpus: {lte: 4}}", True),
    ("{data.load: {lt: 1}}", True),
    ("{data.load: {gte: 0.5}}", True),
    ("{data.status: {gt: 1}}", False),
    ("{data.enabled: {gt: 0}}", False),
    ("{data.nothing: {lt: 1}}", False),
    ("{data.missing: {gt: 1}}", False),
    ("{data.missing: {lte: 1}}", False),
    # paths: nested mappings and list items by number
    ("{data.labels.team: ops}", True),
    ("{data.tags.0: web}", True),
    ("{data.tags.1: web}", False),
    ("{data.tags.9: web}", False),
    ("{data.tags.x: web}", False),
    ("{data.status.deeper: x}", False),
    # a when: mapping is all-of
    ("{data.status: stopped, data.cpus: 4}", True),
    ("{data.status: stopped, data.cpus: 8}", False),
    # any / all / not
    ("{any: [{data.status: running}, {data.cpus: 4}]}", True),
    ("{any: [{data.status: running}, {data.cpus: 8}]}", False),
    ("{all: [{data.status: stopped}, {data.cpus: 4}]}", True),
    ("{all: [{data.status: stopped}, {data.cpus: 8}]}", False),
    ("{not: {data.status: running}}", True),
    ("{not: {data.status: stopped}}", False),
    ("{not: {any: [{data.status: running}, {data.name: {matches: '^ci-'}}]}}", False),
    ("{any: [{not: {data.cpus: 4}}, {all: [{data.tags.0: web}, {data.load: {lt: 1}}]}]}", True),
]


@pytest.mark.parametrize(("yaml_value", "expected"), CASES)
def test_operator(yaml_value: str, expected: bool) -> None:
    assert holds(yaml_value) is expected


def test_yaml_12_words_stay_strings() -> None:
    event = {"event": "x", "data": {"answer": "no", "power": "off", "ok": "yes"}}
    condition, _ = when("when: {data.answer: no, data.power: off, data.ok: yes}\n")
    assert condition.evaluate(event)
    assert not condition.evaluate({"event": "x", "data": {"answer": False, "power": False}})


def test_explain_says_why() -> None:
    condition, _ = when("when: {data.status: {in: [running]}, data.missing: {exists: true}}\n")
    reason = condition.explain(EVENT)
    assert reason == (
        "data.status is 'stopped'; wanted data.status in ['running']; "
        "data.missing is missing; wanted data.missing exists true"
    )
    ok, _ = when("when: {data.status: stopped}\n")
    assert ok.explain(EVENT) is None


def test_explain_any_and_not() -> None:
    any_of, _ = when("when: {any: [{data.cpus: {gt: 8}}, {data.id: 7}]}\n")
    assert any_of.explain(EVENT) == (
        "none of: data.cpus is 4; wanted data.cpus gt 8; data.id is '0123'; wanted data.id eq 7"
    )
    negated, _ = when("when: {not: {data.name: {matches: '^ci-'}}}\n")
    assert negated.explain(EVENT) == "data.name matches '^ci-' holds; wanted it not to"


def test_typed_union() -> None:
    condition, _ = when("when: {not: {data.a: 1}, any: [{data.b: 2}]}\n")
    assert isinstance(condition, All)
    negated, any_of = condition.conditions
    assert isinstance(negated, Not) and isinstance(any_of, AnyOf)
    assert isinstance(negated.condition, Match)
    assert condition.describe() == "all(not(data.a eq 1), any(data.b eq 2))"


def test_from_mapping() -> None:
    condition = from_mapping({"data.status": {"in": ["stopped"]}, "data.cpus": {"gte": 4}})
    assert condition.evaluate(EVENT)
    with pytest.raises(ValueError, match="unknown operator 'is'"):
        from_mapping({"data.status": {"is": "stopped"}})


def test_evaluate_never_raises_on_odd_events() -> None:
    condition = from_mapping({"data.a.b": {"gt": 1}, "data.c": {"matches": "x"}})
    for event in ({}, {"data": None}, {"data": []}, {"data": {"a": [1], "c": {"k": object()}}}):
        assert condition.evaluate(event) is False


def test_lookup() -> None:
    assert lookup(EVENT, "data.tags.1") == "prod"
    assert lookup({"a": {"b": None}}, "a.b") is None


# Mistakes in when:, each reported at its line.
MISTAKES = [
    (
        "when:\n  data.status: {equals: x}\n",
        "2: unknown operator 'equals' for data.status; expected one of: eq, ne, in, not_in, "
        "matches, not_matches, exists, gt, gte, lt, lte",
    ),
    ("when:\n  data.status: {in: stopped}\n", "2: in needs a list, e.g. in: [a, b]"),
    ("when:\n  data.cpus: {gt: many}\n", "2: gt needs a number"),
    ("when:\n  data.x: {exists: yes}\n", "2: exists needs true or false"),
    (
        "when:\n  data.name:\n    matches: '(['\n",
        "3: invalid regular expression '([': unterminated character set at position 1",
    ),
    (
        "when:\n  data.cpus: {gt: 1, lt: 5}\n",
        "2: data.cpus needs exactly one operator, found gt, lt; combine several with all:",
    ),
    ("when:\n  any: []\n", "2: any needs a non-empty list of conditions"),
    ("when:\n  not: [a]\n", "2: not must be a mapping of field paths to values"),
    (
        "when:\n  all:\n    - data.x\n",
        "3: each condition in all must be a mapping of field paths to values",
    ),
    ("when: {}\n", "1: when is empty; give at least one field or any/all/not"),
    ("when:\n  data..x: 1\n", "2: 'data..x' is not a field path; write e.g. data.status"),
]


@pytest.mark.parametrize(("text", "expected"), MISTAKES)
def test_mistakes(text: str, expected: str) -> None:
    node, problems = parse(text, file="rules.yaml", env={})
    assert isinstance(node, Map)
    assert build(node.entries["when"][1], file="rules.yaml", problems=problems) is None
    assert [str(p) for p in problems] == [f"rules.yaml:{expected}"]


def test_all_mistakes_are_collected() -> None:
    node, problems = parse(
        "when:\n  data.a: {bad: 1}\n  data.b: {gt: x}\n", file="rules.yaml", env={}
    )
    assert isinstance(node, Map)
    build(node.entries["when"][1], file="rules.yaml", problems=problems)
    assert [p.line for p in problems] == [2, 3]


def test_explain_is_none_when_any_or_not_hold() -> None:
    condition = from_mapping({"any": [{"data.cpus": 4}], "not": {"data.cpus": 5}})
    assert isinstance(condition, All)
    assert [c.explain(EVENT) for c in condition.conditions] == [None, None]


def test_object_equality_and_loose_display() -> None:
    assert holds("{data.labels: {eq: {team: ops}}}")
    assert not holds("{data.labels: {eq: {team: dev}}}")
    condition, _ = when("when: {data.id: {in: [0123, 7]}}\n")
    assert condition.describe() == "data.id in [0123, 7]"
    assert is_missing(lookup(EVENT, "data.nope")) and not is_missing(lookup(EVENT, "data.id"))


def test_matches_needs_a_string() -> None:
    node, problems = parse("when:\n  data.x: {matches: [a]}\n", file="rules.yaml", env={})
    assert isinstance(node, Map)
    assert build(node.entries["when"][1], file="rules.yaml", problems=problems) is None
    assert [str(p) for p in problems] == ["rules.yaml:2: matches needs a regular expression string"]
