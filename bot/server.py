"""The `incident-bot serve` HTTP application: webhooks, health, readiness and metrics.

Clients are created when the app starts (in its `cleanup_ctx`), never at import time,
and the worker pool starts with them. On shutdown the pool stops taking work and gets
`INCIDENT_BOT_SHUTDOWN_GRACE` seconds to finish; runs still being driven then release
their leases and stay queued for another replica. With `INCIDENT_BOT_PAUSED=true` the
bot is paused (`bot.pausing`) before the workers start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder
from redis.exceptions import RedisError

from bot.dedup import AlertGroups
from bot.deps import Deps, open_deps
from bot.errors import ConfigError
from bot.heap import collect_young_less_often, freeze_startup_heap
from bot.intake.auth import WebhookAuth, signed_sources
from bot.intake.http import (
    INTAKE,
    Intake,
    alertmanager_webhook,
    generic_schema,
    generic_webhook,
    grafana_webhook,
    pagerduty_webhook,
)
from bot.loop_lag import LoopLagMonitor
from bot.metrics import Metrics
from bot.pausing import pause
from bot.settings import Settings
from bot.slack.app import SLACK, no_slack_events, open_slack, slack_events
from bot.slack.pause_lines import PauseLines
from bot.sweeper import Sweeper
from bot.worker import WorkerLimits, WorkerPool
from tools.sandbox import run_sandbox
from tools.secret_patterns import catalog

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
DEPS = web.AppKey("deps", Deps)
POOL = web.AppKey("pool", WorkerPool)
SWEEPER = web.AppKey("sweeper", Sweeper)

_PING_TIMEOUT_SECONDS = 2.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, metrics: Metrics | None = None) -> web.Application:
    """The application; its clients and workers start with it and stop with it.

    Raises `ConfigError` when the webhooks would be open without that being asked for.
    """
    webhook_auth(settings)
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=[_errors])
    app[SETTINGS] = settings
    app[METRICS] = metrics or Metrics()
    app.cleanup_ctx.append(_services)
    app.router.add_routes(
        [
            web.post("/webhooks/alertmanager", alertmanager_webhook),
            web.post("/webhooks/grafana", grafana_webhook),
            web.post("/webhooks/pagerduty", pagerduty_webhook),
            web.post("/webhooks/generic", generic_webhook),
            web.get("/webhooks/generic/schema", generic_schema),
            web.post("/slack/events", slack_events if settings.slack_events else no_slack_events),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/metrics", metrics_page),
        ]
    )
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Start the loop-lag monitor, the sandbox (if asked), the clients and the workers;
    stop them in reverse."""
    settings = app[SETTINGS]
    async with AsyncExitStack() as stack:
        lag = LoopLagMonitor(app[METRICS].event_loop_lag.observe)
        lag.start()
        stack.push_async_callback(lag.stop)
        if settings.sandbox:
            sandbox = await stack.enter_async_context(run_sandbox(settings.sandbox))
            settings = settings.pointed_at_sandbox(sandbox.url)
            log.info("sandbox %r serving at %s", settings.sandbox, sandbox.url)
        # Without workers this process drives no investigation (intake only: the chart's
        # intake pods), so it holds no model client, whatever key its environment has.
        deps = await stack.enter_async_context(
            open_deps(settings, metrics=app[METRICS], model=settings.workers > 0)
        )
        slack = await stack.enter_async_context(open_slack(deps))
        if slack is not None:
            app[SLACK] = slack
        if settings.paused:
            await pause(deps, who=deps.owner, reason="INCIDENT_BOT_PAUSED is set", source="setting")
        pool = WorkerPool(
            deps,
            deps.queue,
            WorkerLimits(
                workers=settings.workers,
                resume_workers=settings.resume_workers if settings.workers else 0,
                global_investigations=settings.max_investigations,
                service_investigations=settings.max_investigations_per_service,
                reclaim_after_seconds=settings.reclaim_after_seconds,
                # A dead replica's slots free themselves when its entries become reclaimable.
                slot_seconds=settings.reclaim_after_seconds,
            ),
            listener=slack.threads.on_checkpoint if slack else None,
        )
        await pool.start()
        stack.push_async_callback(pool.stop, settings.shutdown_grace_seconds)
        sweeper = Sweeper(
            deps,
            interval_seconds=settings.sweep_interval_seconds,
            listener=slack.threads.on_checkpoint if slack else None,
            reposter=slack.threads.post_missing if slack else None,
        )
        sweeper.start()
        stack.push_async_callback(sweeper.stop)  # stopped before the workers
        app[SWEEPER] = sweeper
        if slack is not None:
            lines = PauseLines(deps, slack.threads.redraw_root)
            lines.start()
            stack.push_async_callback(lines.stop)
        auth = webhook_auth(settings)
        if auth is None:
            log.warning("INCIDENT_BOT_WEBHOOK_TOKEN is not set: webhooks are unauthenticated")
        app[DEPS] = deps
        app[POOL] = pool
        app[INTAKE] = Intake(
            groups=AlertGroups(deps, deps.queue),
            metrics=deps.metrics,
            auth=auth,
            max_body_bytes=settings.max_body_bytes,
            in_flight=asyncio.Semaphore(settings.max_webhooks_in_flight),
            on_admitted=slack.threads.on_admitted if slack else None,
            signed=signed_sources(settings),
        )
        yield


def webhook_auth(settings: Settings) -> WebhookAuth | None:
    """How webhook requests are authenticated: the token's check, or None (open) only when
    `INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS` says so; else raise `ConfigError`."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else ""
    if token:
        return WebhookAuth(token)
    if not settings.allow_unauthenticated_webhooks:
        raise ConfigError(
            "INCIDENT_BOT_WEBHOOK_TOKEN is not set, so anyone who can reach the webhooks "
            "could start investigations. Set INCIDENT_BOT_WEBHOOK_TOKEN to a secret that "
            "Alertmanager sends as a bearer token (http_config.authorization.credentials), "
            "or set INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS=true to serve them open "
            "(local trials only; `serve --sandbox` does this)."
        )
    return None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as JSON; a bug is logged with its traceback and answers 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:  # aiohttp's own answers: 404, 405, 413 ...
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": exc.reason.lower()}, status=exc.status, headers=allow)
    except Exception:  # the HTTP boundary: never a traceback to the client
        log.exception("request failed", extra={"path": request.path, "method": request.method})
        return web.json_response({"error": "internal error"}, status=500)


async def healthz(request: web.Request) -> web.Response:
    """`GET /healthz`: the process is up."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """`GET /readyz`: 200 when `readiness` finds nothing wrong, else 503 and why; both
    report the sweeper's last pass and the pause in force (a paused bot is ready)."""
    sweeper = request.app[SWEEPER]
    swept = {
        "sweeper": sweeper.last.describe() if sweeper.last else None,
        "paused": await _paused(request.app),
    }
    reason = await readiness(request.app)
    if reason is not None:
        return _unready(reason, swept)
    return web.json_response({"status": "ready", **swept})


async def readiness(app: web.Application) -> str | None:
    """Why this replica is not ready, or None when the workers run, the sweeper passed
    within a few intervals and Redis answers PING; sets `incident_bot_ready` to match."""
    reason = "workers are not running" if not app[POOL].running else app[SWEEPER].stalled()
    if reason is None:
        try:
            async with asyncio.timeout(_PING_TIMEOUT_SECONDS):
                await app[DEPS].store.redis.ping()
        except (RedisError, OSError) as exc:  # OSError covers the timeout
            log.warning("readiness: Redis did not answer PING", extra={"error": repr(exc)})
            reason = f"redis did not answer PING ({type(exc).__name__})"
    app[METRICS].ready.set(0 if reason else 1)
    return reason


async def _paused(app: web.Application) -> dict[str, Any] | None:
    """The pause in force (`/readyz` details: a paused bot is still ready), and the gauge."""
    try:
        state = await app[DEPS].pause.current()
    except (RedisError, OSError) as exc:  # readiness says Redis failed
        log.warning("readiness: cannot read the pause", extra={"error": repr(exc)})
        return None
    app[METRICS].paused.set(1 if state else 0)
    return state.describe() if state else None


def _unready(reason: str, more: dict[str, Any] | None = None) -> web.Response:
    body = {"status": "unavailable", "reason": reason, **(more or {})}
    return web.json_response(body, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    """`GET /metrics`: the process's metrics, with the queue gauges and readiness read at
    scrape time."""
    metrics = request.app[METRICS]
    await readiness(request.app)
    queue = request.app[DEPS].queue
    try:
        metrics.queue_depth.set(await queue.depth())
        metrics.queue_oldest_age.set(await queue.oldest_age_seconds())
        metrics.paused.set(1 if await request.app[DEPS].pause.current() else 0)
    except RedisError as exc:  # serve the rest; the gauges keep their last values
        log.warning("metrics: cannot read the queue", extra={"error": repr(exc)})
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(metrics.registry), headers={"Content-Type": content_type})


async def serve(settings: Settings) -> None:
    """Serve on `settings.host:port` until SIGTERM or SIGINT, then shut down gracefully."""
    runner = web.AppRunner(
        create_app(settings),
        access_log=None,  # the webhook handlers log one structured line per request
        shutdown_timeout=settings.shutdown_grace_seconds,
    )
    await runner.setup()
    # Every run redacts its alert first: load the secret catalog (detect-secrets, ~5 MB)
    # now, so the server's memory is what it will be, and frozen with the rest below.
    catalog()
    # Start-up's objects live as long as the process: no full collection walks them again.
    log.info("start-up heap frozen", extra={"objects": freeze_startup_heap()})
    log.info("garbage collection thresholds", extra={"thresholds": collect_young_less_often()})
    try:
        await web.TCPSite(runner, settings.host, settings.port).start()
        host, port = runner.addresses[0][:2]
        print(f"incident-bot listening on http://{_url_host(host)}:{port}", flush=True)
        await _until_signalled()
        log.info("shutting down")
    finally:
        await runner.cleanup()


async def _until_signalled() -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
