"""Webhook authentication: a bearer token, or an HMAC-SHA256 signature of the body.

With `INCIDENT_BOT_WEBHOOK_TOKEN` set, a webhook request must carry either
`Authorization: Bearer <token>` (what Alertmanager's `http_config.authorization`
sends) or `X-Incident-Bot-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body
keyed with the token. Both are compared in constant time.

A vendor whose secret is set proves itself with its own signature instead, on its own
endpoint (`signed_sources`):

- Grafana (the webhook contact point's "HMAC signature"): the hex HMAC-SHA256 of the body
  keyed with the secret, in `X-Grafana-Alerting-Signature` (what Grafana's docs name; its
  code falls back to `X-Grafana-Alert-Signature` when the contact point's Header is left
  empty, so both are read unless `INCIDENT_BOT_GRAFANA_SIGNATURE_HEADER` names one). With
  a timestamp header configured, Grafana sends the Unix time in it and signs
  `<timestamp>:<body>`; a timestamp more than 5 minutes off is refused (a replay).
- PagerDuty (V3 webhook subscriptions): `X-PagerDuty-Signature: v1=<hex>`, the HMAC-SHA256
  of the body keyed with the subscription's secret; while PagerDuty rotates the secret
  the header lists several, comma-separated, and one `v1` match is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pydantic import SecretStr

    from bot.settings import Settings

SIGNATURE_HEADER = "X-Incident-Bot-Signature"
GRAFANA_SIGNATURE_HEADERS = ("X-Grafana-Alerting-Signature", "X-Grafana-Alert-Signature")
PAGERDUTY_SIGNATURE_HEADER = "X-PagerDuty-Signature"
# How far a signed Grafana timestamp may be from this replica's clock, either way.
GRAFANA_TIMESTAMP_SKEW_SECONDS = 300
_TIMESTAMP_DIGITS = 12


class RequestCheck(Protocol):
    """Decides whether a webhook request is authentic."""

    def allows(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request's headers authenticate `body`."""
        ...


def sign(token: str, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=<hex>`."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class WebhookAuth:
    """Checks a request's credentials against the configured token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def allows(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether the request carries the bearer token or a valid body signature."""
        return self._bearer_ok(headers.get("Authorization")) or self._signature_ok(
            headers.get(SIGNATURE_HEADER), body
        )

    def _bearer_ok(self, value: str | None) -> bool:
        scheme, _, credentials = (value or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials:
            return False
        return _same(credentials.strip(), self._token)

    def _signature_ok(self, value: str | None, body: bytes) -> bool:
        return value is not None and _same(value.strip().lower(), sign(self._token, body))


class GrafanaSignature:
    """Checks Grafana's webhook HMAC signature, with its timestamp when one is configured."""

    def __init__(
        self,
        secret: str,
        *,
        header: str | None = None,
        timestamp_header: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._headers = (header,) if header else GRAFANA_SIGNATURE_HEADERS
        self._timestamp_header = timestamp_header
        self._clock = clock

    def allows(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether a signature header holds the HMAC of the body (and a recent timestamp)."""
        signed = body
        if self._timestamp_header:
            stamp = headers.get(self._timestamp_header, "").strip()
            if not self._recent(stamp):
                return False
            signed = stamp.encode() + b":" + body
        expected = _hex_hmac(self._secret, signed)
        return any(_same(headers.get(h, "").strip().lower(), expected) for h in self._headers)

    def _recent(self, stamp: str) -> bool:
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= _TIMESTAMP_DIGITS):
            return False
        return abs(int(stamp) - self._clock()) <= GRAFANA_TIMESTAMP_SKEW_SECONDS


class PagerDutySignature:
    """Checks PagerDuty's V3 webhook signatures: any `v1` one made with the secret."""

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def allows(self, headers: Mapping[str, str], body: bytes) -> bool:
        """Whether one of the listed `v1=<hex>` signatures is the HMAC of the body."""
        expected = "v1=" + _hex_hmac(self._secret, body)
        given = headers.get(PAGERDUTY_SIGNATURE_HEADER, "").split(",")
        return any(_same(part.strip().lower(), expected) for part in given)


def signed_sources(settings: Settings) -> dict[str, RequestCheck]:
    """The sources whose own signature replaces the token check: those with a secret set."""
    checks: dict[str, RequestCheck] = {}
    if grafana := _secret(settings.grafana_webhook_secret):
        checks["grafana"] = GrafanaSignature(
            grafana,
            header=settings.grafana_signature_header or None,
            timestamp_header=settings.grafana_timestamp_header or None,
        )
    if pagerduty := _secret(settings.pagerduty_webhook_secret):
        checks["pagerduty"] = PagerDutySignature(pagerduty)
    return checks


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value else ""


def _hex_hmac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    # Header values may hold any bytes; compare them as bytes, in constant time.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )
