"""The simulated resources and how each looks as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Vps:
    """A virtual server."""

    id: str
    name: str
    size: str
    image: str
    region: str
    created_at: str
    status: str = "provisioning"
    ssh_keys: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The API representation (also the webhook ``data``)."""
        return {
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "size": self.size,
            "image": self.image,
            "region": self.region,
            "networks": list(self.networks),
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class NodePool:
    """A group of identical worker nodes."""

    name: str
    size: str
    count: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "count": self.count}


@dataclass(slots=True)
class Cluster:
    """A Kubernetes cluster; ``ca``/``cert``/``key`` are fake PEM blocks for its kubeconfig."""

    id: str
    name: str
    version: str
    region: str
    created_at: str
    node_pools: list[NodePool]
    ca: str
    cert: str
    key: str
    status: str = "provisioning"

    @property
    def endpoint(self) -> str:
        """The API server URL (never resolves; it only has to look right)."""
        return f"https://{self.id.replace('_', '-')}.k8s.{self.region}.tasmanian.cloud:6443"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "region": self.region,
            "endpoint": self.endpoint,
            "node_pools": [pool.to_json() for pool in self.node_pools],
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Deployment:
    """A deployed one-click template."""

    id: str
    template: str
    name: str
    version: str
    region: str
    created_at: str
    config: dict[str, Any] = field(default_factory=dict)
    status: str = "deploying"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "template": self.template,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "region": self.region,
            "config": dict(self.config),
            "url": f"https://{self.name}.apps.{self.region}.tasmanian.cloud",
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Bucket:
    """An S3-compatible bucket (named by its name, not an id)."""

    name: str
    region: str
    created_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "endpoint": f"https://s3.{self.region}.tasmanian.cloud",
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Network:
    """A private network; ``setup_key`` is its Netbird VPN key."""

    id: str
    name: str
    cidr: str
    region: str
    created_at: str
    setup_key: str
    vps_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "cidr": self.cidr,
            "region": self.region,
            "vps_ids": list(self.vps_ids),
            "created_at": self.created_at,
        }


@dataclass(slots=True)
class Webhook:
    """A webhook registration; ``events`` are types or globs (``["*"]`` means all)."""

    id: str
    url: str
    events: list[str]
    secret: str
    created_at: str

    def to_json(self, *, with_secret: bool = False) -> dict[str, Any]:
        """The secret is shown only when the registration is created."""
        out: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "created_at": self.created_at,
        }
        if with_secret:
            out["secret"] = self.secret
        return out
