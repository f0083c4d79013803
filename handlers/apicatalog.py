"""Short names for every operation of the tasmanian.cloud API (``api: {call: ...}``).

``call: kubernetes.kubeconfig`` with ``id: "{{ event.data.id }}"`` is
``GET /kubernetes/{id}/kubeconfig``. A call's path parameters (``{id}``, ``{name}``) are
given as keys of the step; each value is percent-encoded as exactly one path segment.
The names follow the API reference's sections and the SDKs (``client.vps.list()``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from handlers.transforms import encode_segment

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
# What ``POST /vps/{id}/actions`` takes as ``action`` (the API reference).
VPS_ACTIONS = ("reboot", "shutdown", "start", "rebuild")


class PathParamError(ValueError):
    """A path parameter's value cannot be one path segment (it is empty)."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One API operation: ``method`` and ``path`` (placeholders in braces) under API_URL."""

    name: str
    method: str
    path: str
    summary: str

    @property
    def path_params(self) -> tuple[str, ...]:
        """The placeholders of ``path``, in order (``("id",)`` for ``/vps/{id}``)."""
        return tuple(_PLACEHOLDER.findall(self.path))

    def path_for(self, values: Mapping[str, object]) -> str:
        """``path`` with each placeholder replaced by its value as one encoded segment."""

        def segment(match: re.Match[str]) -> str:
            value = values[match.group(1)]
            if value is None or str(value) == "":
                raise PathParamError(f"{self.name}: path parameter '{match.group(1)}' is empty")
            return encode_segment(value)

        return _PLACEHOLDER.sub(segment, self.path)


def _catalog(*ops: tuple[str, str, str, str]) -> dict[str, Operation]:
    return {name: Operation(name, method, path, summary) for name, method, path, summary in ops}


CATALOG: dict[str, Operation] = _catalog(
    ("vps.list", "GET", "/vps", "List VPS instances"),
    ("vps.create", "POST", "/vps", "Create a VPS"),
    ("vps.get", "GET", "/vps/{id}", "Get a VPS"),
    ("vps.delete", "DELETE", "/vps/{id}", "Delete a VPS"),
    ("vps.action", "POST", "/vps/{id}/actions", "reboot, shutdown, start or rebuild a VPS"),
    ("templates.list", "GET", "/templates", "List templates"),
    ("templates.deploy", "POST", "/templates/deploy", "Deploy a template"),
    ("templates.deployments", "GET", "/templates/deployments", "List deployments"),
    (
        "templates.delete_deployment",
        "DELETE",
        "/templates/deployments/{id}",
        "Delete a deployment",
    ),
    ("kubernetes.list", "GET", "/kubernetes", "List clusters"),
    ("kubernetes.create", "POST", "/kubernetes", "Create a cluster"),
    # Not in the API reference's list; the platform's simulator serves it.
    ("kubernetes.get", "GET", "/kubernetes/{id}", "Get a cluster"),
    ("kubernetes.kubeconfig", "GET", "/kubernetes/{id}/kubeconfig", "Get a kubeconfig"),
    ("kubernetes.delete", "DELETE", "/kubernetes/{id}", "Delete a cluster"),
    ("storage.buckets", "GET", "/storage/buckets", "List buckets"),
    ("storage.create_bucket", "POST", "/storage/buckets", "Create a bucket"),
    ("storage.credentials", "POST", "/storage/credentials", "Generate S3 credentials"),
    ("storage.delete_bucket", "DELETE", "/storage/buckets/{name}", "Delete a bucket"),
    ("networks.list", "GET", "/networks", "List networks"),
    ("networks.create", "POST", "/networks", "Create a network"),
    ("networks.attach", "POST", "/networks/{id}/attach", "Attach a VPS to a network"),
    ("networks.vpn_config", "GET", "/networks/{id}/vpn-config", "Get a network's VPN config"),
    ("networks.delete", "DELETE", "/networks/{id}", "Delete a network"),
    ("webhooks.create", "POST", "/webhooks", "Register a webhook"),
)

# Every path parameter some call takes (the ``api`` step's extra keys).
PATH_PARAMS: tuple[str, ...] = tuple(
    sorted({param for op in CATALOG.values() for param in op.path_params})
)


def lookup(name: str) -> Operation:
    """The operation called ``name``; ``KeyError`` with a did-you-mean message if none."""
    try:
        return CATALOG[name]
    except KeyError:
        raise KeyError(unknown_call_message(name)) from None


def unknown_call_message(name: str) -> str:
    """``unknown API call 'x'`` with the closest name, or the sections, as a hint."""
    close = difflib.get_close_matches(name, list(CATALOG), n=1, cutoff=0.75)
    if close:
        return f"unknown API call '{name}' (did you mean '{close[0]}'?)"
    section, _, verb = name.partition(".")
    if section == "vps" and verb in VPS_ACTIONS:
        return f"unknown API call '{name}' (use call: vps.action with json: {{action: {verb}}})"
    in_section = [n for n in CATALOG if n.startswith(section + ".")]
    if in_section:
        return f"unknown API call '{name}'; {section} has: {', '.join(in_section)}"
    sections = sorted({n.split(".", 1)[0] for n in CATALOG})
    return f"unknown API call '{name}'; calls are <section>.<name>, sections: " + ", ".join(
        sections
    )
