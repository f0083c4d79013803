"""Loading rules.yaml: YAML 1.2 semantics, ${ENV}, the schema, one testdata file per mistake."""

from __future__ import annotations

import hashlib
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import field_validator

from handlers.exceptions import RulesError, StepError
from handlers.rules import RetryPolicy, RuleSet, StepSpec, check_rules, load_rules
from handlers.steps import REGISTRY
from handlers.steps.api import ApiParams
from handlers.steps.base import Params, StepType, Target
from handlers.templates import TemplateError, compile_template
from handlers.yamlload import PlaceholderEnv

TESTDATA = Path(__file__).parent / "testdata"
# The step types, as messages list them.
TYPES = ", ".join(REGISTRY)
ONLY = "(only event, steps, rule and event_id are available)"
ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/x",
    "AUDIT_SINK_URL": "https://audit.example/in",
}

EXAMPLE = """\
version: 1
defaults:
  timeout: 10s
  retry: {attempts: 5, backoff: exponential, initial: 1s, max: 5m}
targets:
  ops:     {type: slack, url: "${SLACK_WEBHOOK_URL}"}
  auditor: {type: http, url: "${AUDIT_SINK_URL}", headers: {X-Team: ops}, allow_private: true}
rules:
  - name: save-kubeconfig
    on: kubernetes.ready
    steps:
      - id: kubeconfig
        api: {method: GET, path: "/kubernetes/{{ event.data.id }}/kubeconfig"}
      - file: {path: "kubeconfigs/{{ event.data.id }}.yaml", content: "{{ steps.kubeconfig.body }}", mode: "0600"}
      - slack: {target: ops, text: "Cluster {{ event.data.name }} is ready"}
  - name: vps-down
    on: vps.status_changed
    when:
      data.status: {in: [stopped, error]}
      data.name: {not_matches: "^ci-"}
    throttle: {key: "{{ event.data.id }}", limit: 1, per: 10m}
    steps:
      - slack: {target: ops, text: ":warning: {{ event.data.name }} is {{ event.data.status }}"}
  - name: audit-vps
    on: "vps.*"
    steps:
      - http: {target: auditor}
"""  # noqa: E501


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> RuleSet:
    return load_rules(write(tmp_path, text), env=ENV if env is None else env)


def problems_of(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    path = write(tmp_path, text)
    _, problems = check_rules(path, env=ENV if env is None else env)
    return [str(p).removeprefix(f"{path}:") for p in problems]


def context(event: dict[str, Any], **steps: Any) -> dict[str, Any]:
    return {"event": event, "steps": steps, "rule": "r", "event_id": "evt_1"}


def vps(event_type: str = "vps.status_changed", **data: Any) -> dict[str, Any]:
    return {"event": event_type, "timestamp": "2024-01-15T10:30:00Z", "data": data}


# -- the example from SPEC.md --------------------------------------------------------------


def test_spec_example_loads(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    rules = load_rules(path, env=ENV)
    assert rules.version == 1
    assert rules.path == path
    assert rules.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rules.version_hash == rules.digest[:12]
    assert rules.warnings == ()
    assert rules.targets == {
        "ops": Target("ops", "slack", ENV["SLACK_WEBHOOK_URL"]),
        "auditor": Target("auditor", "http", ENV["AUDIT_SINK_URL"], {"X-Team": "ops"}, True),
    }
    assert [r.name for r in rules.rules] == ["save-kubeconfig", "vps-down", "audit-vps"]
    kube, down, audit = rules.rules
    assert kube.on == ("kubernetes.ready",) and kube.line == 9 and kube.ordered is True
    assert [(s.type, s.id, s.index, s.line) for s in kube.steps] == [
        ("api", "kubeconfig", 0, 12),
        ("file", None, 1, 14),
        ("slack", None, 2, 15),
    ]
    first = kube.steps[0]
    assert first.timeout == 10.0
    assert first.retry == RetryPolicy(attempts=5, backoff="exponential", initial=1.0, max=300.0)
    assert first.continue_on_error is False and first.condition is None
    assert down.throttle is not None
    assert (down.throttle.limit, down.throttle.per) == (1, 600.0)
    assert down.throttle.render_key(context(vps(id="vps_9"))) == "vps_9"
    assert audit.on == ("vps.*",) and audit.when is None


def test_match(tmp_path: Path) -> None:
    rules = load(tmp_path, EXAMPLE)
    names = lambda event: [r.name for r in rules.match(event)]  # noqa: E731
    assert names(vps(status="stopped", name="web-1")) == ["vps-down", "audit-vps"]
    assert names(vps(status="stopped", name="ci-7")) == ["audit-vps"]
    assert names(vps(status="running", name="web-1")) == ["audit-vps"]
    assert names(vps("vps.created", name="web-1")) == ["audit-vps"]
    assert names(vps("kubernetes.ready", id="k1")) == ["save-kubeconfig"]
    assert names(vps("storage.bucket_created")) == []
    assert names({"data": {}}) == []


def test_render_steps(tmp_path: Path) -> None:
    kube = load(tmp_path, EXAMPLE).rules[0]
    event = vps("kubernetes.ready", id="../../webhooks", name="prod")
    api = kube.steps[0].render(context(event))
    assert isinstance(api, ApiParams)
    assert (api.method, api.path) == ("GET", "/kubernetes/..%2F..%2Fwebhooks/kubeconfig")
    file = kube.steps[1].render(context(event, kubeconfig={"body": "apiVersion: v1"}))
    assert file.model_dump() == {
        "path": "kubeconfigs/..%2F..%2Fwebhooks.yaml",
        "content": "apiVersion: v1",
        "mode": "0600",
    }
    with pytest.raises(TemplateError, match="steps"):
        kube.steps[1].render(context(event))  # no result for steps.kubeconfig
    slack = kube.steps[2].render(context(event))
    assert slack.model_dump()["text"] == "Cluster prod is ready"


def test_render_validates_rendered_params(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - name: r
            on: vps.created
            steps:
              - slack: {url: "https://hooks.example/services/T/B/X", text: hi}
              - file: {path: out.txt, content: "{{ event.data.content }}"}
        """,
    )
    step = rules.rules[0].steps[0]
    assert step.render(context(vps())).model_dump()["url"] == (
        "https://hooks.example/services/T/B/X"
    )
    with pytest.raises(TemplateError) as info:
        rules.rules[0].steps[1].render(context(vps()))
    assert info.value.retryable is False


def test_slack_url_never_comes_from_event_data(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        '      - slack: {url: "{{ event.data.url }}", text: hi}\n'
    )
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert str(info.value) == (
        f"{path}:6: slack: url '{{{{ event.data.url }}}}' is not an http(s) URL"
    )


def test_step_options(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        defaults:
          timeout: 30s
          retry: {attempts: 3, backoff: fixed, initial: 2s}
        rules:
          - name: opts
            on: [vps.created, vps.deleted]
            ordered: false
            steps:
              - id: fetch
                api: {path: /vps}
                timeout: 500ms
                retry: {attempts: 1}
                continue_on_error: true
              - log: {message: ok}
                if: steps.fetch.status == 200
              - log: {message: "{{ steps.fetch.status }}"}
                if: "{{ steps.fetch.status >= 500 }}"
              - log: {message: never}
                if: false
        """,
    )
    rule = rules.rules[0]
    assert rule.on == ("vps.created", "vps.deleted") and rule.ordered is False
    fetch, ok, bad, never = rule.steps
    assert fetch.timeout == 0.5 and fetch.continue_on_error is True
    # Missing retry keys inherit from defaults.retry, then the built-in defaults.
    assert fetch.retry == RetryPolicy(attempts=1, backoff="fixed", initial=2.0, max=300.0)
    assert ok.timeout == 30.0 and ok.retry.attempts == 3
    ctx = context(vps("vps.created"), fetch={"status": 200})
    assert fetch.should_run(ctx) and ok.should_run(ctx)
    assert not bad.should_run(ctx) and not never.should_run(ctx)
    assert bad.should_run(context(vps("vps.created"), fetch={"status": 503}))


def test_globs_and_lists(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: a, on: "vps.*", steps: [log: {message: a}]}
          - {name: b, on: [kubernetes.ready, "storage.*"], steps: [log: {message: b}]}
          - {name: c, on: "*.de[l]eted", steps: [log: {message: c}]}
          - {name: d, on: "vps.?reated", steps: [log: {message: d}]}
        """,
    )
    a, b, c, d = rules.rules
    assert a.matches_type("vps.created") and not a.matches_type("vpsx.created")
    assert b.matches_type("storage.bucket_created") and b.matches_type("kubernetes.ready")
    assert c.matches_type("template.deleted") and not c.matches_type("vps.created")
    assert d.matches_type("vps.created") and not d.matches_type("VPS.created")


# -- YAML 1.2 ------------------------------------------------------------------------------


def test_yaml_12_on_key_and_words_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        rules:
          - name: words
            on: [off, no, yes, on, y, n]
            when: {data.answer: no, data.power: off}
            steps:
              - log: {message: yes}
        """,
    )
    rules, problems = check_rules(path, env={})
    assert rules is not None
    rule = rules.rules[0]
    assert rule.on == ("off", "no", "yes", "on", "y", "n")
    assert rule.matches(vps("no", answer="no", power="off"))
    assert not rule.matches(vps("no", answer=False, power="off"))
    assert rule.steps[0].render(context(vps())).model_dump()["message"] == "yes"
    # Warnings (not errors): none of these is a known event type.
    assert all(p.warning for p in problems) and len(problems) == 6
    assert str(problems[0]) == (
        f"{path}:4: warning: 'off' matches none of the known event types: vps.created, "
        "vps.deleted, vps.status_changed, template.deployed, template.deleted, "
        "kubernetes.ready, storage.bucket_created"
    )


def test_values_stay_as_written_where_strings_are_expected(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - name: 0123
            on: vps.created
            when: {data.id: 0123, data.n: 1e3}
            steps:
              - api: {path: /vps, query: {id: 0123, size: 1e3, ok: true}, json: {n: 0123}}
              - file: {path: 0777, content: 1e3, mode: 0640}
              - log: {message: 0x1F}
        """,
    )
    rule = rules.rules[0]
    assert rule.name == "0123"
    assert rule.matches(vps("vps.created", id="0123", n="1e3"))
    assert rule.matches(vps("vps.created", id=123, n=1000))
    api, file, log = (s.render(context(vps())) for s in rule.steps)
    assert api.model_dump()["query"] == {"id": "0123", "size": "1e3", "ok": "true"}
    assert api.model_dump()["json_"] == {"n": 123}  # json keeps YAML's types
    assert file.model_dump() == {"path": "0777", "content": "1e3", "mode": "0640"}
    assert log.model_dump()["message"] == "0x1F"


# -- ${ENV} --------------------------------------------------------------------------------


def test_env_substitution(tmp_path: Path) -> None:
    env = {
        "HOOK": "https://hooks.example/T/B/x",
        "LIMIT": "3",
        "INJECT": "x\nversion: 2\n{a: b}",
        "TEAM": "ops",
    }
    rules = load(
        tmp_path,
        """\
        version: 1
        targets:
          ops: {type: slack, url: "${HOOK}"}
        rules:
          - name: env
            on: vps.created
            throttle:
              key: "${TEAM}-{{ event.data.id }}"
              limit: ${LIMIT}
              per: 1m
            steps:
              - slack: {target: ops, text: "${INJECT}"}
              - log: {message: "cost $${PRICE} for ${TEAM}"}
        """,
        env=env,
    )
    assert rules.targets["ops"].url == env["HOOK"]
    rule = rules.rules[0]
    assert rule.throttle is not None and rule.throttle.limit == 3
    assert rule.throttle.render_key(context(vps(id="v1"))) == "ops-v1"
    # An environment value is text: it can never add YAML structure.
    assert rule.steps[0].render(context(vps())).model_dump()["text"] == env["INJECT"]
    assert rule.steps[1].render(context(vps())).model_dump()["message"] == "cost ${PRICE} for ops"


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASHOOKS_TEST_MESSAGE", "from the environment")
    path = write(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: r, on: vps.created, steps: [log: {message: "${TASHOOKS_TEST_MESSAGE}"}]}
        """,
    )
    step = load_rules(str(path)).rules[0].steps[0]
    assert step.render(context(vps())).model_dump()["message"] == "from the environment"


def test_env_mistakes(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        """\
        version: 1
        targets:
          ops: {type: slack, url: "${NOPE}"}
        rules:
          - name: r
            on: vps.created
            throttle: {limit: "${ALSO_NOPE}", per: 1m}
            steps:
              - slack: {target: ops, text: "${bad-name} ${"}
        """,
        env={},
    ) == [
        "3: environment variable NOPE is not set",
        "7: environment variable ALSO_NOPE is not set",
        "9: invalid reference '${bad-name}'; write ${NAME}, or $${ for a literal ${",
        "9: invalid reference '${'; write ${NAME}, or $${ for a literal ${",
    ]


# -- RetryPolicy ---------------------------------------------------------------------------


def test_retry_delay_exponential_capped_with_equal_jitter() -> None:
    policy = RetryPolicy(attempts=10, backoff="exponential", initial=1.0, max=60.0)
    assert [policy.base_delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(3, rand=lambda: 0.0) == 2.0  # half is always waited
    assert policy.delay(3, rand=lambda: 1.0) == 4.0
    assert policy.base_delay(10_000) == 60.0  # no overflow
    for _ in range(100):
        assert 8.0 <= policy.delay(5) <= 16.0


def test_retry_delay_fixed() -> None:
    policy = RetryPolicy(backoff="fixed", initial=5.0, max=60.0)
    assert [policy.base_delay(n) for n in (1, 2, 10)] == [5.0, 5.0, 5.0]


# -- check_rules / load_rules --------------------------------------------------------------


def test_warnings_do_not_fail_the_load(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        targets:
          spare: {type: http, url: "https://spare.example"}
        rules:
          - {name: r, on: vps.create, steps: [log: {message: hi}]}
        """,
    )
    rules, problems = check_rules(path, env={})
    assert rules is not None
    assert [str(p) for p in problems] == [
        f"{path}:3: warning: target 'spare' is not used by any rule",
        f"{path}:5: warning: 'vps.create' matches none of the known event types: vps.created, "
        "vps.deleted, vps.status_changed, template.deployed, template.deleted, "
        "kubernetes.ready, storage.bucket_created (did you mean 'vps.created'?)",
    ]
    assert load_rules(path, env={}).warnings == tuple(problems)


def test_load_rules_raises_with_every_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: r, on: nothing.known, steps: [log: {message: "{{ nope }}"}]}
          - {name: r, on: vps.created, steps: [log: {}]}
        """,
    )
    with pytest.raises(RulesError) as info:
        load_rules(path, env={})
    assert [str(p) for p in info.value.problems] == [
        f"{path}:3: undefined name 'nope' in template",
        f"{path}:4: duplicate rule name 'r' (first defined at line 3)",
        f"{path}:4: log step is missing required parameter 'message'",
    ]
    assert str(info.value).splitlines()[0] == f"{path}:3: undefined name 'nope' in template"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    rules, problems = check_rules(path)
    assert rules is None
    assert [str(p) for p in problems] == [
        f"{path}: cannot read the rules file: No such file or directory; check the path "
        "(--rules or TASHOOKS_RULES) and that this user may read it"
    ]


def test_unreadable_file_is_named_without_a_line(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: make it a directory instead
            path.chmod(0o600)
            path.unlink()
            path.mkdir()
        rules, problems = check_rules(path)
    finally:
        path.chmod(0o700)
    assert rules is None
    [problem] = problems
    assert str(problem).startswith(f"{path}: cannot read the rules file: ")
    assert "TASHOOKS_RULES" in str(problem)


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    assert problems_of(tmp_path, "") == ["1: the rules file is empty; it needs at least version: 1"]
    assert problems_of(tmp_path, "# only a comment\n") == [
        "1: the rules file is empty; it needs at least version: 1"
    ]
    assert problems_of(tmp_path, "- version: 1\n") == [
        "1: the rules file must be a mapping with version, targets and rules"
    ]
    assert problems_of(tmp_path, "version: 1\n") == [
        "1: warning: no rules: events are stored and audited, but nothing runs"
    ]


def test_later_steps_may_use_earlier_ids(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - name: chain
            on: vps.created
            steps:
              - {id: a, log: {message: a}}
              - {id: b, api: {path: "/x/{{ steps.a }}"}}
              - log: {message: "{{ steps.a }} {{ steps['b'].status }}"}
                if: steps.b.status == 200
        """,
    )
    assert [s.id for s in rules.rules[0].steps] == ["a", "b", None]


def test_slack_step_may_use_url_instead_of_target(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: r, on: vps.created, steps: [slack: {url: "https://hooks.example/x", text: hi}]}
        """,
    )
    assert rules.targets == {}


# Smaller mistakes, inline: (rules file body after "version: 1", expected problems).
INLINE_MISTAKES = [
    (
        "targets: [ops]\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "2: targets must be a mapping, not a list",
        ],
    ),
    (
        "targets:\n  bad name: {type: http, url: 'https://x.example'}\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "3: target name 'bad name' may only use letters, digits, '_', '.' and '-'",
            "3: warning: target 'bad name' is not used by any rule",
        ],
    ),
    (
        "targets:\n  t: {type: slack}\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "3: target 't' is missing required key 'url'",
            "3: warning: target 't' is not used by any rule",
        ],
    ),
    (
        "targets:\n  t:\n    type: slack\n    url: https://x.example\n    headers: {A: b}\n"
        "    allow_private: maybe\n    colour: red\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "3: warning: target 't' is not used by any rule",
            "6: target 't': headers are only for http targets",
            "7: target 't': allow_private must be true or false, not the string 'maybe'",
            "8: unknown key 'colour' in target 't'; expected one of: type, url, headers, "
            "allow_private",
        ],
    ),
    (
        "targets:\n  t: {type: http, url: 'https://x.example', headers: {A: [b]}}\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "3: target 't': header 'A' must be a string, not a list",
            "3: warning: target 't' is not used by any rule",
        ],
    ),
    (
        "targets:\n  t: {type: http, url: 'http://[::1'}\n",
        [
            "1: warning: no rules: events are stored and audited, but nothing runs",
            "3: target 't': url must be an http:// or https:// URL with a host",
            "3: warning: target 't' is not used by any rule",
        ],
    ),
    (
        "rules: {name: r}\n",
        ["2: rules must be a list of rules (each starting with '- name:'), not a mapping"],
    ),
    ("rules: [just-a-name]\n", ["2: each rule must be a mapping, not the string 'just-a-name'"]),
    (
        "rules:\n  - {name: r, on: {type: x}, steps: [log: {message: hi}]}\n",
        ["3: on must be a string, not a mapping"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [hello]}\n",
        ["3: each step must be a mapping, not the string 'hello'"],
    ),
    (
        "rules:\n  - name: r\n    on: vps.created\n    steps:\n      - log:\n",
        ["6: log step is missing required parameter 'message'"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [log: hello]}\n",
        ["3: log parameters must be a mapping, e.g. log: {...}, not the string 'hello'"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, if: [1]}]}\n",
        ["3: if must be a string, not a list"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, if: 'rule =='}]}\n",
        ["3: template syntax error: unexpected 'end of template'"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, timeout: 0s}]}\n",
        ["3: timeout must be a duration greater than 0"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, timeout: [1]}]}\n",
        ["3: timeout must be a duration such as 10s or 5m, not a list"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, retry: 3}]}\n",
        ["3: retry must be a mapping, not the number 3"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, id: 1st}]}\n",
        [
            "3: step id '1st' must be an identifier (letters, digits and '_', not starting with a "
            "digit)"
        ],
    ),
    (
        "rules:\n  - name: r\n    on: vps.created\n    throttle: {key: '{{ steps.a }}', "
        "limit: 1, per: 1m, burst: 2}\n    steps:\n      - {id: a, log: {message: hi}}\n",
        [
            "5: unknown key 'burst' in throttle; expected one of: key, limit, per, mode",
            "5: steps.a cannot be used in throttle.key: it is rendered before any step runs",
        ],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, throttle: {limit: 1}, steps: [log: {message: a}]}"
        "\n",
        ["3: throttle is missing required key 'per'"],
    ),
    (
        "rules:\n  - name: r\n    on: vps.created\n    steps:\n      - api:\n"
        "          path: /x\n          json:\n            a: [ok, '{{ nope }}']\n"
        "            b: {c: '{{ event.__class__ }}'}\n",
        [
            "9: undefined name 'nope' in template",
            "10: template uses '__class__'; Python internals (names starting with '_', mro, ...) "
            "are not allowed",
        ],
    ),
    (
        "rules:\n  - name: r\n    on: vps.created\n    steps:\n"
        "      - {id: a, log: {message: hi}, if: steps.a.status}\n",
        [
            "6: steps.a: step 'a' does not run before this step; only earlier steps' results can "
            "be used"
        ],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: !!int x}}]}\n",
        ["3: 'x' is not a valid !!int"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{log: {message: hi}, api: {}, file: {}}]}"
        "\n",
        ["3: step has more than one type (log, api, file); put each in its own step"],
    ),
    (
        "rules:\n  - {name: r, on: vps.created, steps: [{logg: {message: hi}, iff: x}]}\n",
        [
            "3: unknown key 'logg' in step; expected one of: id, if, timeout, retry, "
            f"continue_on_error, or a step type ({TYPES}) (did you mean 'log'?)",
            "3: unknown key 'iff' in step; expected one of: id, if, timeout, retry, "
            f"continue_on_error, or a step type ({TYPES}) (did you mean 'if'?)",
            f"3: step has no type; add one of: {TYPES}",
        ],
    ),
]


def test_file_paths_that_always_leave_data_dir_are_refused(tmp_path: Path) -> None:
    steps = (
        '[{file: {path: /etc/passwd, content: x}}, {file: {path: "a/../../x", content: x}}, '
        '{file: {path: "~/x", content: x}}, {file: {path: "../{{ event.data.id }}", content: x}},'
        ' {file: {path: "out/{{ event.data.id }}..x", content: x}},'
        ' {file: {path: "..{{ event.data.id }}", content: x}}]'
    )
    problems = problems_of(
        tmp_path, f"version: 1\nrules:\n  - {{name: r, on: vps.created, steps: {steps}}}\n", env={}
    )
    assert problems == [
        "3: file parameter 'path': path '/etc/passwd' is absolute; file paths are relative to "
        'DATA_DIR, e.g. "kubeconfigs/{{ event.data.id }}.yaml"',
        "3: file parameter 'path': path 'a/../../x' walks up out of DATA_DIR ('..'); drop the '..'",
        "3: file parameter 'path': path '~/x' is absolute; file paths are relative to DATA_DIR, "
        'e.g. "kubeconfigs/{{ event.data.id }}.yaml"',
        "3: file parameter 'path': path '../{{ event.data.id }}' walks up out of DATA_DIR "
        "('..'); drop the '..'",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "version: 1\nrules:\n  - name: r\n    on: vps.created\n     steps: x\n",
            "5: YAML syntax error: mapping values are not allowed here; check the indentation, "
            "and quote a value that holds ': '",
        ),
        (  # an unclosed bracket: the parser points past the end; the last line is named
            "version: 1\nrules:\n  - name: r\n    steps:\n      - log: {message: hi\n",
            "5: YAML syntax error: expected ',' or '}', but got '<stream end>' "
            "(while parsing a flow mapping started at line 5)",
        ),
    ],
)
def test_yaml_syntax_errors_name_a_line_of_the_file_and_a_hint(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problems_of(tmp_path, text, env={}) == [expected]


@pytest.mark.parametrize(("body", "expected"), INLINE_MISTAKES)
def test_inline_mistake(tmp_path: Path, body: str, expected: list[str]) -> None:
    assert problems_of(tmp_path, "version: 1\n" + body, env={}) == expected


def test_version_forms(tmp_path: Path) -> None:
    assert load(tmp_path, "version: '1'\nrules: []\n").version == 1
    assert problems_of(tmp_path, "version: 1.0\nrules: []\n") == [
        "1: unsupported version 1.0; this tashooks reads version: 1",
        "2: warning: no rules: events are stored and audited, but nothing runs",
    ]
    assert problems_of(tmp_path, "version: [1]\n")[0] == (
        "1: unsupported version a list; this tashooks reads version: 1"
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"version: 1\n# caf\xe9\n")
    assert [str(p) for p in check_rules(path, env={})[1]] == [
        f"{path}:2: the rules file is not valid UTF-8"
    ]


# -- one testdata file per mistake: the exact `file:line: message` -------------------------

MISTAKES: dict[str, list[str]] = {
    "yaml_syntax.yaml": [
        "5: YAML syntax error: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started at line 4)",
    ],
    "tab.yaml": ["4: tab character in indentation; YAML indents with spaces"],
    "duplicate_key.yaml": ["7: duplicate key 'on' (first defined at line 4)"],
    "unknown_key_top.yaml": [
        "1: warning: no rules: events are stored and audited, but nothing runs",
        "2: unknown key 'rule'; expected one of: version, defaults, targets, rules, tests "
        "(did you mean 'rules'?)",
    ],
    "unknown_key_rule.yaml": [
        "5: unknown key 'stpes' in rule; expected one of: name, on, when, throttle, "
        "concurrency, ordered, steps (did you mean 'steps'?)",
    ],
    "unknown_key_step.yaml": [
        "7: unknown key 'retries' in step; expected one of: id, if, timeout, retry, "
        f"continue_on_error, or a step type ({TYPES}) (did you mean 'retry'?)",
    ],
    "wrong_type.yaml": [
        "5: ordered must be true or false, not the string 'sometimes'",
        "6: throttle.limit must be a whole number greater than 0, not the string 'ten'",
        "9: continue_on_error must be true or false, not the number 1",
    ],
    "unknown_step_type.yaml": [
        f"6: unknown step type 'shell'; expected one of: {TYPES}",
    ],
    "two_step_types.yaml": [
        "7: step has more than one type (log, file); put each in its own step",
    ],
    "unknown_target.yaml": [
        "8: unknown target 'opz'; define it under targets: (did you mean 'ops'?)",
    ],
    "target_mismatch.yaml": [
        "3: target 'auditor': url must be an http:// or https:// URL with a host",
        "3: warning: target 'auditor' is not used by any rule",
        "9: target 'sink' has type http; a slack step needs a target of type slack",
    ],
    "template_syntax.yaml": ["6: template syntax error: unexpected '}'"],
    "block_template.yaml": [
        "10: template syntax error: Unexpected end of template. Jinja was looking for the "
        "following tags: 'elif' or 'else' or 'endif'. The innermost block that needs to be "
        "closed is 'if'.",
    ],
    "undefined_name.yaml": ["6: undefined name 'data' in template"],
    "steps_missing.yaml": [
        "8: steps.fetched: no step in rule 'refs' has id 'fetched' (did you mean 'fetch'?)",
    ],
    "steps_later.yaml": [
        "6: steps.fetch: step 'fetch' does not run before this step; only earlier steps' "
        "results can be used",
    ],
    "invalid_regex.yaml": [
        "6: invalid regular expression '^(ci-': missing ), unterminated subpattern at position 1",
    ],
    "unknown_operator.yaml": [
        "6: unknown operator 'equals' for data.status; expected one of: eq, ne, in, not_in, "
        "matches, not_matches, exists, gt, gte, lt, lte",
    ],
    "bad_duration.yaml": [
        "3: defaults.timeout: '10 minutes' is not a duration; write e.g. 500ms, 10s, 5m, 2h or 7d",
    ],
    "python_internals.yaml": [
        "6: template uses '__class__'; Python internals (names starting with '_', mro, ...) "
        "are not allowed",
        "6: template uses '__mro__'; Python internals (names starting with '_', mro, ...) "
        "are not allowed",
    ],
    "missing_version.yaml": ["1: missing required key 'version'; write version: 1"],
    "unset_env.yaml": ["3: environment variable SLACK_WEBHOOK_URL is not set"],
    "bad_param.yaml": [
        "6: api parameter 'method': input should be 'GET', 'POST', 'PUT', 'PATCH', 'DELETE' "
        "or 'HEAD'",
        "7: file step is missing required parameter 'path'",
        "7: file parameter 'mode': mode '999' must be octal, e.g. \"0600\"",
        "8: unknown parameter 'colour' for log; expected one of: message, level",
    ],
    "duplicate_names.yaml": [
        "8: duplicate step id 'a' (first used at line 6)",
        "10: duplicate rule name 'same' (first defined at line 3)",
    ],
    "many_mistakes.yaml": [
        "1: unsupported version 2; this tashooks reads version: 1",
        "3: defaults.retry.attempts must be a whole number greater than 0, not the number 0",
        "3: defaults.retry.backoff must be exponential or fixed, not the string 'linear'",
        "4: unknown key 'colour'; expected one of: version, defaults, targets, rules, tests",
        "6: target 'ops': type must be slack or http, not the string 'email'",
        "6: warning: target 'ops' is not used by any rule",
        "8: rule name 'bad name' may only use letters, digits, '_', '.' and '-'",
        "9: on needs at least one event type",
        "10: steps must be a non-empty list of steps",
        "11: rule is missing required key 'name'",
        f"13: step has no type; add one of: {TYPES}",
    ],
    # A mistake in one part of a step hides none in another.
    "one_part_hides_none.yaml": [
        "6: log parameter 'level': input should be 'debug', 'info', 'warning' or 'error'",
        "6: steps.nosuch: no step in rule 'parts' has id 'nosuch'",
        "7: file parameter 'mode': mode '999' must be octal, e.g. \"0600\"",
        "7: undefined name 'nope' in template",
    ],
    # A target with a mistake still has a type; a target named by a number is a name.
    "broken_target_used.yaml": [
        "3: target 'sink': url must be an http:// or https:// URL with a host",
        "8: unknown target 'opz'; define it under targets:",
        "9: target 'sink' has type http; a slack step needs a target of type slack",
        "10: unknown target '5'; define it under targets:",
    ],
    "jinja_globals.yaml": [
        f"6: undefined name 'range' in template {ONLY}",
        f"7: undefined name 'dict' in template {ONLY}",
        f"7: undefined name 'lipsum' in template {ONLY}",
        f"7: undefined name 'self' in template {ONLY}",
        f"8: undefined name 'cycler' in template {ONLY}",
        f"8: undefined name 'joiner' in template {ONLY}",
        f"8: undefined name 'namespace' in template {ONLY}",
    ],
    "unknown_filter.yaml": [
        "6: undefined name 'nope' in template",
        "6: unknown filter 'uper' in template (did you mean 'upper'?)",
        "7: unknown test 'sting' in template (did you mean 'string'?)",
    ],
    "rule_options.yaml": [
        "5: concurrency must be a whole number greater than 0, not the number 0",
        "6: throttle.mode must be drop or delay, not the string 'queue'",
    ],
    "tests_unknown_rule.yaml": [
        "10: test 'typo': fires names an unknown rule 'vps-dwn' (did you mean 'vps-down'?)",
        "11: test 'typo': not_fires names an unknown rule 'vps-up'",
    ],
    "tests_schema.yaml": [
        "9: test 'first': event.timestamp must be an RFC 3339 date-time, e.g. 2024-01-15T10:30:00Z",
        "9: test 'first': event.data must be a mapping, not a list",
        "11: unknown key 'expect' in test; expected one of: name, event, fires, not_fires",
        "12: duplicate test name 'first' (first defined at line 8)",
        "13: unknown key 'type' in the event of test 'first'; expected one of: event, "
        "timestamp, data",
        "13: the event of test 'first' is missing required key 'event'",
        "15: test 'first': rule 'r' is listed twice (first at line 14)",
        "16: test is missing required key 'name'",
        "16: test needs fires or not_fires: the rules it checks",
        "17: test 'nothing' needs fires or not_fires: the rules it checks",
        "20: each test must be a mapping, not the string 'just-a-name'",
    ],
    "tests_not_a_list.yaml": [
        "8: tests must be a list of tests (each starting with '- name:'), not a mapping",
    ],
}


def test_every_testdata_file_is_listed() -> None:
    assert sorted(p.name for p in TESTDATA.glob("*.yaml")) == sorted(MISTAKES)


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistake(name: str) -> None:
    path = TESTDATA / name
    rules, problems = check_rules(path, env={})
    assert rules is None
    assert [str(p) for p in problems] == [f"{path}:{line}" for line in MISTAKES[name]]
    with pytest.raises(RulesError) as info:
        load_rules(path, env={})
    assert info.value.problems == [p for p in problems if not p.warning]


def test_the_file_is_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(TESTDATA)
    _, problems = check_rules("tab.yaml", env={})
    assert str(problems[0]) == "tab.yaml:4: tab character in indentation; YAML indents with spaces"


def test_step_error_for_invalid_rendered_params() -> None:
    class Upper(Params):
        code: str

        @field_validator("code")
        @classmethod
        def _upper(cls, value: str) -> str:
            if not value.isupper():
                raise ValueError("code must be upper case")
            return value

    async def run(ctx: Any, params: Any) -> None:
        return None

    step = StepSpec(
        "upper",
        StepType("upper", Upper, run),
        {"code": compile_template("{{ event.data.code }}")},
        index=1,
        line=7,
        timeout=1.0,
        retry=RetryPolicy(),
        id="up",
    )
    assert step.render(context(vps(code="OK"))) == Upper(code="OK")
    with pytest.raises(StepError) as info:
        step.render(context(vps(code="no")))
    assert info.value.retryable is False
    assert str(info.value) == (
        "step 'up' (upper): parameters invalid after rendering: "
        "code: Value error, code must be upper case"
    )


def test_problems_are_sorted_by_line() -> None:
    for path in TESTDATA.glob("*.yaml"):
        _, problems = check_rules(path, env={})
        assert [p.line for p in problems] == sorted(p.line for p in problems), path.name


# -- tests: --------------------------------------------------------------------------------


def test_tests_section_loads(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        rules:
          - {name: a, on: vps.created, steps: [log: {message: a}]}
          - {name: b, on: vps.deleted, steps: [log: {message: b}]}
        tests:
          - name: created
            event:
              event: vps.created
              timestamp: 2024-01-15T10:30:00Z
              data: {id: 0123, n: 2, x: 1.5, e: 1e3, hex: 0x1F, word: on, ok: true, none: null,
                     list: [007, 7], deep: {id: 0042}}
            fires: a
            not_fires: [b]
          - name: deleted
            event: {event: vps.deleted}
            fires: [b]
        """,
    )
    created, deleted = rules.tests
    assert (created.name, created.event_type, created.line) == ("created", "vps.created", 6)
    assert [(e.rule, e.fires, e.line) for e in created.expect] == [
        ("a", True, 12),
        ("b", False, 13),
    ]
    # JSON numbers are numbers; any other unquoted value is the text as written.
    assert created.event() == {
        "event": "vps.created",
        "timestamp": "2024-01-15T10:30:00Z",
        "data": {
            "id": "0123",
            "n": 2,
            "x": 1.5,
            "e": 1000.0,
            "hex": "0x1F",
            "word": "on",
            "ok": True,
            "none": None,
            "list": ["007", 7],
            "deep": {"id": "0042"},
        },
    }
    # Without a timestamp, the event is stamped when the test runs.
    now = datetime(2025, 3, 1, 12, 0, 0, 500, tzinfo=UTC)
    assert deleted.event(now) == {
        "event": "vps.deleted",
        "timestamp": "2025-03-01T12:00:00Z",
        "data": {},
    }
    assert deleted.timestamp is None


def test_placeholders_for_unset_variables(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        version: 1
        targets:
          ops: {type: slack, url: "${HOOK}"}
          sink: {type: http, url: "https://${SINK_HOST}/in", headers: {X-Token: "${SET}"}}
        rules:
          - name: r
            on: vps.created
            steps:
              - api: {method: POST, path: "/networks/${NET}/attach"}
              - slack: {target: ops, text: "${HOOK}"}
              - http: {target: sink}
        """,
    )
    env = PlaceholderEnv({"SET": "s3cret"})
    rules = load_rules(path, env=env)
    assert env.unset == ["HOOK", "SINK_HOST", "NET"]
    # A placeholder that must be a URL is accepted in a target (it only ever is in dry runs).
    assert rules.targets["ops"].url == "<HOOK>"
    assert rules.targets["sink"].url == "https://<SINK_HOST>/in"
    assert rules.targets["sink"].headers == {"X-Token": "s3cret"}
    api = rules.rules[0].steps[0].render(context(vps("vps.created")))
    assert api.model_dump()["path"] == "/networks/<NET>/attach"
    # Without the placeholders, the same file is refused, as the daemon refuses it.
    assert problems_of(tmp_path, path.read_text(), env={"SET": "x"}) == [
        "3: environment variable HOOK is not set",
        "4: environment variable SINK_HOST is not set",
        "9: environment variable NET is not set",
        "10: environment variable HOOK is not set",
    ]
    # A placeholder only excuses a URL that comes from a variable.
    assert problems_of(
        tmp_path,
        "version: 1\ntargets:\n  t: {type: http, url: 'ftp://${X}'}\n",
        env=PlaceholderEnv({"X": "x"}),
    ) == [
        "1: warning: no rules: events are stored and audited, but nothing runs",
        "3: target 't': url must be an http:// or https:// URL with a host",
        "3: warning: target 't' is not used by any rule",
    ]


def test_ids_never_become_numbers(tmp_path: Path) -> None:
    rules = load(
        tmp_path,
        """\
        version: 1
        targets:
          "0042": {type: http, url: "https://sink.example", headers: {X-Account: 0042}}
        rules:
          - name: r
            on: vps.created
            throttle: {key: 0123, limit: 1, per: 1m}
            steps:
              - http: {target: 0042, body: 1e3, headers: {X-Id: 0x1F}}
        """,
    )
    assert rules.targets["0042"].headers == {"X-Account": "0042"}
    rule = rules.rules[0]
    assert rule.throttle is not None and rule.throttle.render_key(context(vps())) == "0123"
    http = rule.steps[0].render(context(vps())).model_dump()
    assert (http["target"], http["body"], http["headers"]) == ("0042", "1e3", {"X-Id": "0x1F"})


@pytest.mark.parametrize(
    "value",
    [
        "{{ event.data.secret }}",
        "{% if true %}x{% endif %}",
        "{# note #}{{ 7 * 7 }}",
        "{% endraw %}{{ event.data.secret }}",
        'quote " and \\ backslash {{ 1 }} é 😀',
        "a}b{c%d#e",
    ],
)
def test_environment_values_are_never_template_source(tmp_path: Path, value: str) -> None:
    """A ``${NAME}`` value is text in a template, whatever Jinja syntax it holds."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        '      - log: {message: "${V} for {{ event.data.id }}"}\n'
        '      - log: {message: "${V}"}\n'
        '      - api: {path: "/vps/{{ event.data.id }}", json: {note: "${V}"}}\n'
    )
    rules = load_rules(path, env={"V": value})
    context = {"event": {"data": {"id": "vps_1", "secret": "s3cret"}}}
    mixed, alone, api = (step.render(context) for step in rules.rules[0].steps)
    assert mixed.message == f"{value} for vps_1"  # type: ignore[attr-defined]
    assert alone.message == value  # type: ignore[attr-defined]
    assert api.json_ == {"note": value}  # type: ignore[attr-defined]


def test_api_paths_cannot_walk_up_out_of_the_api_base(tmp_path: Path) -> None:
    """Values from events are one encoded segment each; the path's own text must not climb
    out of API_URL's path either (``/../../x`` would reach ``/x`` on the API's host)."""
    problems = problems_of(
        tmp_path,
        """
        version: 1
        rules:
          - name: x
            on: vps.created
            steps:
              - api: {method: GET, path: "/../../x"}
              - api: {method: GET, path: "/vps/./{{ event.data.id }}"}
              - api: {method: GET, path: "/vps/{{ event.data.id }}?q=.."}
        """,
    )
    assert [p.split(":")[0] for p in problems] == ["7", "8"]
    assert all("has a '.' or '..' segment" in p for p in problems)


def test_an_empty_event_type_is_an_error(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        """
        version: 1
        rules:
          - name: x
            on: ""
            steps:
              - log: {message: hi}
          - name: y
            on: [vps.created, " "]
            steps:
              - log: {message: hi}
        """,
    )
    assert problems == [
        "5: on: an empty event type matches nothing; write e.g. vps.created",
        "9: on: an empty event type matches nothing; write e.g. vps.created",
    ]


def test_steps_are_keyed_by_what_they_are(tmp_path: Path) -> None:
    """A run's progress names steps by their definition: identical steps apart, the same
    step the same wherever it stands, an edited step anew."""
    text = """
        version: 1
        rules:
          - name: r
            on: vps.created
            steps:{first}
              - log: {{message: hi}}
              - log: {{message: hi}}
              - log: {{message: "{{{{ event.data.id }}}}"}}
    """
    [rule] = load(tmp_path, text.format(first="")).rules
    keys = [s.key for s in rule.steps]
    assert len(set(keys)) == 3 and keys[1] == keys[0] + "#2"
    [moved] = load(tmp_path, text.format(first="\n              - log: {message: new}")).rules
    assert [s.key for s in moved.steps][1:] == keys
    edited = text.format(first="").replace('"{{ event.data.id }}"', '"{{ event.data.name }}"')
    [changed] = load(tmp_path, edited).rules
    assert [s.key for s in changed.steps][:2] == keys[:2] and changed.steps[2].key != keys[2]
