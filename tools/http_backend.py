"""HTTP backends of the read-only tools (Prometheus, Alertmanager, Loki): auth and requests.

`HttpAuth` carries what one backend needs on every request (bearer token or basic auth,
extra headers such as Loki's tenant, the TLS trust). `fetch` sends one request with the
retries of `tools.retry` inside the tool's timeout; it returns every non-transient answer
(2xx or not) for the caller to interpret and raises `BackendError` with a sentence the
model can act on when the backend cannot be reached, keeps failing, or is too slow.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from tools.retry import (
    TransientHTTPError,
    call_with_retries,
    is_retryable_status,
    parse_retry_after,
)

Params = Sequence[tuple[str, str]] | Mapping[str, str]


class BackendError(Exception):
    """A backend could not be reached, kept failing or did not answer in time."""


@dataclass(frozen=True, kw_only=True)
class HttpAuth:
    """Credentials and TLS trust sent with every request to one backend."""

    headers: Mapping[str, str] = field(default_factory=dict)
    # True: the system's CAs; a context: a private CA; False: no verification (tests only).
    ssl: ssl.SSLContext | bool = True

    @classmethod
    def build(
        cls,
        *,
        bearer_token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> HttpAuth:
        """Auth from settings: a bearer token or basic auth, and an optional CA bundle."""
        headers = dict(extra_headers or {})
        if bearer_token:
            headers["Authorization"] = f"Bearer {bearer_token}"
        elif username:
            headers["Authorization"] = aiohttp.encode_basic_auth(username, password or "")
        trust: ssl.SSLContext | bool = True
        if ca_file is not None:
            trust = ssl.create_default_context(cafile=str(ca_file))
        return cls(headers=headers, ssl=trust)


NO_AUTH = HttpAuth()


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    """A backend's non-transient answer."""

    status: int
    text: str

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300


async def fetch(
    http: aiohttp.ClientSession,
    url: str,
    *,
    service: str,
    auth: HttpAuth,
    timeout_seconds: float,
    params: Params | None = None,
    form: Mapping[str, str] | None = None,
) -> HttpAnswer:
    """GET `url` (POST when `form` is given), retrying transient failures in the timeout.

    Raises `BackendError` naming `service` when the request cannot succeed.
    """
    method = "POST" if form is not None else "GET"

    async def attempt() -> HttpAnswer:
        async with http.request(
            method,
            url,
            params=params,
            data=form,
            headers=dict(auth.headers),
            ssl=auth.ssl,
        ) as response:
            text = await response.text()
            if is_retryable_status(response.status):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise TransientHTTPError(response.status, text[:200].strip(), retry_after)
            return HttpAnswer(status=response.status, text=text)

    try:
        return await call_with_retries(attempt, timeout_seconds=timeout_seconds)
    except TransientHTTPError as exc:
        raise BackendError(f"{service} is failing: {exc}") from exc
    except aiohttp.ClientError as exc:
        raise BackendError(f"cannot reach {service} at {url}: {exc}") from exc
    except TimeoutError as exc:
        raise BackendError(f"{service} did not answer within {timeout_seconds:g}s") from exc


def join_url(base: str, path: str) -> str:
    """`base` (with or without a trailing slash) joined with an absolute API `path`."""
    return f"{base.rstrip('/')}{path}"
