"""``/v1/storage``: S3-compatible buckets and access keys."""

from __future__ import annotations

import re
import secrets
import string

from aiohttp import web

from .. import validation as v
from ..catalog import BUCKET_PERMISSIONS
from ..errors import invalid, not_found
from ..ids import rfc3339_now
from ..keys import CONFIG, DISPATCHER, STATE
from ..models import Bucket

# S3's bucket naming rules, minus the IP-address-shaped corner case.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "/+"


async def list_buckets(request: web.Request) -> web.Response:
    """``GET /v1/storage/buckets``"""
    buckets = request.app[STATE].buckets.values()
    return web.json_response({"data": [b.to_json() for b in buckets]})


async def create_bucket(request: web.Request) -> web.Response:
    """``POST /v1/storage/buckets``: names are unique, as in S3."""
    app, state = request.app, request.app[STATE]
    body = await v.json_object(request)
    name = v.required_string(body, "name")
    if not _BUCKET_RE.match(name) or ".." in name:
        raise invalid("name", "Bucket names are 3-63 lower-case letters, digits, '.' and '-'")
    if name in state.buckets:
        raise invalid("name", f"Bucket {name} already exists")
    region = v.choice(body, "region", (app[CONFIG].region,), default=app[CONFIG].region)
    bucket = Bucket(name=name, region=region, created_at=rfc3339_now())
    state.buckets[name] = bucket
    app[DISPATCHER].emit("storage.bucket_created", bucket.to_json())
    return web.json_response(bucket.to_json(), status=201)


async def delete_bucket(request: web.Request) -> web.Response:
    """``DELETE /v1/storage/buckets/{name}``"""
    name = request.match_info["name"]
    if request.app[STATE].buckets.pop(name, None) is None:
        raise not_found("Bucket", name)
    return web.Response(status=204)


async def create_credentials(request: web.Request) -> web.Response:
    """``POST /v1/storage/credentials``: a fresh key pair for one bucket."""
    state = request.app[STATE]
    body = await v.json_object(request)
    name = v.required_string(body, "bucket")
    bucket = state.buckets.get(name)
    if bucket is None:
        raise invalid("bucket", f"Bucket {name} does not exist")
    permissions = v.string_list(body, "permissions", allowed=BUCKET_PERMISSIONS, default=["read"])
    if not permissions:
        raise invalid("permissions", "permissions must not be empty")
    return web.json_response(
        {
            "access_key": "TAS" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17)),
            "secret_key": "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
            "endpoint": f"https://s3.{bucket.region}.tasmanian.cloud",
            "bucket": bucket.name,
            "permissions": permissions,
        },
        status=201,
    )


def setup(app: web.Application) -> None:
    """Register the routes."""
    app.router.add_get("/v1/storage/buckets", list_buckets)
    app.router.add_post("/v1/storage/buckets", create_bucket)
    app.router.add_delete("/v1/storage/buckets/{name}", delete_bucket)
    app.router.add_post("/v1/storage/credentials", create_credentials)
