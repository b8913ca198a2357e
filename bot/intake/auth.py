"""Webhook authentication: a bearer token, or an HMAC-SHA256 signature of the body.

With `INCIDENT_BOT_WEBHOOK_TOKEN` set, a webhook request must carry either
`Authorization: Bearer <token>` (what Alertmanager's `http_config.authorization`
sends) or `X-Incident-Bot-Signature: sha256=<hex>`, the HMAC-SHA256 of the raw body
keyed with the token. Both are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Incident-Bot-Signature"


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


def _same(given: str, expected: str) -> bool:
    # Header values may hold any bytes; compare them as bytes, in constant time.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )
