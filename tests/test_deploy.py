"""The shipped deployment files keep the durability and shutdown promises of the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from receiver.durations import parse_duration

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_redis_is_durable() -> None:
    command = _compose()["services"]["redis"]["command"]
    args = dict(zip(command[1::2], command[2::2], strict=False))
    assert args["--appendonly"] == "yes"
    assert args["--appendfsync"] == "always"


def test_compose_runs_receiver_and_worker_with_grace() -> None:
    services = _compose()["services"]
    assert services["receiver"]["command"] == ["tashooks", "receiver"]
    assert services["worker"]["command"] == ["tashooks", "worker"]
    for name in ("receiver", "worker"):
        service = services[name]
        grace = parse_duration(service["environment"]["TASHOOKS_SHUTDOWN_GRACE"])
        assert parse_duration(service["stop_grace_period"]) > grace
        assert service["environment"]["TASHOOKS_REDIS_URL"].startswith("redis://redis:")
        assert "TASHOOKS_WEBHOOK_SECRET" not in service["environment"]  # only as a file


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "\nUSER tashooks\n" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
