"""The Slack Web API client: slack_sdk's, with retries for 429 and 5xx, and metrics."""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.metrics import Metrics
from bot.settings import Settings

DEFAULT_API_URL = "https://slack.com/api/"


class _CountedRateLimitRetries(AsyncRateLimitErrorRetryHandler):
    """Waits for `Retry-After` on 429 (slack_sdk's handler), counting each wait."""

    def __init__(self, metrics: Metrics, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._metrics = metrics

    async def prepare_for_next_attempt_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        method = request.url.rstrip("/").rsplit("/", 1)[-1]
        self._metrics.slack_api_calls.labels(method, "rate_limited").inc()
        await super().prepare_for_next_attempt_async(
            state=state, request=request, response=response, error=error
        )


class SlackClient(AsyncWebClient):
    """An `AsyncWebClient` that counts every call by method and outcome."""

    def __init__(self, *, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._metrics = metrics

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        """Call `api_method`; raises `SlackApiError` when Slack answers `ok: false`."""
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            error = exc.response.get("error", "error") if exc.response is not None else "error"
            self._metrics.slack_api_calls.labels(api_method, _outcome(str(error))).inc()
            raise
        except (aiohttp.ClientError, TimeoutError):
            self._metrics.slack_api_calls.labels(api_method, "unreachable").inc()
            raise
        self._metrics.slack_api_calls.labels(api_method, "ok").inc()
        return response


class _ServerErrorRetries(AsyncServerErrorRetryHandler):
    """Retries any 5xx answer (slack_sdk's own handler retries only 500 and 503)."""

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return response is not None and 500 <= response.status_code < 600


def _outcome(error: str) -> str:
    # A few kinds, never the raw error string: labels stay low-cardinality.
    if error == "ratelimited":
        return "rate_limited"
    if error in ("invalid_auth", "not_authed", "token_revoked", "account_inactive"):
        return "auth_error"
    return "error"


def retry_handlers(metrics: Metrics) -> list[AsyncRetryHandler]:
    """Retry connection errors, 429 after `Retry-After`, and 5xx, a few times each."""
    return [
        AsyncConnectionErrorRetryHandler(max_retry_count=2),
        _CountedRateLimitRetries(metrics, max_retry_count=3),
        _ServerErrorRetries(max_retry_count=2),
    ]


def slack_client(
    settings: Settings, metrics: Metrics, session: aiohttp.ClientSession
) -> SlackClient | None:
    """The bot's Web API client, or None when `SLACK_BOT_TOKEN` is not set."""
    if settings.slack_bot_token is None:
        return None
    return SlackClient(
        metrics=metrics,
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url or DEFAULT_API_URL,
        session=session,
        retry_handlers=retry_handlers(metrics),
    )
