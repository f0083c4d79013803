"""Example handlers for ``python`` steps: ``async def fn(event, api, params)``.

Use one from rules.yaml::

    - name: attach-by-role
      on: vps.created
      steps:
        - id: attached
          python:
            handler: "handlers.examples:attach_to_role_network"
            with: {suffix: "-net"}
        - log: {message: "{{ event.data.name }}: {{ steps.attached }}"}

A handler of your own lives in any module the worker can import (on ``PYTHONPATH``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handlers.apicatalog import CATALOG
from handlers.client import ApiClient
from handlers.exceptions import StepError


async def attach_to_role_network(
    event: Mapping[str, Any], api: ApiClient, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Attach a new VPS to the private network of its role: ``web-3`` joins ``web-net``.

    The role is the VPS name up to its first ``-``; the network is the one named the role
    plus ``params["suffix"]`` (default ``-net``). Without such a network nothing is done and
    the result says so. API errors fail the step (retried as for any ``api`` step).

    Result: ``{"attached": bool, "network": id or None, "network_name": name}``.
    """
    data = event.get("data")
    vps_id = data.get("id") if isinstance(data, Mapping) else None
    name = data.get("name") if isinstance(data, Mapping) else None
    if not isinstance(vps_id, str) or not vps_id or not isinstance(name, str):
        raise StepError("the event has no VPS id and name (data.id, data.name)", retryable=False)
    wanted = name.split("-", 1)[0] + str(params.get("suffix", "-net"))
    listing = await api.request("GET", CATALOG["networks.list"].path)
    found = listing.body.get("data") if isinstance(listing.body, dict) else None
    network = next(
        (n for n in found or [] if isinstance(n, dict) and n.get("name") == wanted), None
    )
    if network is None:
        return {"attached": False, "network": None, "network_name": wanted}
    attach = CATALOG["networks.attach"]
    await api.request(
        attach.method,
        attach.path_for({"id": network["id"]}),
        json_body={"vps_id": vps_id},
        # The same on every attempt, so a retried attach is answered, not repeated.
        idempotency_key=f"attach:{vps_id}:{network['id']}",
    )
    return {"attached": True, "network": network["id"], "network_name": wanted}
