"""Running the receiver and/or the worker until told to stop, then stopping gracefully."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from typing import Any

from aiohttp import web
from arq.worker import Worker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from handlers.metrics import WorkerMetrics
from handlers.rules import RuleSet
from handlers.worker import create_worker, reload_rules, wait_for_redis
from receiver.app import create_app
from receiver.settings import Settings
from receiver.state import METRICS
from tashooks.serving import ListenError, start_site
from tashooks.uiroutes import enable_dry_run

logger = logging.getLogger("tashooks")


_background: set[asyncio.Task[bool]] = set()


def _on_sighup(worker: Worker | None) -> None:
    """SIGHUP reloads the rules (a receiver alone has none: it only says so)."""
    if worker is None:
        logger.info("SIGHUP: this process runs no worker; no rules to reload")
        return
    task = asyncio.create_task(reload_rules(worker, "SIGHUP"))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _serve_metrics(metrics: WorkerMetrics, settings: Settings) -> web.AppRunner | None:
    """A worker's own /metrics and /healthz on HOST:METRICS_PORT (a busy port: a warning)."""

    async def metrics_view(request: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await start_site(runner, settings.host, settings.metrics_port)
    except ListenError as exc:
        logger.warning(
            "worker metrics not served: %s (TASHOOKS_METRICS_PORT=0 turns them off)",
            exc.advice("TASHOOKS_HOST", "TASHOOKS_METRICS_PORT"),
        )
        await runner.cleanup()
        return None
    logger.info("worker metrics on http://%s:%d/metrics", settings.host, settings.metrics_port)
    return runner


GC_THRESHOLD = 20_000  # young-generation allocations between collections (Python's: 700)


async def run_daemon(
    settings: Settings,
    *,
    receiver: bool = True,
    worker: bool = True,
    rules: RuleSet | None = None,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
    grace_s: float | None = None,
    install_signals: bool = True,
) -> None:
    """Serve until ``stop`` is set (or SIGINT/SIGTERM): the receiver stops accepting and
    drains; the worker stops taking jobs and lets running ones finish within ``grace_s``.
    SIGHUP reloads the rules file."""
    stop = stop or asyncio.Event()
    grace_s = settings.shutdown_grace if grace_s is None else grace_s
    loop = asyncio.get_running_loop()
    runner: web.AppRunner | None = None
    arq_worker: Worker | None = None
    worker_task: asyncio.Task[None] | None = None
    if install_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _on_sighup(arq_worker))
    metrics_runner: web.AppRunner | None = None
    stopping = False
    try:
        if worker:
            if not await wait_for_redis(settings, stop):
                return
            # Rules from the file (rules=None) are also reloaded on SIGHUP and on change.
            worker_metrics = WorkerMetrics()
            arq_worker = create_worker(settings, rules=rules, metrics=worker_metrics)
            worker_task = asyncio.create_task(arq_worker.async_run())
            if not receiver and settings.metrics_port:
                metrics_runner = await _serve_metrics(worker_metrics, settings)
        if receiver:
            app = create_app(settings)
            enable_dry_run(app, arq_worker)  # the dashboard's dry runs (receiver + worker)
            if worker:
                app[METRICS].extra.append(worker_metrics.registry)
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            await start_site(runner, settings.host, settings.port)  # ListenError if not
            logger.info("receiver listening on http://%s:%d/webhooks", settings.host, settings.port)
        # What start-up allocated lives as long as the process: keep it out of the
        # collector's scans, and collect the young generation less often (requests and
        # jobs allocate many short-lived objects; most are freed by reference counting).
        gc.freeze()
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])
        if started is not None:
            started.set()
        waiters: list[asyncio.Future[Any]] = [asyncio.create_task(stop.wait())]
        if worker_task is not None:
            waiters.append(worker_task)
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if worker_task is not None and worker_task in done:
            worker_task.result()  # the worker died: surface its error
        logger.info("stopping: no new deliveries or jobs; answering and finishing what runs")
        stopping = True
    finally:
        if runner is not None:
            await runner.cleanup()
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if arq_worker is not None:
            arq_worker.allow_pick_jobs = False
            running = [t for t in arq_worker.tasks.values() if not t.done()]
            if running:
                logger.info("waiting up to %.0fs for %d running jobs", grace_s, len(running))
                await asyncio.wait(running, timeout=grace_s)
            await arq_worker.close()
        if worker_task is not None and not worker_task.done():
            worker_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker_task
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if stopping:
            logger.info("stopped")
