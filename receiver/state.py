"""Typed keys of what the receiver app holds."""

from __future__ import annotations

import asyncio

from aiohttp import web

from receiver.auditlog import AuditLog
from receiver.deadletters import DeadLetters
from receiver.ingest import Ingestor
from receiver.metrics import ReceiverMetrics
from receiver.rejections import Rejections
from receiver.requeue import Requeue
from receiver.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
SECRETS = web.AppKey("secrets", list[bytes])
INGESTOR = web.AppKey("ingestor", Ingestor)
METRICS = web.AppKey("metrics", ReceiverMetrics)
REJECTIONS = web.AppKey("rejections", Rejections)
AUDIT_LOG = web.AppKey("audit_log", AuditLog)
REQUEUE = web.AppKey("requeue", Requeue)
DEADLETTERS = web.AppKey("deadletters", DeadLetters)
# Set when the app shuts down, so that live streams (SSE) end instead of holding it up.
CLOSING = web.AppKey("closing", asyncio.Event)
