"""The shipped deployment files keep the durability and shutdown promises of the README."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
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


# Kubernetes manifests (deploy/kubernetes) ---------------------------------------------------

K8S = ROOT / "deploy" / "kubernetes"
OVERLAY = ROOT / "deploy" / "kubernetes-external-redis"
SECRET_FIELDS = ("WEBHOOK_SECRET", "API_KEY", "ADMIN_TOKEN")


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def _kustomization(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = YAML(typ="safe").load((directory / "kustomization.yaml").read_text())
    return doc


def _manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in _kustomization(K8S)["resources"]:
        docs.extend(_yaml_docs(K8S / name))
    return docs


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _workloads() -> list[dict[str, Any]]:
    return [d for d in _manifests() if d["kind"] in ("Deployment", "StatefulSet")]


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(k) == v for k, v in selector.items())


def _mount_of(workload: dict[str, Any], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount holding ``path`` (the longest prefix), and its pod volume ({} for a
    StatefulSet's claim template)."""
    mounts = [
        m
        for m in _container(workload).get("volumeMounts", [])
        if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
    ]
    assert mounts, f"{path} is not on a mounted volume"
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    return mount, volumes.get(mount["name"], {})


def test_kustomizations_list_every_file() -> None:
    base = _kustomization(K8S)
    listed = set(base["resources"])
    listed.update(f for gen in base.get("configMapGenerator", []) for f in gen["files"])
    assert {p.name for p in K8S.iterdir()} - {"kustomization.yaml"} == listed
    overlay = _kustomization(OVERLAY)
    assert overlay["resources"] == ["../kubernetes"]
    patches = {p["path"] for p in overlay["patches"] if "path" in p}
    assert {p.name for p in OVERLAY.iterdir()} - {"kustomization.yaml"} == patches


def test_receiver_probes_its_port_and_a_service_selects_it() -> None:
    receiver = _one("Deployment", "tashooks-receiver")
    container = _container(receiver)
    assert container["args"] == ["tashooks", "receiver"]
    assert receiver["spec"]["replicas"] >= 2
    (port,) = container["ports"]
    port_refs = {port["containerPort"], port["name"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] in port_refs
    assert str(port["containerPort"]) == _env(container)["TASHOOKS_PORT"]["value"]
    service = _one("Service", "tashooks-receiver")
    assert _selects(service["spec"]["selector"], receiver)
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_refs


def test_worker_serves_metrics_and_liveness_on_its_metrics_port() -> None:
    worker = _one("Deployment", "tashooks-worker")
    container = _container(worker)
    (port,) = container["ports"]
    assert str(port["containerPort"]) == _env(container)["TASHOOKS_METRICS_PORT"]["value"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["port"] in (port["name"], port["containerPort"])
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port["containerPort"])


def test_grace_periods_exceed_shutdown_grace() -> None:
    for name in ("tashooks-receiver", "tashooks-worker"):
        workload = _one("Deployment", name)
        grace = parse_duration(_env(_container(workload))["TASHOOKS_SHUTDOWN_GRACE"]["value"])
        assert workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace


def test_worker_is_scaled_on_queue_depth() -> None:
    worker = _one("Deployment", "tashooks-worker")
    assert _container(worker)["args"] == ["tashooks", "worker"]
    assert "replicas" not in worker["spec"]  # owned by the autoscaler, not reset by apply
    (scaler,) = [d for d in _manifests() if d["kind"] == "ScaledObject"]
    target = scaler["spec"]["scaleTargetRef"]
    assert (target.get("kind", "Deployment"), target["name"]) == ("Deployment", "tashooks-worker")
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "prometheus"  # KEDA's redis scaler measures lists only
    assert "tashooks_queue_depth" in trigger["metadata"]["query"]
    assert float(trigger["metadata"]["threshold"]) > 0


def test_tashooks_secrets_reach_pods_only_as_mounted_files() -> None:
    secret = _one("Secret", "tashooks")
    values = set(secret["stringData"].values())
    assert {"webhook-secret", "api-key", "admin-token", "slack-webhook-url"} <= set(
        secret["stringData"]
    )
    for workload in _workloads():
        env = _env(_container(workload))
        for field in SECRET_FIELDS:
            assert f"TASHOOKS_{field}" not in env, workload["metadata"]["name"]
            if f"TASHOOKS_{field}_FILE" not in env:
                continue
            path = env[f"TASHOOKS_{field}_FILE"]["value"]
            mount, volume = _mount_of(workload, path)
            assert volume["secret"]["secretName"] == "tashooks"
            relative = path[len(mount["mountPath"]) :].strip("/")
            assert relative in {i["path"] for i in volume["secret"]["items"]}
            assert {i["key"] for i in volume["secret"]["items"]} <= set(secret["stringData"])
        for var in env.values():
            assert var.get("value") not in values, f"{var['name']} holds a secret literally"
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert (ref["name"], ref["key"] in secret["stringData"]) == ("tashooks", True)
    receiver = _env(_container(_one("Deployment", "tashooks-receiver")))
    worker = _env(_container(_one("Deployment", "tashooks-worker")))
    assert "TASHOOKS_WEBHOOK_SECRET_FILE" in receiver
    assert "TASHOOKS_API_KEY_FILE" in worker


def test_worker_mounts_rules_and_a_persistent_data_dir() -> None:
    worker = _one("Deployment", "tashooks-worker")
    env = _env(_container(worker))
    mount, volume = _mount_of(worker, env["TASHOOKS_RULES"]["value"])
    assert "subPath" not in mount  # a subPath mount never sees ConfigMap updates
    generators = _kustomization(K8S)["configMapGenerator"]
    assert volume["configMap"]["name"] in {g["name"] for g in generators}
    _, data = _mount_of(worker, env["TASHOOKS_DATA_DIR"]["value"])
    claim = _one("PersistentVolumeClaim", data["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # shared by every worker


def test_deployed_rules_validate_with_the_worker_environment() -> None:
    from handlers.rules import load_rules

    worker_env = _env(_container(_one("Deployment", "tashooks-worker")))
    env = {name: "https://hooks.example.com/x" for name in worker_env}
    ruleset = load_rules(K8S / "rules.yaml", env=env)
    assert ruleset.rules


def test_disruption_budgets_cover_receiver_and_worker() -> None:
    budgets = [d for d in _manifests() if d["kind"] == "PodDisruptionBudget"]
    for name in ("tashooks-receiver", "tashooks-worker"):
        workload = _one("Deployment", name)
        assert any(_selects(b["spec"]["selector"]["matchLabels"], workload) for b in budgets)


def test_redis_is_durable_on_a_persistent_volume() -> None:
    redis = _one("StatefulSet", "redis")
    container = _container(redis)
    args = container["args"]
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "always"
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    mount, _ = _mount_of(redis, options["--dir"] + "/appendonlydir")
    assert mount["name"] == claim["metadata"]["name"]
    service = _one("Service", "redis")
    assert _selects(service["spec"]["selector"], redis)
    assert _one("Secret", "tashooks")["stringData"]["redis-url"].startswith("redis://redis:")


def test_containers_run_as_non_root_on_a_read_only_root() -> None:
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert context["runAsNonRoot"] is True, workload["metadata"]["name"]
            assert context["runAsUser"] != 0
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True


def test_receiver_and_worker_run_the_same_image() -> None:
    images = {
        _container(_one("Deployment", name))["image"]
        for name in ("tashooks-receiver", "tashooks-worker")
    }
    assert images == {"tashooks"}
    assert [i["name"] for i in _kustomization(K8S)["images"]] == ["tashooks"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", [K8S, OVERLAY], ids=["base", "external-redis"])
def test_kustomize_builds(directory: Path) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    kinds = {(d["kind"], d["metadata"]["name"]) for d in YAML(typ="safe").load_all(out.stdout)}
    assert (("StatefulSet", "redis") in kinds) is (directory == K8S)
    assert ("ScaledObject", "tashooks-worker") in kinds


# Grafana dashboard (deploy/grafana) --------------------------------------------------------

METRICS = {
    "tashooks_deliveries_total",
    "tashooks_queue_depth",
    "tashooks_rule_runs_total",
    "tashooks_step_duration_seconds_bucket",
    "tashooks_api_calls_total",
    "tashooks_deadletters",
    "tashooks_redis_errors_total",
}


def test_dashboard_panels_query_known_metrics() -> None:
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "tashooks.json").read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = dashboard["templating"]["list"]
    assert {"name": "datasource", "type": "datasource", "query": "prometheus"}.items() <= (
        variables[0].items()
    )
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            used.update(re.findall(r"\btashooks_[a-z_]+", target["expr"]))
    assert used == METRICS
