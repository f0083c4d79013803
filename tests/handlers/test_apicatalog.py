"""API short names: the catalogue, ``api: {call: ...}`` at load time, and end to end."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from handlers.apicatalog import CATALOG, PATH_PARAMS, PathParamError, lookup
from handlers.rules import check_rules, load_rules
from handlers.steps.api import ApiParams
from tashooks.simulator import SimulatorConfig, start_simulator
from tests.handlers.conftest import API_KEY, SECRET, StackFactory

# Every operation of the API reference (docs: "API Reference"), as the README names them.
REFERENCE = [
    ("vps.list", "GET", "/vps"),
    ("vps.create", "POST", "/vps"),
    ("vps.get", "GET", "/vps/{id}"),
    ("vps.delete", "DELETE", "/vps/{id}"),
    ("vps.action", "POST", "/vps/{id}/actions"),
    ("templates.list", "GET", "/templates"),
    ("templates.deploy", "POST", "/templates/deploy"),
    ("templates.deployments", "GET", "/templates/deployments"),
    ("templates.delete_deployment", "DELETE", "/templates/deployments/{id}"),
    ("kubernetes.list", "GET", "/kubernetes"),
    ("kubernetes.create", "POST", "/kubernetes"),
    ("kubernetes.get", "GET", "/kubernetes/{id}"),
    ("kubernetes.kubeconfig", "GET", "/kubernetes/{id}/kubeconfig"),
    ("kubernetes.delete", "DELETE", "/kubernetes/{id}"),
    ("storage.buckets", "GET", "/storage/buckets"),
    ("storage.create_bucket", "POST", "/storage/buckets"),
    ("storage.credentials", "POST", "/storage/credentials"),
    ("storage.delete_bucket", "DELETE", "/storage/buckets/{name}"),
    ("networks.list", "GET", "/networks"),
    ("networks.create", "POST", "/networks"),
    ("networks.attach", "POST", "/networks/{id}/attach"),
    ("networks.vpn_config", "GET", "/networks/{id}/vpn-config"),
    ("networks.delete", "DELETE", "/networks/{id}"),
    ("webhooks.create", "POST", "/webhooks"),
]


def test_catalogue_names_every_operation_of_the_reference() -> None:
    assert [(op.name, op.method, op.path) for op in CATALOG.values()] == REFERENCE


async def test_every_call_is_a_route_of_the_simulator() -> None:
    sim = await start_simulator(SimulatorConfig(api_key=API_KEY), "127.0.0.1", 0)
    try:
        routes = {
            (route.method, route.resource.canonical)
            for route in sim.app.router.routes()
            if route.resource is not None
        }
    finally:
        await sim.close()
    missing = [op.name for op in CATALOG.values() if (op.method, "/v1" + op.path) not in routes]
    assert missing == []


def test_path_params_are_fields_of_the_api_step() -> None:
    assert PATH_PARAMS == ("id", "name")
    assert set(PATH_PARAMS) <= set(ApiParams.model_fields)
    assert lookup("storage.delete_bucket").path_params == ("name",)
    assert lookup("vps.list").path_params == ()


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ("k8s_1", "/kubernetes/k8s_1/kubeconfig"),
        ("../../webhooks", "/kubernetes/..%2F..%2Fwebhooks/kubeconfig"),
        ("..", "/kubernetes/%2E%2E/kubeconfig"),
        ("a?b#c", "/kubernetes/a%3Fb%23c/kubeconfig"),
        (42, "/kubernetes/42/kubeconfig"),
    ],
)
def test_path_values_are_one_encoded_segment(value: Any, path: str) -> None:
    assert lookup("kubernetes.kubeconfig").path_for({"id": value}) == path


def test_empty_path_value_is_refused() -> None:
    with pytest.raises(PathParamError, match="'id' is empty"):
        lookup("vps.get").path_for({"id": ""})


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(KeyError, match=r"did you mean 'kubernetes\.kubeconfig'"):
        lookup("kubernetes.kubeconfg")


def problems(tmp_path: Path, steps: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    head = "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
    path.write_text(head + textwrap.indent(textwrap.dedent(steps), "      "))
    _, found = check_rules(path, env={})
    return [str(p).removeprefix(f"{path}:") for p in found if not p.warning]


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        (
            '- api: {call: kubernetes.kubeconfg, id: "{{ event.data.id }}"}\n',
            "6: api parameter 'call': unknown API call 'kubernetes.kubeconfg' "
            "(did you mean 'kubernetes.kubeconfig'?)",
        ),
        (
            "- api: {call: clusters.get, id: x}\n",
            "6: api parameter 'call': unknown API call 'clusters.get'; calls are "
            "<section>.<name>, sections: kubernetes, networks, storage, templates, vps, webhooks",
        ),
        (
            "- api: {call: vps.reboot, id: x}\n",
            "6: api parameter 'call': unknown API call 'vps.reboot' "
            "(use call: vps.action with json: {action: reboot})",
        ),
        (
            "- api: {call: vps.show, id: x}\n",
            "6: api parameter 'call': unknown API call 'vps.show'; vps has: vps.list, "
            "vps.create, vps.get, vps.delete, vps.action",
        ),
        (
            "- api:\n    call: kubernetes.kubeconfig\n",
            "7: api parameter 'id': kubernetes.kubeconfig needs 'id' "
            "(a non-empty value for /kubernetes/{id}/kubeconfig)",
        ),
        (
            "- api:\n    call: vps.list\n    id: x\n",
            "8: api parameter 'id': vps.list (GET /vps) takes no path parameters, not 'id'",
        ),
        (
            '- api: {method: GET, path: "/vps", id: x}\n',
            "6: api parameter 'id': 'id' is a path parameter of call:; with method and path, "
            "write the value into the path",
        ),
        (
            "- api:\n    call: vps.get\n    id: x\n    method: DELETE\n",
            "9: api parameter 'method': give call or method and path, not both "
            "(vps.get is GET /vps/{id})",
        ),
        (
            "- api: {method: GET}\n",
            "6: api: give call (e.g. call: vps.get) or path (with method)",
        ),
        (
            "- api: {call: vps.get, idd: x}\n",
            "6: unknown parameter 'idd' for api; expected one of: "
            "call, method, path, id, name, json, query",
        ),
    ],
)
def test_call_mistakes_are_reported_at_their_line(
    tmp_path: Path, steps: str, expected: str
) -> None:
    found = problems(tmp_path, steps)
    assert expected in found, found


def test_bucket_calls_take_a_name(tmp_path: Path) -> None:
    assert problems(tmp_path, "- api: {call: storage.delete_bucket, id: b}\n") == [
        "6: api parameter 'id': storage.delete_bucket (DELETE /storage/buckets/{name}) "
        "takes name, not 'id'",
        "6: api parameter 'name': storage.delete_bucket needs 'name' "
        "(a non-empty value for /storage/buckets/{name})",
    ]


def test_a_number_looking_id_stays_as_written(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        "      - api: {call: vps.get, id: 0123}\n"
    )
    [rule] = load_rules(path, env={}).rules
    params = rule.steps[0].render({"event": {}, "steps": {}, "rule": "r", "event_id": "e"})
    assert isinstance(params, ApiParams)
    assert params.resolved() == ("GET", "/vps/0123")


def test_describe_shows_the_resolved_request(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        '      - api: {call: vps.action, id: "{{ event.data.id }}", json: {action: reboot}}\n'
    )
    [rule] = load_rules(path, env={}).rules
    spec = rule.steps[0]
    context = {"event": {"data": {"id": "a/b"}}, "steps": {}, "rule": "r", "event_id": "e"}
    assert spec.step_type.describe is not None
    assert spec.step_type.describe(spec.render(context)) == (
        "POST /vps/a%2Fb/actions (vps.action) json={'action': 'reboot'}"
    )


CALL_RULES = """
version: 1
defaults:
  timeout: 5s
rules:
  - name: save-kubeconfig
    on: kubernetes.ready
    steps:
      - id: kubeconfig
        api: {call: kubernetes.kubeconfig, id: "{{ event.data.id }}"}
      - id: cluster
        api: {call: kubernetes.get, id: "{{ event.data.id }}"}
      - file:
          path: "kubeconfigs/{{ steps.cluster.body.name }}.yaml"
          content: "{{ steps.kubeconfig.body }}"
"""


async def test_calls_reach_the_api_end_to_end(make_stack: StackFactory) -> None:
    stack = await make_stack(CALL_RULES)
    stack.sim.state.add_webhook(stack.url, events=["kubernetes.ready"], secret=SECRET)
    cluster = await stack.create_cluster("prod")
    path = stack.settings.data_dir / "kubeconfigs" / "prod.yaml"
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert cluster["id"] in path.read_text()
    assert stack.sim.state.calls("GET", "/v1/kubernetes/{id}/kubeconfig") == 1
    assert stack.sim.state.calls("GET", "/v1/kubernetes/{id}") == 1


async def test_call_path_values_are_one_segment_end_to_end(make_stack: StackFactory) -> None:
    stack = await make_stack(CALL_RULES)
    event_id = await stack.send("kubernetes.ready", id="../../webhooks", name="x")
    await stack.wait_runs(event_id)
    assert stack.sim.state.calls("GET", "/v1/kubernetes/{id}/kubeconfig") == 1
    assert len(stack.sim.state.requests) == 1
    [dead] = await stack.deadletters()
    assert "Cluster ../../webhooks not found" in dead["error"]
