"""A kubeconfig for a simulated cluster: real structure, fake credentials."""

from __future__ import annotations

import base64
import secrets
import textwrap

from .models import Cluster


def fake_pem(label: str) -> str:
    """A PEM-looking block of random bytes (parses as PEM, not as a certificate)."""
    body = base64.b64encode(secrets.token_bytes(384)).decode()
    lines = "\n".join(textwrap.wrap(body, 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def render(cluster: Cluster) -> str:
    """The YAML text; cluster, user and context names carry the cluster's name and id."""
    cluster_name = f"{cluster.name}-{cluster.id}"
    user = f"{cluster.name}-{cluster.id}-admin"
    context = f"{user}@{cluster_name}"
    return (
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {cluster_name}\n"
        "  cluster:\n"
        f"    server: {cluster.endpoint}\n"
        f"    certificate-authority-data: {_b64(cluster.ca)}\n"
        "contexts:\n"
        f"- name: {context}\n"
        "  context:\n"
        f"    cluster: {cluster_name}\n"
        f"    user: {user}\n"
        "    namespace: default\n"
        f"current-context: {context}\n"
        "preferences: {}\n"
        "users:\n"
        f"- name: {user}\n"
        "  user:\n"
        f"    client-certificate-data: {_b64(cluster.cert)}\n"
        f"    client-key-data: {_b64(cluster.key)}\n"
    )
