"""``GET /openapi.json``: a valid OpenAPI 3.1 document that matches the app's routes."""

from __future__ import annotations

import re

from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from receiver.app import create_app
from receiver.settings import Settings
from tests.receiver.conftest import Client

ADMIN_PREFIXES = ("/events", "/deadletters", "/stats", "/dry-run")


def routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path) of every route of the app, paths in OpenAPI's {name} form."""
    found = set()
    for route in create_app(settings).router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method != "HEAD":
            found.add((route.method.lower(), re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path)))
    return found


async def test_document_is_valid_openapi_and_matches_the_routes(
    admin: Client, admin_settings: Settings
) -> None:
    resp = await admin.get("/openapi.json")  # no token needed: nothing secret in it
    assert resp.status == 200
    doc = await resp.json()
    validate(doc, cls=OpenAPIV31SpecValidator)
    assert doc["openapi"].startswith("3.1")
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    served = routes(admin_settings)
    admin_routes = {(m, p) for m, p in served if p.startswith(ADMIN_PREFIXES)}
    assert len(admin_routes) == 9
    assert admin_routes <= documented, admin_routes - documented
    assert documented <= served, documented - served
    for method, path in admin_routes:
        assert doc["paths"][path][method]["security"] == [{"adminToken": []}]
        assert "401" in doc["paths"][path][method]["responses"]


async def test_document_is_served_without_the_admin_api(client: Client) -> None:
    resp = await client.get("/openapi.json")
    assert resp.status == 200
    assert "/webhooks" in (await resp.json())["paths"]


async def test_every_answer_the_receiver_gives_is_documented(client: Client) -> None:
    """The 408 of a slow body, and a default error answer (405, 500) on every operation."""
    doc = await (await client.get("/openapi.json")).json()
    assert "408" in doc["paths"]["/webhooks"]["post"]["responses"]
    for operations in doc["paths"].values():
        for operation in operations.values():
            default = operation["responses"]["default"]
            assert "method_not_allowed" in default["description"]
    resp = await client.get("/webhooks")  # the default answer, as served
    assert resp.status == 405 and "error" in await resp.json()
