"""``create_app(settings)``: the receiver's aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from receiver import views
from receiver.connection import connect
from receiver.ingest import Ingestor
from receiver.keys import Keys
from receiver.metrics import ReceiverMetrics
from receiver.rejections import Rejections
from receiver.settings import Settings
from receiver.state import INGESTOR, METRICS, REJECTIONS, SECRETS, SETTINGS


def create_app(settings: Settings) -> web.Application:
    """The receiver app. Refuses to build without a (non-empty) webhook secret."""
    secrets = settings.require_webhook_secret()
    # Bodies are read by the view with its own limit; this only caps other requests.
    app = web.Application(client_max_size=settings.max_body + 1)
    app[SETTINGS] = settings
    app[SECRETS] = secrets
    app[METRICS] = ReceiverMetrics()
    app.cleanup_ctx.append(_redis_ctx)
    app.router.add_post("/webhooks", views.post_webhook)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.metrics_view)
    return app


async def _redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    redis = connect(settings.redis_url)
    keys = Keys(settings.namespace)
    app[INGESTOR] = Ingestor(redis, keys, settings.dedup_window)
    app[REJECTIONS] = rejections = Rejections(redis, keys, settings.dedup_window)
    rejections.start()
    yield
    await rejections.stop()
    await redis.aclose()
