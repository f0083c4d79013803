"""Dry runs: which rules fire and why not, each step as it would run; the file's tests:."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from handlers.dryrun import DRY_RUN_EVENT_ID, StepPlan, Unknown, dry_run, format_duration, unknown
from handlers.rules import RuleSet, load_rules
from handlers.ruletests import run_tests
from handlers.templates import compile_template, environment

ENV = {"HOOK": "https://hooks.example/services/T/B/x", "SINK": "https://sink.example/in"}

RULES = """\
version: 1
targets:
  ops: {type: slack, url: "${HOOK}"}
  sink: {type: http, url: "${SINK}", headers: {Authorization: "Bearer t0ken"}}
rules:
  - name: save-kubeconfig
    on: kubernetes.ready
    steps:
      - id: kubeconfig
        api: {method: GET, path: "/kubernetes/{{ event.data.id }}/kubeconfig"}
      - id: saved
        file: {path: "kubeconfigs/{{ event.data.id }}.yaml", content: "{{ steps.kubeconfig.body }}"}
      - slack: {target: ops, text: "{{ event.data.name }} saved as {{ steps.saved.path }}"}
  - name: vps-down
    on: [vps.status_changed, vps.deleted]
    when:
      data.status: {in: [stopped, error]}
      data.name: {not_matches: "^ci-"}
    throttle: {key: "{{ event.data.id }}", limit: 1, per: 10m}
    steps:
      - id: fetch
        api: {path: "/vps/{{ event.data.id }}"}
      - log: {message: "{{ event.data.name }} is down", level: warning}
        if: "{{ event.data.status == 'error' }}"
      - log: {message: "fetched {{ steps.fetch.status + 1 }}"}
        if: steps.fetch.status == 200
      - log: {message: "{{ event.data.nmae }}"}
      - http: {target: sink, json: {vps: "{{ event.data.id }}", ip: "{{ steps.fetch.body.ip }}"}}
  - name: audit-vps
    on: "vps.*"
    steps:
      - http: {target: sink}
"""


def ruleset(tmp_path: Path, text: str = RULES) -> RuleSet:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return load_rules(path, env=ENV)


def event(event_type: str, **data: Any) -> dict[str, Any]:
    return {"event": event_type, "timestamp": "2024-01-15T10:30:00Z", "data": data}


def statuses(steps: tuple[StepPlan, ...]) -> list[str]:
    return [step.status for step in steps]


def test_which_rules_fire_and_why_the_others_do_not(tmp_path: Path) -> None:
    rules = ruleset(tmp_path)
    result = dry_run(rules, event("vps.status_changed", id="vps_1", name="ci-7", status="running"))
    assert [(p.rule, p.fires, p.reason) for p in result.rules] == [
        (
            "save-kubeconfig",
            False,
            "on: kubernetes.ready does not match the event type 'vps.status_changed'",
        ),
        (
            "vps-down",
            False,
            "when: data.status is 'running'; wanted data.status in ['stopped', 'error']; "
            "data.name is 'ci-7'; wanted data.name not_matches '^ci-'",
        ),
        ("audit-vps", True, None),
    ]
    assert [p.rule for p in result.fired] == ["audit-vps"]
    missing = dry_run(rules, {"data": {}})
    assert missing.rules[2].reason == "on: vps.* does not match the event type missing"
    assert dry_run(rules, event("vps.deleted", id="v", name="web")).get("vps-down") is not None
    assert result.get("nope") is None


def test_steps_as_they_would_run(tmp_path: Path) -> None:
    rules = ruleset(tmp_path)
    result = dry_run(rules, event("kubernetes.ready", id="k8s_1", name="prod"))
    plan = result.get("save-kubeconfig")
    assert plan is not None and plan.fires and plan.notes == ()
    api, file, slack = plan.steps
    assert (api.index, api.id, api.type, api.line, api.label) == (
        0,
        "kubeconfig",
        "api",
        9,
        "step 'kubeconfig' (api)",
    )
    assert statuses(plan.steps) == ["runs", "runs", "runs"]
    assert api.description is not None and "GET /kubernetes/k8s_1/kubeconfig" in api.description
    # An earlier step's result is a placeholder, attributes of it too.
    content = "<result of steps.kubeconfig.body>"
    assert file.description is not None and "kubeconfigs/k8s_1.yaml" in file.description
    assert str(len(content)) in file.description
    assert file.params is not None and file.params["path"] == "kubeconfigs/k8s_1.yaml"
    assert file.params["content"] == f"<{len(content)} bytes>"  # masked as in audit records
    assert slack.description is not None and "ops" in slack.description
    assert "result of steps.saved.path" in slack.description
    assert slack.error is None and slack.note is None and slack.condition is None
    # The target decides allow_private: the step's params do not claim a value for it.
    assert slack.params is not None and "allow_private" not in slack.params


def test_if_outcomes_and_errors_per_step(tmp_path: Path) -> None:
    rules = ruleset(tmp_path)
    plan = dry_run(rules, event("vps.status_changed", id="vps_1", name="web-1", status="stopped"))
    vps_down = plan.get("vps-down")
    assert vps_down is not None and vps_down.fires
    assert vps_down.notes == (
        "throttle: at most 1 run per 10m for key 'vps_1' (more are dropped); "
        "not evaluated in a dry run",
    )
    _, warn, fetched, typo, forward = vps_down.steps
    assert statuses(vps_down.steps) == ["runs", "skipped", "maybe", "error", "runs"]
    assert warn.note == "if: {{ event.data.status == 'error' }} is false"
    assert warn.description is None and warn.params is None
    assert fetched.condition == "steps.fetch.status == 200"
    assert fetched.note == "if: depends on steps.fetch, unknown in a dry run; shown as if it runs"
    assert fetched.params == {
        "message": "fetched <result of steps.fetch.status + 1>",
        "level": "info",
    }
    # A step that would fail shows why; the steps after it are still shown.
    assert typo.error is not None and "has no attribute 'nmae'" in typo.error
    assert typo.description is None
    assert forward.params == {
        "target": "sink",
        "method": "POST",
        "json": {"vps": "vps_1", "ip": "<result of steps.fetch.body.ip>"},
    }
    # Everything is JSON.
    doc = json.loads(json.dumps(plan.to_json()))
    assert doc["fired"] == ["vps-down", "audit-vps"]
    assert doc["rules"][1]["steps"][1]["status"] == "skipped"


def test_an_if_that_cannot_be_evaluated_is_an_error(tmp_path: Path) -> None:
    rules = ruleset(
        tmp_path,
        """\
        version: 1
        rules:
          - name: r
            on: vps.created
            steps:
              - log: {message: hi}
                if: event.data.missing.deeper
        """,
    )
    [step] = dry_run(rules, event("vps.created")).rules[0].steps
    assert step.status == "error"
    assert step.error is not None and step.error.startswith("if: template")


def test_skipped_steps_leave_no_result_as_in_a_real_run(tmp_path: Path) -> None:
    rules = ruleset(
        tmp_path,
        """\
        version: 1
        rules:
          - name: r
            on: vps.created
            steps:
              - {id: never, log: {message: a}, if: false}
              - log: {message: "{{ steps.never }}"}
        """,
    )
    never, after = dry_run(rules, event("vps.created")).rules[0].steps
    assert never.status == "skipped" and never.note == "if: false is false"
    assert after.status == "error"
    assert after.error is not None and "has no attribute 'never'" in after.error


def test_throttle_notes(tmp_path: Path) -> None:
    rules = ruleset(
        tmp_path,
        """\
        version: 1
        rules:
          - name: r
            on: vps.created
            throttle: {key: "{{ event.data.id.x }}", limit: 3, per: 90s, mode: delay}
            steps:
              - log: {message: hi}
        """,
    )
    # A key that cannot be rendered: the daemon would dead-letter the run, so it does not fire.
    plan = dry_run(rules, event("vps.created", id="v")).rules[0]
    assert not plan.fires
    assert plan.reason is not None and plan.reason.startswith("throttle key cannot be rendered (")
    assert plan.reason.endswith("the run would be dead-lettered")
    [note] = dry_run(rules, event("vps.created", id={"x": "k1"})).rules[0].notes
    assert note == (
        "throttle: at most 3 runs per 90s for key 'k1' (more wait for the next window); "
        "not evaluated in a dry run"
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(600, "10m"), (90, "90s"), (7200, "2h"), (86400 * 7, "7d"), (1.5, "1500ms"), (0.25, "250ms")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def render(source: str, **steps: Any) -> str:
    context = {"event": event("x"), "steps": steps, "rule": "r", "event_id": DRY_RUN_EVENT_ID}
    return compile_template(source).render(context)


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ steps.k }}", "<result of steps.k>"),
        ("{{ steps.k.body }}", "<result of steps.k.body>"),
        ("{{ steps.k.path }}", "<result of steps.k.path>"),
        ("{{ steps.k.count }}", "<result of steps.k.count>"),  # str's methods do not leak
        ("{{ steps.k['body'].ip }}", "<result of steps.k['body'].ip>"),
        ("{{ steps.k.body[0] }}", "<result of steps.k.body[0]>"),
        ("{{ steps.k.body.get('a') }}", "<result of steps.k.body.get(...)>"),
        (
            "{% for n in steps.k.body.items %}{{ n.id }}{% endfor %}",
            "<result of steps.k.body.items[0].id>",
        ),
        ("{{ steps.k.status + 1 }}", "<result of steps.k.status + 1>"),
        ("{{ 2 * steps.k.n }}", "<result of 2 * steps.k.n>"),
        (
            "{{ steps.k.status - 1 }}|{{ 1 - steps.k.n }}",
            "<result of steps.k.status - 1>|<result of 1 - steps.k.n>",
        ),
        (
            "{{ steps.k.n / 2 }}|{{ steps.k.n % 2 }}",
            "<result of steps.k.n / 2>|<result of steps.k.n % 2>",
        ),
        ("{{ steps.k.status >= 500 }}|{{ steps.k.status < 5 }}", "False|False"),
        ("{{ steps.k.status == 200 }}", "False"),
        ("{{ steps.k.body | tojson }}", '"\\u003cresult of steps.k.body\\u003e"'),
        ("{{ 'x' ~ steps.k }}", "x<result of steps.k>"),
        ("{{ steps.k.body | default('d') }}", "<result of steps.k.body>"),
    ],
)
def test_unknown_results_render_as_placeholders(source: str, rendered: str) -> None:
    assert render(source, k=unknown("steps.k")) == rendered


def test_unknown_is_text_and_the_sandbox_still_holds() -> None:
    value = unknown("steps.k")
    assert isinstance(value, Unknown) and isinstance(value, str)
    assert str(value) == "<result of steps.k>" and type(str(value)) is str
    assert json.dumps({"k": value}) == '{"k": "<result of steps.k>"}'
    # Bypassing the load-time check: the sandbox refuses internals of an Unknown too.
    with pytest.raises(SecurityError):
        environment().from_string("{{ k.__class__.__mro__ }}").render(k=value)
    with pytest.raises(SecurityError):
        environment().from_string("{{ k.body.__init__ }}").render(k=value)


# -- tests: --------------------------------------------------------------------------------

TESTED = (
    RULES
    + """\
tests:
  - name: stopped server
    event: {event: vps.status_changed, data: {id: vps_1, name: web-1, status: stopped}}
    fires: [audit-vps]
    not_fires: [save-kubeconfig]
  - name: all wrong
    event: {event: vps.status_changed, timestamp: "2024-01-15T10:30:00Z",
            data: {id: vps_1, name: ci-1, status: running}}
    fires: [save-kubeconfig, vps-down]
    not_fires: audit-vps
  - name: a step would fail
    event: {event: vps.deleted, data: {id: vps_1, name: web-1, status: error}}
    fires: vps-down
"""
)


def test_run_tests(tmp_path: Path) -> None:
    rules = ruleset(tmp_path, TESTED)
    report = run_tests(rules, now=datetime(2024, 1, 15, tzinfo=UTC))
    assert (report.total, report.failed, report.passed) == (3, 2, 1)
    file = str(rules.path)
    assert [str(p) for p in report.failures] == [
        f"{file}:41: test 'all wrong': rule 'save-kubeconfig' should fire but did not: on: "
        "kubernetes.ready does not match the event type 'vps.status_changed'",
        f"{file}:41: test 'all wrong': rule 'vps-down' should fire but did not: when: data.status "
        "is 'running'; wanted data.status in ['stopped', 'error']; data.name is 'ci-1'; wanted "
        "data.name not_matches '^ci-'",
        f"{file}:42: test 'all wrong': rule 'audit-vps' should not fire but did: on: matches "
        "'vps.status_changed'",
        f"{file}:45: test 'a step would fail': rule 'vps-down' fires, but step 4 (log) would "
        "fail: template '{{ event.data.nmae }}' failed: UndefinedError: 'dict object' has no "
        "attribute 'nmae'",
    ]


def test_should_not_fire_names_the_when_that_held(tmp_path: Path) -> None:
    rules = ruleset(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: r, on: vps.created, when: {data.name: web}, steps: [log: {message: a}]}
        tests:
          - name: t
            event: {event: vps.created, data: {name: web}}
            not_fires: r
        """,
    )
    [failure] = run_tests(rules).failures
    assert failure.line == 7
    assert failure.message == (
        "test 't': rule 'r' should not fire but did: on: matches 'vps.created' and its when: holds"
    )


def test_no_tests_is_an_empty_report(tmp_path: Path) -> None:
    report = run_tests(ruleset(tmp_path))
    assert (report.total, report.failed, report.failures) == (0, 0, ())
