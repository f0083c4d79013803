"""The rules file's ``tests:``: reading them (with the rest of the file) and running them.

```yaml
tests:
  - name: web servers join the network
    event: {event: vps.created, data: {id: vps_1, name: web-1}}   # timestamp: now
    fires: [attach-web-vps, audit-vps]
    not_fires: vps-down
```

A test runs the event through a dry run (``handlers.dryrun``) and checks that each rule
in ``fires`` fires and its steps could be rendered, and that no rule in ``not_fires`` fires.
Rules named in neither are not checked. Nothing is called and nothing is written.

In ``event.data``, a plain value that is a JSON number (``2``, ``1.5``) is a number; any
other unquoted value (``0123``, ``0x1F``, ``on``) is the text as written, so ids written
without quotes stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handlers.dryrun import RulePlan, dry_run
from handlers.exceptions import Problem
from handlers.ruleset import Expectation, RuleSet, RuleTest
from handlers.schema import Reader, did_you_mean, kind_of
from handlers.yamlload import Map, Node, Scalar, Seq
from receiver.events import EventInvalid, parse_timestamp

TEST_KEYS = ("name", "event", "fires", "not_fires")
EVENT_KEYS = ("event", "timestamp", "data")
_JSON_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?$")


@dataclass(frozen=True, slots=True)
class RuleTestReport:
    """The outcome of a file's tests: how many ran, failed, and each failed expectation."""

    total: int
    failed: int
    failures: tuple[Problem, ...]

    @property
    def passed(self) -> int:
        """Tests whose every expectation held."""
        return self.total - self.failed


def read_tests(reader: Reader, node: Node | None, rules: Mapping[str, int]) -> tuple[RuleTest, ...]:
    """The ``tests:`` section; ``rules`` maps each rule name to its line. Mistakes go to
    ``reader`` like the rest of the file's."""
    if node is None or (isinstance(node, Scalar) and node.value is None):
        return ()
    if not isinstance(node, Seq):
        reader.error(
            node.line,
            f"tests must be a list of tests (each starting with '- name:'), not {kind_of(node)}",
        )
        return ()
    names: dict[str, int] = {}
    tests = [_test(reader, item, rules, names) for item in node.items]
    return tuple(test for test in tests if test is not None)


def _test(
    reader: Reader, node: Node, rules: Mapping[str, int], names: dict[str, int]
) -> RuleTest | None:
    spec = reader.mapping(node, "each test")
    if spec is None:
        return None
    reader.unknown_keys(spec, TEST_KEYS, "test")
    name: str | None = None
    if (name_node := reader.required(spec, "name", "test")) is not None:
        name = reader.text(name_node, "test name")
        if name is not None and name in names:
            reader.error(
                name_node.line,
                f"duplicate test name '{name}' (first defined at line {names[name]})",
            )
        elif name is not None:
            names[name] = name_node.line
    where = f"test '{name}'" if name is not None else "test"
    event = _event(reader, reader.required(spec, "event", where), where)
    expect = _expectations(reader, spec, rules, where)
    if name is None or event is None or expect is None:
        return None
    event_type, timestamp, data = event
    return RuleTest(name, event_type, data, spec.line, expect, timestamp)


def _event(
    reader: Reader, node: Node | None, where: str
) -> tuple[str, str | None, dict[str, Any]] | None:
    if node is None or (spec := reader.mapping(node, f"{where}: event")) is None:
        return None
    what = f"{where}: event"
    reader.unknown_keys(spec, EVENT_KEYS, f"the event of {where}")
    ok = True
    event_type: str | None = None
    if (type_node := reader.required(spec, "event", f"the event of {where}")) is not None:
        event_type = reader.text(type_node, f"{what}.event")
        if event_type == "":
            reader.error(type_node.line, f"{what}.event must not be empty, e.g. vps.created")
            event_type = None
    timestamp: str | None = None
    if (stamp_node := spec.get("timestamp")) is not None:
        timestamp = reader.text(stamp_node, f"{what}.timestamp")
        try:
            parse_timestamp(timestamp)
        except EventInvalid as exc:
            if timestamp is not None:
                reader.error(stamp_node.line, f"{what}.{exc.message}")
            ok = False
    data: dict[str, Any] = {}
    if (data_node := spec.get("data")) is not None:
        if isinstance(data_node, Map):
            data = event_value(data_node)
        else:
            reader.error(data_node.line, f"{what}.data must be a mapping, not {kind_of(data_node)}")
            ok = False
    if event_type is None or not ok:
        return None
    return event_type, timestamp, data


def _expectations(
    reader: Reader, spec: Map, rules: Mapping[str, int], where: str
) -> tuple[Expectation, ...] | None:
    expect: list[Expectation] = []
    seen: dict[str, int] = {}
    ok = True
    for key, fires in (("fires", True), ("not_fires", False)):
        if (node := spec.get(key)) is None:
            continue
        for item in node.items if isinstance(node, Seq) else [node]:
            rule = reader.text(item, f"{where}: {key}")
            if rule is None:
                ok = False
            elif rule not in rules:
                reader.error(
                    item.line,
                    f"{where}: {key} names an unknown rule '{rule}'" + did_you_mean(rule, rules),
                )
                ok = False
            elif rule in seen:
                reader.error(
                    item.line,
                    f"{where}: rule '{rule}' is listed twice (first at line {seen[rule]})",
                )
                ok = False
            else:
                seen[rule] = item.line
                expect.append(Expectation(rule, fires, item.line))
    if not expect and ok:
        reader.error(spec.line, f"{where} needs fires or not_fires: the rules it checks")
        return None
    return tuple(expect) if ok else None


def event_value(node: Node) -> Any:
    """Plain values for test event data: JSON numbers are numbers, other plain text stays."""
    if isinstance(node, Map):
        return {key: event_value(value) for key, (_, value) in node.entries.items()}
    if isinstance(node, Seq):
        return [event_value(item) for item in node.items]
    value = node.value
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if node.plain and number and not _JSON_NUMBER.match(node.text):
        return node.text
    return value


def run_tests(ruleset: RuleSet, *, now: datetime | None = None) -> RuleTestReport:
    """Run the file's tests with dry runs; one Problem per expectation that does not hold."""
    file = str(ruleset.path)
    failures: list[Problem] = []
    failed = 0
    for test in ruleset.tests:
        event = test.event(now)
        result = dry_run(ruleset, event)
        found: list[Problem] = []
        for expectation in test.expect:
            plan, rule = result.get(expectation.rule), ruleset.get(expectation.rule)
            assert plan is not None and rule is not None  # unknown names: load-time problems
            message = _failure(plan, expectation, event, rule.when is not None)
            if message is not None:
                found.append(Problem(file, expectation.line, f"test '{test.name}': {message}"))
        failed += bool(found)
        failures.extend(found)
    return RuleTestReport(len(ruleset.tests), failed, tuple(failures))


def _failure(
    plan: RulePlan, expectation: Expectation, event: Mapping[str, Any], when: bool
) -> str | None:
    rule = f"rule '{plan.rule}'"
    if expectation.fires and not plan.fires:
        return f"{rule} should fire but did not: {plan.reason}"
    if expectation.fires and plan.errors:
        step, more = plan.errors[0], len(plan.errors) - 1
        also = f" (and {more} more step{'s' if more > 1 else ''})" if more else ""
        return f"{rule} fires, but {step.label} would fail: {step.error}{also}"
    if not expectation.fires and plan.fires:
        held = " and its when: holds" if when else ""
        return f"{rule} should not fire but did: on: matches {event['event']!r}{held}"
    return None
