"""What the simulated platform offers: sizes, images, versions, templates, event types."""

from __future__ import annotations

from typing import Any

VPS_SIZES = (
    "standard-1vcpu-2gb",
    "standard-2vcpu-4gb",
    "standard-4vcpu-8gb",
    "standard-8vcpu-16gb",
)
IMAGES = ("ubuntu-24.04", "ubuntu-22.04", "debian-12", "rocky-9", "alpine-3.20")
VPS_ACTIONS = ("reboot", "shutdown", "start", "rebuild")
K8S_VERSIONS = ("1.31", "1.30", "1.29", "1.28")
DEFAULT_K8S_VERSION = "1.29"
BUCKET_PERMISSIONS = ("read", "write", "delete")

TEMPLATES: tuple[dict[str, Any], ...] = (
    {
        "id": "postgres",
        "name": "PostgreSQL",
        "description": "Open-source relational database",
        "category": "database",
        "versions": ["16", "15", "14"],
    },
    {
        "id": "mysql",
        "name": "MySQL",
        "description": "Popular open-source relational database",
        "category": "database",
        "versions": ["8.4", "8.0"],
    },
    {
        "id": "redis",
        "name": "Redis",
        "description": "In-memory data store",
        "category": "database",
        "versions": ["7.4", "7.2"],
    },
    {
        "id": "wordpress",
        "name": "WordPress",
        "description": "Blog and website platform",
        "category": "cms",
        "versions": ["6.6", "6.5"],
    },
    {
        "id": "gitea",
        "name": "Gitea",
        "description": "Self-hosted Git service",
        "category": "devtools",
        "versions": ["1.22", "1.21"],
    },
    {
        "id": "nextcloud",
        "name": "Nextcloud",
        "description": "File sync and collaboration",
        "category": "productivity",
        "versions": ["29", "28"],
    },
)

EVENT_TYPES = (
    "vps.created",
    "vps.deleted",
    "vps.status_changed",
    "template.deployed",
    "template.deleted",
    "kubernetes.ready",
    "kubernetes.deleted",
    "storage.bucket_created",
)


def template(template_id: str) -> dict[str, Any] | None:
    """The catalog entry ``template_id``, or None."""
    for entry in TEMPLATES:
        if entry["id"] == template_id:
            return entry
    return None
