"""Retries of transient backend failures, bounded by the caller's timeout.

Transient means: the connection failed or was lost, or the server answered 429 or 5xx. A
server's `Retry-After` is honoured when it fits in the time left; otherwise the last error
is raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

MAX_ATTEMPTS = 4

T = TypeVar("T")

_BACKOFF = wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2)


class TransientHTTPError(Exception):
    """A 429 or 5xx answer, worth retrying after `retry_after` seconds (when the server said)."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}" if detail else f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class BackendUnavailable(Exception):
    """The connection to a backend was lost or could not be made; a new one may work."""


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying."""
    return status == 429 or status >= 500


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header (seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientHTTPError | BackendUnavailable | aiohttp.ClientConnectionError)


def _wait_hinted(state: RetryCallState) -> float:
    backoff = _BACKOFF(state)
    exc = state.outcome.exception() if state.outcome is not None else None
    if isinstance(exc, TransientHTTPError) and exc.retry_after is not None:
        return exc.retry_after
    return backoff


async def call_with_retries(call: Callable[[], Awaitable[T]], *, timeout_seconds: float) -> T:
    """Await `call()`, retrying transient failures for at most `timeout_seconds` in all.

    Raises the last `TransientHTTPError`, `BackendUnavailable` or
    `aiohttp.ClientConnectionError` when retries run out, `TimeoutError` when the time
    does; other exceptions pass through at once.
    """
    retrying = AsyncRetrying(
        retry=retry_if_exception(_is_transient),
        stop=stop_after_attempt(MAX_ATTEMPTS) | stop_before_delay(timeout_seconds),
        wait=_wait_hinted,
        reraise=True,
    )
    async with asyncio.timeout(timeout_seconds):
        return await retrying(call)
