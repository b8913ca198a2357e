"""The webhook endpoints: read a bounded body, authenticate it, parse it, admit it.

Every answer is JSON. 202 means the alerts are durably in Redis; 503 means they are
not and the sender should retry (Alertmanager does). Client mistakes get a 4xx whose
message names the bad field; a 401 says nothing more than `unauthorized`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from bot.dedup import Admission, AlertGroups, count_admission
from bot.errors import StoreError
from bot.intake import pagerduty
from bot.intake.alertmanager import WebhookBody
from bot.intake.auth import RequestCheck, WebhookAuth
from bot.intake.deliveries import CleanDelivery, Delivery, DeliveryCache, Parse
from bot.intake.generic import GenericAlert
from bot.intake.grafana import GrafanaBody
from bot.metrics import Metrics
from bot.models import Alert
from tools.toolset import describe_validation_error

log = logging.getLogger(__name__)


M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, kw_only=True)
class Intake:
    """What the webhook handlers share, built when the app starts."""

    groups: AlertGroups
    metrics: Metrics
    auth: WebhookAuth | None
    max_body_bytes: int
    # Requests being handled; when none is free a request is shed (503, Retry-After).
    in_flight: asyncio.Semaphore
    # Told of every admission after it is durable (the Slack thread notes a resolution);
    # it must not block: the sender waits for the 202.
    on_admitted: Callable[[Admission], None] | None = None
    # Sources whose own signature authenticates their endpoint instead of `auth`.
    signed: Mapping[str, RequestCheck] = field(default_factory=dict)
    # Authenticated bodies seen lately, parsed and redacted: a repeat is not parsed again.
    deliveries: DeliveryCache = field(default_factory=DeliveryCache)


INTAKE = web.AppKey("intake", Intake)


class _Rejected(Exception):
    """A request answered with an error; `detail` is logged, never sent."""

    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail or error


async def alertmanager_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/alertmanager`: one Alertmanager v4 notification (one alert group)."""
    return await _receive(request, "alertmanager", _alertmanager_alerts)


async def generic_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/generic`: one alert in the generic format (see `bot.intake.generic`)."""
    return await _receive(request, "generic", _generic_alerts)


async def grafana_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/grafana`: one Grafana Alerting webhook notification (one alert group)."""
    return await _receive(request, "grafana", _grafana_alerts)


async def pagerduty_webhook(request: web.Request) -> web.Response:
    """`POST /webhooks/pagerduty`: one PagerDuty V3 webhook event (see `bot.intake.pagerduty`)."""
    return await _receive(request, "pagerduty", _pagerduty_alerts)


async def generic_schema(request: web.Request) -> web.Response:
    """`GET /webhooks/generic/schema`: the JSON Schema of the generic format."""
    return web.json_response(_schema())


@functools.cache
def _schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **GenericAlert.model_json_schema(),
    }


def _alertmanager_alerts(body: bytes) -> list[Alert]:
    notification = _parse(WebhookBody, body)
    if notification.truncated_alerts:
        log.warning(
            "Alertmanager left alerts out of a notification (max_alerts)",
            extra={"group_key": notification.group_key, "truncated": notification.truncated_alerts},
        )
    return notification.to_alerts()


def _generic_alerts(body: bytes) -> list[Alert]:
    return [_parse(GenericAlert, body).to_alert()]


def _grafana_alerts(body: bytes) -> list[Alert]:
    notification = _parse(GrafanaBody, body)
    if notification.truncated_alerts:
        log.warning(
            "Grafana left alerts out of a notification (Max Alerts)",
            extra={"group_key": notification.group_key, "truncated": notification.truncated_alerts},
        )
    return notification.to_alerts()


def _pagerduty_alerts(body: bytes) -> Delivery:
    head = _parse(pagerduty.Envelope, body).event
    if not head.handled:
        log.info(
            "PagerDuty event ignored",
            extra={"event_type": head.event_type, "resource_type": head.resource_type},
        )
        return Delivery(alerts=[])
    webhook = _parse(pagerduty.IncidentWebhook, body)
    return Delivery(alerts=[webhook.to_alert()], opens_run=webhook.opens_run)


def _parse(model: type[M], body: bytes) -> M:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        for err in exc.errors():
            if err["type"] == "json_invalid":
                reason = err.get("ctx", {}).get("error", err["msg"])
                raise _Rejected(400, f"body is not JSON: {reason}") from exc
        raise _Rejected(422, f"invalid alert: {describe_validation_error(exc)}") from exc


async def _receive(request: web.Request, source: str, parse: Parse) -> web.Response:
    intake = request.app[INTAKE]
    if intake.in_flight.locked():
        # Shed before reading the body: cheap, so the loop keeps time for Slack and drives.
        # Counted, not logged: a flood would make a line per request.
        intake.metrics.webhooks_shed.labels(source).inc()
        return web.json_response(
            {"error": "too many webhook requests in flight; retry"},
            status=503,
            headers={"Retry-After": "1"},
        )
    async with intake.in_flight:
        return await _handle(request, intake, source, parse)


async def _handle(
    request: web.Request,
    intake: Intake,
    source: str,
    parse: Parse,
) -> web.Response:
    started = time.perf_counter()
    try:
        body = await _read(request, intake.max_body_bytes)
        auth = intake.signed.get(source, intake.auth)
        if auth is not None and not auth.allows(request.headers, body):
            raise _Rejected(401, "unauthorized", "missing or wrong token or signature")
        delivery = intake.deliveries.delivery(source, body, parse)
        alerts = delivery.alerts
        admission = await _admit(intake.groups, delivery)
    except _Rejected as exc:
        log.log(
            logging.WARNING if exc.status >= 500 else logging.INFO,
            "webhook rejected",
            extra={"source": source, "status": exc.status, "error": exc.detail},
        )
        return web.json_response({"error": exc.error}, status=exc.status)
    count_admission(intake.metrics, source, admission, len(alerts))
    if intake.on_admitted is not None:
        intake.on_admitted(admission)
    if log.isEnabledFor(logging.INFO):  # a storm's every request: build no record for nothing
        log.info(
            "alerts admitted",
            extra={
                "source": source,
                "status": 202,
                "run_id": admission.run_id,
                "outcome": admission.outcome,
                "alerts": len(alerts),
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
    return web.json_response({"run_id": admission.run_id, "outcome": admission.outcome}, status=202)


async def _read(request: web.Request, limit: int) -> bytes:
    """The raw body, refused (413) past `limit` bytes, announced or not."""
    too_large = _Rejected(413, f"body is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_any():
        body.extend(chunk)
        if len(body) > limit:
            raise too_large
    return bytes(body)


async def _admit(groups: AlertGroups, delivery: CleanDelivery) -> Admission:
    if not delivery.alerts:
        return Admission(run_id=None, outcome="ignored")
    try:
        return await groups.admit(delivery.alerts, opens_run=delivery.opens_run)
    except (RedisError, StoreError) as exc:
        raise _Rejected(
            503, "alert store unavailable; retry", f"{type(exc).__name__}: {exc}"
        ) from exc
