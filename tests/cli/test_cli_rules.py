"""``tashooks test-rules`` and ``tashooks check --test``, run as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_ENV = ("SLACK_WEBHOOK_URL", "AUDIT_SINK_URL", "DEFAULT_NETWORK_ID")
STOPPED = {
    "event": "vps.status_changed",
    "timestamp": "2024-01-15T10:30:00Z",
    "data": {"id": "vps_1", "name": "web-1", "status": "stopped"},
}


def tashooks(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASHOOKS_") and k not in EXAMPLE_ENV
    }
    return subprocess.run(
        [sys.executable, "-m", "tashooks.cli", *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_test_rules_reports_what_fires_and_why_not(tmp_path: Path) -> None:
    event = write(tmp_path, "event.json", json.dumps(STOPPED))
    result = tashooks("test-rules", "--event", str(event))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(
        'Event vps.status_changed at 2024-01-15T10:30:00Z, data {"id": "vps_1", "name": "web-1", '
        '"status": "stopped"}\nrules.yaml: 2 of 4 rules would fire: vps-down, audit-vps\n'
    )
    assert (
        "save-kubeconfig (line 17): does not fire: on: kubernetes.ready does not match the "
        "event type 'vps.status_changed'\n"
    ) in out
    assert "vps-down (line 42): FIRES\n" in out
    assert (
        "    throttle: at most 1 run per 10m for key 'vps_1' (more are dropped); "
        "not evaluated in a dry run\n"
    ) in out
    assert "    step 1 (slack), line 49: " in out and ":warning: web-1 is stopped" in out
    assert "audit-vps (line 52): FIRES\n    step 1 (http), line 55: " in out
    assert "Nothing was sent or written." in out
    # Unset variables do not block a dry run: they read as <NAME>, and it says so.
    assert result.stderr == (
        "note: not set, read as <NAME> for this check: SLACK_WEBHOOK_URL, AUDIT_SINK_URL, "
        "DEFAULT_NETWORK_ID\n"
    )


def test_why_did_it_not_fire(tmp_path: Path) -> None:
    event = {**STOPPED, "data": {"id": "vps_2", "name": "ci-4", "status": "running"}}
    result = tashooks("test-rules", "--event", "-", stdin=json.dumps(event))
    assert result.returncode == 0, result.stderr  # audit-vps fires
    assert (
        "vps-down (line 42): does not fire: when: data.status is 'running'; wanted data.status "
        "in ['stopped', 'error']; data.name is 'ci-4'; wanted data.name not_matches '^ci-'\n"
    ) in result.stdout


def test_json_output_from_type_and_data() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = tashooks(
        "test-rules",
        "--type",
        "kubernetes.ready",
        "--data",
        "id=0123",
        "--data",
        "name=prod",
        "--json",
        env={"SLACK_WEBHOOK_URL": "https://hooks.example/x"},
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["rules_file"] == "rules.yaml"
    assert doc["unset_env"] == ["AUDIT_SINK_URL", "DEFAULT_NETWORK_ID"]
    assert doc["event"]["data"] == {"id": "0123", "name": "prod"}  # --data values are strings
    stamp = datetime.fromisoformat(doc["event"]["timestamp"])
    assert before <= stamp <= before + timedelta(seconds=30)
    assert doc["fired"] == ["save-kubeconfig"]
    kube = doc["rules"][0]
    assert [s["status"] for s in kube["steps"]] == ["runs", "runs", "runs"]
    assert "GET /kubernetes/0123/kubeconfig" in kube["steps"][0]["description"]
    assert "<result of steps.saved.path>" in kube["steps"][2]["params"]["text"].replace(
        "&lt;", "<"
    ).replace("&gt;", ">")
    assert doc["rules"][1]["reason"] == (
        "on: vps.created does not match the event type 'kubernetes.ready'"
    )


def test_exit_1_when_no_rule_fires() -> None:
    result = tashooks("test-rules", "--type", "storage.bucket_created", "--data", "id=b1")
    assert result.returncode == 1
    assert "rules.yaml: 0 of 4 rules would fire\n" in result.stdout


def test_rules_from_the_option_or_the_environment(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "mine.yaml",
        """\
        version: 1
        rules:
          - {name: only, on: "*", steps: [log: {message: "{{ event.event }}"}]}
        """,
    )
    by_env = tashooks("test-rules", "--type", "x.y", env={"TASHOOKS_RULES": str(rules)})
    assert by_env.returncode == 0, by_env.stderr
    assert f"{rules}: 1 of 1 rule would fire: only" in by_env.stdout
    assert "step 1 (log), line 3: log info: x.y" in by_env.stdout
    by_option = tashooks("test-rules", "--type", "x.y", "--rules", str(rules), cwd=tmp_path)
    assert by_option.returncode == 0
    # The same report (but for the timestamp, now, in the first line).
    assert by_option.stdout.split("\n", 1)[1] == by_env.stdout.split("\n", 1)[1]


def test_usage_and_file_errors_exit_2(tmp_path: Path) -> None:
    bad_json = write(tmp_path, "bad.json", '{"event": "vps.created",}')
    result = tashooks("test-rules", "--event", str(bad_json))
    assert result.returncode == 2
    assert result.stderr.startswith(f"tashooks test-rules: {bad_json} is not valid JSON (")
    assert "write the event as a JSON object, e.g. {" in result.stderr

    result = tashooks("test-rules", "--event", str(tmp_path / "nope.json"))
    assert result.returncode == 2
    assert result.stderr == (
        f"tashooks test-rules: cannot read {tmp_path / 'nope.json'}: No such file or directory\n"
    )

    result = tashooks("test-rules", "--event", "-", stdin="[1, 2]")
    assert result.returncode == 2
    assert result.stderr.startswith("tashooks test-rules: stdin must hold a JSON object, e.g. {")

    result = tashooks("test-rules", "--event", "-", stdin='{"event": "x", "timestamp": "today"}')
    assert result.returncode == 2
    assert result.stderr == (
        "tashooks test-rules: stdin: timestamp must be an RFC 3339 date-time, "
        "e.g. 2024-01-15T10:30:00Z\n"
    )

    result = tashooks("test-rules", "--event", "-", stdin='{"data": {}}')
    assert result.returncode == 2
    assert "event must be a non-empty string" in result.stderr

    result = tashooks("test-rules", "--event", "-", "--data", "a=b", stdin="{}")
    assert result.returncode == 2
    assert "--data goes with --type" in result.stderr

    result = tashooks("test-rules", "--type", "x", "--data", "novalue")
    assert result.returncode == 2
    assert result.stderr == (
        "tashooks test-rules: --data takes NAME=VALUE, e.g. --data name=web-1; got 'novalue'\n"
    )

    result = tashooks("test-rules")  # neither --event nor --type
    assert result.returncode == 2
    assert "one of the arguments --event --type is required" in result.stderr


def test_a_rules_file_that_does_not_validate_exits_2(tmp_path: Path) -> None:
    rules = write(tmp_path, "rules.yaml", "version: 1\nrules:\n  - {name: r, on: x, steps: []}\n")
    result = tashooks("test-rules", "--rules", str(rules), "--type", "x")
    assert result.returncode == 2
    assert result.stderr == (
        f"{rules}:3: steps must be a non-empty list of steps\n"
        f"tashooks test-rules: {rules} does not validate; fix it first "
        f"(tashooks check {rules})\n"
    )
    # --strict-env refuses unset variables, as the daemon does.
    strict = tashooks("test-rules", "--strict-env", "--type", "vps.created")
    assert strict.returncode == 2
    assert "rules.yaml:12: environment variable SLACK_WEBHOOK_URL is not set" in strict.stderr


def test_check_runs_the_example_tests() -> None:
    result = tashooks("check", "--test", "--env-placeholder", "rules.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rules.yaml: OK, 4 rules, 2 targets, version ")
    assert result.stdout.endswith("rules.yaml: 4 tests passed\n")
    assert "note: not set, read as <NAME> for this check: SLACK_WEBHOOK_URL" in result.stderr
    # Without placeholders, check refuses unset variables as the daemon would.
    strict = tashooks("check", "--test", "rules.yaml")
    assert strict.returncode == 1
    assert strict.stderr.endswith("rules.yaml: 3 errors; the rules were not loaded\n")


def test_check_reports_failing_tests(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "rules.yaml",
        """\
        version: 1
        rules:
          - name: down
            on: vps.status_changed
            when: {data.status: stopped}
            steps:
              - log: {message: "{{ event.data.name }} stopped"}
        tests:
          - name: stopped
            event: {event: vps.status_changed, data: {name: web-1, status: stopped}}
            fires: down
          - name: running
            event: {event: vps.status_changed, data: {name: web-1, status: running}}
            fires: [down]
          - name: no name
            event: {event: vps.status_changed, data: {status: stopped}}
            fires: [down]
        """,
    )
    result = tashooks("check", "--test", str(rules))
    assert result.returncode == 1
    assert result.stderr == (
        f"{rules}:14: test 'running': rule 'down' should fire but did not: when: data.status "
        "is 'running'; wanted data.status eq 'stopped'\n"
        f"{rules}:17: test 'no name': rule 'down' fires, but step 1 (log) would fail: template "
        "'{{ event.data.name }} stopped' failed: UndefinedError: 'dict object' has no attribute "
        "'name'\n"
        f"{rules}: 2 of 3 tests failed\n"
    )
    assert result.stdout.startswith(f"{rules}: OK, 1 rule, 0 targets, version ")


def test_check_without_tests(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "rules.yaml",
        "version: 1\nrules:\n  - {name: r, on: x, steps: [log: {message: a}]}\n",
    )
    plain = tashooks("check", str(rules))
    assert plain.returncode == 0
    assert "no tests" not in plain.stdout and "passed" not in plain.stdout
    result = tashooks("check", "--test", str(rules))
    assert result.returncode == 0
    assert result.stdout.endswith(
        f"{rules}: no tests to run; add a tests: section (see README, Rules)\n"
    )


def test_check_lists_every_mistake_sorted_by_line(tmp_path: Path) -> None:
    rules = write(
        tmp_path,
        "rules.yaml",
        """\
        version: 1
        targets:
          ops: {type: slack, url: "https://hooks.example/x"}
        rules:
          - name: r
            on: vps.created
            steps:
              - log: {message: "{{ steps.nosuch }}", level: loud}
              - http: {target: ops}
        tests:
          - {name: t, event: {event: vps.created}, fires: [q]}
        """,
    )
    result = tashooks("check", str(rules))
    assert result.returncode == 1
    assert result.stderr == (
        f"{rules}:8: log parameter 'level': input should be 'debug', 'info', 'warning' or "
        "'error'\n"
        f"{rules}:8: steps.nosuch: no step in rule 'r' has id 'nosuch'\n"
        f"{rules}:9: target 'ops' has type slack; a http step needs a target of type http\n"
        f"{rules}:11: test 't': fires names an unknown rule 'q'\n"
        f"{rules}: 4 errors; the rules were not loaded\n"
    )
