"""``python`` steps: checked when the rules load, run with (event, api, params), errors."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from handlers.client import ApiClient
from handlers.exceptions import StepError
from handlers.rules import check_rules
from tests.handlers.conftest import API_KEY, StackFactory

HERE = "tests.handlers.test_steps_python"
FAST_RETRY = "retry: {attempts: 3, backoff: fixed, initial: 10ms, max: 10ms}"
CALLS: dict[str, int] = {}


async def echo(event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]) -> Any:
    """Returns what it was given; changes the event it got (a copy)."""
    event["data"]["id"] = "changed"  # type: ignore[index]
    return {"params": dict(params), "type": event["event"], "api": api.base_url}


async def flaky(event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]) -> str:
    CALLS["flaky"] = CALLS.get("flaky", 0) + 1
    if CALLS["flaky"] < 3:
        raise StepError("not yet", retryable=True)
    return "third time"


async def broken(event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]) -> None:
    CALLS["broken"] = CALLS.get("broken", 0) + 1
    raise RuntimeError("boom")


async def not_json(event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]) -> Any:
    """A set is not JSON: stored, it would come back a string after a resume."""
    return {"s": {1, 2}}


def not_async(event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]) -> None:
    """Not a coroutine function: refused when the rules load."""


def problems(tmp_path: Path, python: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: r\n    on: vps.created\n    steps:\n"
        f"      - python: {python}\n"
    )
    _, found = check_rules(path, env={})
    return [str(p).removeprefix(f"{path}:") for p in found if not p.warning]


@pytest.mark.parametrize(
    ("python", "expected"),
    [
        (
            '{handler: "handlers.examples:nope"}',
            "6: python parameter 'handler': module 'handlers.examples' has no 'nope' (a "
            "running worker imports a module once: after adding a function to it, restart "
            "the worker)",
        ),
        (
            '{handler: "nosuch.module:f"}',
            "6: python parameter 'handler': cannot import module 'nosuch.module': "
            "No module named 'nosuch'",
        ),
        (
            '{handler: "handlers.examples"}',
            "6: python parameter 'handler': handler 'handlers.examples' must be "
            "'package.module:function'",
        ),
        (
            f'{{handler: "{HERE}:not_async"}}',
            f"6: python parameter 'handler': {HERE}:not_async is not an async function; "
            "define it as async def (event, api, params)",
        ),
        (
            '{handler: "handlers.examples:attach_to_role_network", params: {}}',
            "6: unknown parameter 'params' for python; expected one of: handler, with",
        ),
        ("{}", "6: python step is missing required parameter 'handler'"),
    ],
)
def test_handler_mistakes_are_reported_at_load(tmp_path: Path, python: str, expected: str) -> None:
    assert problems(tmp_path, python) == [expected]


def test_with_templates_are_checked_at_load(tmp_path: Path) -> None:
    found = problems(
        tmp_path, f'{{handler: "{HERE}:echo", with: {{a: "{{{{ steps.later.x }}}}"}}}}'
    )
    assert len(found) == 1 and "later" in found[0]


def rules(steps: str, retry: str = FAST_RETRY) -> str:
    return textwrap.dedent("""
        version: 1
        defaults:
          {retry}
        rules:
          - name: py
            on: vps.created
            steps:
        {steps}
    """).format(retry=retry, steps=textwrap.indent(textwrap.dedent(steps), "      "))


async def test_handler_gets_event_api_and_rendered_params(make_stack: StackFactory) -> None:
    stack = await make_stack(
        rules(f"""
            - id: echoed
              python:
                handler: "{HERE}:echo"
                with: {{name: "{{{{ event.data.name }}}}", n: 3, tags: ["{{{{ rule }}}}"]}}
            - file:
                path: "out/{{{{ event.data.id }}}}.json"
                content: "{{{{ steps.echoed | tojson }}}}"
        """)
    )
    event_id = await stack.send("vps.created", id="vps_1", name="web-1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "ok", run
    result = json.loads((stack.settings.data_dir / "out" / "vps_1.json").read_text())
    assert result == {
        "params": {"name": "web-1", "n": 3, "tags": ["py"]},
        "type": "vps.created",
        "api": stack.sim.url,
    }


async def test_step_error_keeps_its_retryability(make_stack: StackFactory) -> None:
    CALLS.clear()
    stack = await make_stack(rules(f'- python: {{handler: "{HERE}:flaky"}}\n'))
    event_id = await stack.send("vps.created", id="vps_1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "ok" and CALLS["flaky"] == 3


async def test_other_exceptions_are_dead_lettered_at_once(make_stack: StackFactory) -> None:
    CALLS.clear()
    stack = await make_stack(rules(f'- python: {{handler: "{HERE}:broken"}}\n'))
    event_id = await stack.send("vps.created", id="vps_1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "failed"
    [dead] = await stack.deadletters()
    assert dead["error"] == f"{HERE}:broken raised RuntimeError: boom"
    assert dead["attempts"] == 1 and CALLS["broken"] == 1 and dead["step_type"] == "python"


async def test_a_result_that_is_not_json_fails_the_step(make_stack: StackFactory) -> None:
    stack = await make_stack(rules(f'- python: {{handler: "{HERE}:not_json"}}\n'))
    event_id = await stack.send("vps.created", id="vps_1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "failed"
    [dead] = await stack.deadletters()
    assert dead["error"].startswith(f"{HERE}:not_json returned a value that is not JSON")
    assert "return dicts, lists" in dead["error"] and dead["attempts"] == 1


EXAMPLE_RULES = """
    - id: attached
      python:
        handler: "handlers.examples:attach_to_role_network"
        with: {suffix: "-net"}
    - file:
        path: "attached/{{ event.data.id }}.json"
        content: "{{ steps.attached | tojson }}"
"""


async def test_example_attaches_a_new_vps_to_its_role_network(make_stack: StackFactory) -> None:
    stack = await make_stack(rules(EXAMPLE_RULES))
    auth = {"Authorization": f"Bearer {API_KEY}"}
    for name in ("db-net", "web-net"):
        await stack.http.post(
            f"{stack.sim.url}/networks", json={"name": name, "cidr": "10.0.0.0/24"}, headers=auth
        )
    [web_net] = [n for n in stack.sim.state.networks.values() if n.name == "web-net"]
    vps = (
        await stack.http.post(
            f"{stack.sim.url}/vps",
            json={"name": "web-7", "size": "standard-2vcpu-4gb", "image": "ubuntu-24.04"},
            headers=auth,
        )
    ).json()
    stack.sim.state.clear_requests()
    event_id = await stack.send("vps.created", id=vps["id"], name="web-7")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "ok", run
    result = json.loads((stack.settings.data_dir / "attached" / f"{vps['id']}.json").read_text())
    assert result == {"attached": True, "network": web_net.id, "network_name": "web-net"}
    assert vps["id"] in web_net.vps_ids
    [attach] = [r for r in stack.sim.state.requests if r.method == "POST"]
    assert attach.pattern == "/v1/networks/{id}/attach"
    assert {k.lower(): v for k, v in attach.headers.items()}["idempotency-key"] == (
        f"attach:{vps['id']}:{web_net.id}"
    )


async def test_example_without_a_matching_network_changes_nothing(
    make_stack: StackFactory,
) -> None:
    stack = await make_stack(rules(EXAMPLE_RULES))
    event_id = await stack.send("vps.created", id="vps_1", name="batch-1")
    [run] = await stack.wait_runs(event_id)
    assert run["status"] == "ok", run
    result = json.loads((stack.settings.data_dir / "attached" / "vps_1.json").read_text())
    assert result == {"attached": False, "network": None, "network_name": "batch-net"}
    assert stack.sim.state.calls("POST", "/v1/networks/{id}/attach") == 0
