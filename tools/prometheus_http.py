"""The Prometheus HTTP API as the tools and the verifier call it.

Every answer is the API's envelope (`status`, `data`, `errorType`, `error`); a rejected
query comes back as `PrometheusError` carrying Prometheus's own message verbatim, so the
model can fix its PromQL.
"""

from __future__ import annotations

from typing import Literal, Protocol, runtime_checkable

import aiohttp
from pydantic import BaseModel, Field, JsonValue, ValidationError

from tools.http_backend import NO_AUTH, BackendError, HttpAuth, Params, fetch, join_url


class PrometheusError(Exception):
    """Prometheus rejected a query or could not be reached; the message says which."""


class PrometheusAccess(Protocol):
    """What a Prometheus call needs; `ToolContext` and `ActionContext` both have it."""

    @property
    def http(self) -> aiohttp.ClientSession: ...

    @property
    def prometheus_url(self) -> str | None: ...

    @property
    def timeout_seconds(self) -> float: ...


@runtime_checkable
class _WithAuth(Protocol):
    @property
    def prometheus_auth(self) -> HttpAuth: ...


Sample = tuple[float, str]  # (unix time, value as Prometheus writes it: "0.12", "NaN")


class Series(BaseModel):
    """One series of a vector (`value`) or matrix (`values`) answer."""

    metric: dict[str, str] = Field(default_factory=dict)
    value: Sample | None = None
    values: list[Sample] = Field(default_factory=list)


class QueryData(BaseModel):
    """The `data` of a successful query answer."""

    result_type: Literal["vector", "matrix", "scalar", "string"] = Field(alias="resultType")
    result: list[Series] | Sample


class Answer(BaseModel):
    """An answer of the Prometheus HTTP API."""

    status: Literal["success", "error"]
    data: JsonValue = None
    error_type: str | None = Field(default=None, alias="errorType")
    error: str | None = None


async def prometheus_api(
    ctx: PrometheusAccess,
    endpoint: str,
    params: Params,
    *,
    post: bool = False,
) -> JsonValue:
    """Call `/api/v1/{endpoint}` and return the answer's `data`.

    Raises `PrometheusError` with Prometheus's message when it rejects the request.
    """
    if not ctx.prometheus_url:
        raise PrometheusError("Prometheus is not configured (PROMETHEUS_URL is unset)")
    url = join_url(ctx.prometheus_url, f"/api/v1/{endpoint}")
    auth = ctx.prometheus_auth if isinstance(ctx, _WithAuth) else NO_AUTH
    try:
        answer = await fetch(
            ctx.http,
            url,
            service="Prometheus",
            auth=auth,
            timeout_seconds=ctx.timeout_seconds,
            params=None if post else params,
            form=dict(params) if post else None,
        )
    except BackendError as exc:
        raise PrometheusError(str(exc)) from exc
    try:
        parsed = Answer.model_validate_json(answer.text)
    except ValidationError:
        raise PrometheusError(
            f"Prometheus at {url} answered HTTP {answer.status} with something other "
            f"than an API answer: {answer.text[:200]!r}"
        ) from None
    if parsed.error is not None:
        raise PrometheusError(
            f"Prometheus rejected the query ({parsed.error_type}): {parsed.error}"
        )
    if parsed.data is None:
        raise PrometheusError(f"Prometheus at {url} answered HTTP {answer.status} without data")
    return parsed.data


async def query_api(ctx: PrometheusAccess, endpoint: str, params: dict[str, str]) -> QueryData:
    """POST a query to `/api/v1/query` or `/api/v1/query_range`; its `data`, typed."""
    data = await prometheus_api(ctx, endpoint, params, post=True)
    try:
        return QueryData.model_validate(data)
    except ValidationError as exc:
        raise PrometheusError(
            f"Prometheus answered {endpoint} with unexpected data: {exc}"
        ) from exc
