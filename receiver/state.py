"""Typed keys of what the receiver app holds."""

from __future__ import annotations

from aiohttp import web

from receiver.ingest import Ingestor
from receiver.metrics import ReceiverMetrics
from receiver.rejections import Rejections
from receiver.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
SECRETS = web.AppKey("secrets", list[bytes])
INGESTOR = web.AppKey("ingestor", Ingestor)
METRICS = web.AppKey("metrics", ReceiverMetrics)
REJECTIONS = web.AppKey("rejections", Rejections)
