"""The dashboard's dry runs (``tashooks.uiroutes``): the running rules' file, loaded again
without the environment, so no secret from it reaches the browser."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from handlers.rules import load_rules
from receiver.app import create_app
from receiver.settings import load_settings
from receiver.ui import DRY_RUN, DryRunRefused
from tashooks.uiroutes import DashboardDryRun, enable_dry_run

SECRET_URL = "https://hooks.slack.example/services/T0/B0/very-secret-part"
RULES = """
version: 1
targets:
  ops: {type: slack, url: "${SLACK_URL}"}
rules:
  - name: notify
    on: "vps.*"
    when: {data.name: {matches: "^web-"}}
    steps:
      - slack: {target: ops, text: "{{ event.data.name }} is {{ event.data.status }}"}
      - api:
          call: vps.action
          id: "{{ event.data.id }}"
          json: {action: reboot, token: "${API_TOKEN}"}
"""
EVENT = {
    "event": "vps.status_changed",
    "timestamp": "2024-01-15T10:30:00Z",
    "data": {"id": "vps_1", "name": "web-1", "status": "stopped"},
}
ENV = {"SLACK_URL": SECRET_URL, "API_TOKEN": "tok-very-secret"}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


async def test_a_dry_run_shows_no_environment_value(tmp_path: Path) -> None:
    rules_file = write(tmp_path / "rules.yaml", RULES)
    running = load_rules(rules_file, env=ENV)
    doc: dict[str, Any] = await DashboardDryRun(lambda: running)(EVENT)
    assert doc["fired"] == ["notify"]
    assert doc["rules_version"] == doc["running_version"] == running.version_hash
    assert "note" not in doc
    assert sorted(doc["placeholders"]) == ["API_TOKEN", "SLACK_URL"]
    [plan] = doc["rules"]
    assert [s["status"] for s in plan["steps"]] == ["runs", "runs"]
    assert "web-1 is stopped" in plan["steps"][0]["description"]
    shown = repr(doc)
    assert "very-secret" not in shown and "slack.example" not in shown

    not_web = {**EVENT, "data": {"id": "vps_2", "name": "db-1"}}
    doc = await DashboardDryRun(lambda: running)(not_web)
    assert doc["fired"] == [] and doc["rules"][0]["reason"].startswith("when:")


async def test_the_file_is_loaded_once_per_version_and_differences_are_noted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules_file = write(tmp_path / "rules.yaml", RULES)
    running = load_rules(rules_file, env=ENV)
    dry = DashboardDryRun(lambda: running)
    loads: list[Path] = []
    import tashooks.uiroutes as uiroutes

    real = uiroutes.check_rules

    def counting(path: Any, env: Any = None) -> Any:
        loads.append(Path(path))
        return real(path, env)

    monkeypatch.setattr(uiroutes, "check_rules", counting)
    await dry(EVENT)
    await dry(EVENT)
    assert len(loads) == 1

    write(rules_file, RULES.replace('"^web-"', '"^db-"'))
    doc = await dry(EVENT)
    assert len(loads) == 2
    assert doc["fired"] == [] and doc["rules_version"] != doc["running_version"]
    assert "not the one the worker runs" in doc["note"]

    write(rules_file, "version: 1\nrules: [{name: x}]\n")
    with pytest.raises(DryRunRefused, match="does not validate"):
        await dry(EVENT)
    rules_file.unlink()
    with pytest.raises(DryRunRefused, match="cannot read"):
        await dry(EVENT)


def test_enable_dry_run_sets_the_hook_only_with_a_worker(tmp_path: Path) -> None:
    settings = load_settings(webhook_secret="s", admin_token="t", data_dir=tmp_path)
    app = create_app(settings)
    enable_dry_run(app, None)
    assert DRY_RUN not in app

    class FakeWorker:
        ctx = {"rules": load_rules(write(tmp_path / "rules.yaml", RULES), env=ENV)}

    enable_dry_run(app, FakeWorker())
    assert isinstance(app[DRY_RUN], DashboardDryRun)
