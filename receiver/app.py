"""``create_app(settings)``: the receiver's aiohttp application."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from receiver import responses, views
from receiver.admin import add_admin_routes
from receiver.auditlog import AuditLog
from receiver.connection import connect
from receiver.deadletters import DeadLetters
from receiver.ingest import Ingestor
from receiver.keys import Keys
from receiver.metrics import ReceiverMetrics
from receiver.rejections import Rejections
from receiver.requeue import Requeue
from receiver.settings import Settings
from receiver.state import (
    AUDIT_LOG,
    CLOSING,
    DEADLETTERS,
    INGESTOR,
    METRICS,
    REJECTIONS,
    REQUEUE,
    SECRETS,
    SETTINGS,
)
from receiver.ui import add_ui_routes


def create_app(settings: Settings) -> web.Application:
    """The receiver app. Refuses to build without a (non-empty) webhook secret.

    The admin API is added only when ``ADMIN_TOKEN`` is set (and not empty).
    """
    secrets = settings.require_webhook_secret()
    # Bodies are read by the view with its own limit; this only caps other requests.
    # Bodies are decoded by the views (receiver.bodies), not by aiohttp: a body that is not
    # valid for its Content-Encoding is then an ordinary 400, not a 500 with a traceback.
    app = web.Application(
        client_max_size=settings.max_body + 1,
        middlewares=[responses.json_errors],
        handler_args={"auto_decompress": False},
    )
    app[SETTINGS] = settings
    app[SECRETS] = secrets
    app[METRICS] = ReceiverMetrics()
    app[CLOSING] = asyncio.Event()
    app.cleanup_ctx.append(_redis_ctx)
    app.on_shutdown.append(_closing)
    app.router.add_post("/webhooks", views.post_webhook)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.metrics_view)
    app.router.add_get("/openapi.json", views.openapi_view)
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        add_admin_routes(app)
        add_ui_routes(app)
    else:
        app[responses.ADMIN_OFF] = True
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    app[INGESTOR] = Ingestor(redis, keys, settings.dedup_window)
    app[REJECTIONS] = rejections = Rejections(redis, keys, settings.dedup_window)
    rejections.start()
    app[AUDIT_LOG] = AuditLog(redis, keys)
    app[REQUEUE] = Requeue(redis, keys, settings.dedup_window)
    app[DEADLETTERS] = DeadLetters(redis, keys)
    yield
    await app[INGESTOR].close()
    await rejections.stop()
    await redis.aclose()


async def _closing(app: web.Application) -> None:
    """Live streams end when the app shuts down, rather than hold the shutdown up."""
    app[CLOSING].set()
