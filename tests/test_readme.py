"""The README's rule examples are real: they validate with the loader behind check."""

from __future__ import annotations

import re
from pathlib import Path

from handlers.rules import check_rules, load_rules

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/x",
    "CMDB_URL": "https://cmdb.example/hooks",
    "CMDB_TOKEN": "t",
    "DEFAULT_NETWORK_ID": "net_1",
}


def _example(tmp_path: Path) -> Path:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- example-rules -->\n```yaml\n(.*?)```", text, re.S)
    assert match, "the example-rules block is missing from README.md"
    path = tmp_path / "example.yaml"
    path.write_text(match.group(1))
    return path


def test_example_rules_validate_and_cover_every_event_type(tmp_path: Path) -> None:
    path = _example(tmp_path)
    ruleset, problems = check_rules(path, env=ENV)
    assert ruleset is not None, [str(p) for p in problems]
    assert [p for p in problems if not p.warning] == []
    from handlers.ruleset import KNOWN_EVENT_TYPES

    covered = {t for t in KNOWN_EVENT_TYPES if any(r.matches_type(t) for r in ruleset.rules)}
    assert covered == set(KNOWN_EVENT_TYPES)


def test_example_rules_fire_as_described(tmp_path: Path) -> None:
    from handlers.dryrun import dry_run

    ruleset = load_rules(_example(tmp_path), env=ENV)
    event = {
        "event": "vps.status_changed",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"id": "vps_1", "name": "web-1", "status": "stopped"},
    }
    assert [plan.rule for plan in dry_run(ruleset, event).fired] == ["vps-down"]
    event["data"]["name"] = "ci-1"
    assert dry_run(ruleset, event).fired == []
