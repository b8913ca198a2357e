"""Read-only Prometheus tools: instant and range PromQL queries, summarised for the model.

Range results are summarised per series (first, last, min, max, mean, trend and the largest
step between consecutive points) rather than dumped, so a 30-minute window costs a few
hundred characters and still shows when and how much a signal moved.
"""

from __future__ import annotations

import itertools
import math
import time
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from tools.describing import (
    failed,
    instant_gist,
    minutes,
    objects,
    promql_subject,
    range_gist,
    total,
)
from tools.prometheus_catalog import (
    PROMETHEUS_NARROW,
    alerting_rules,
    alerts,
    label_values,
    metadata,
    probe_prometheus,
    series_of,
)
from tools.prometheus_http import (
    PrometheusAccess,
    PrometheusError,
    QueryData,
    Series,
    query_api,
)
from tools.toolset import ToolContext, ToolResult, Toolset, tool

MAX_SERIES = 50
TARGET_POINTS = 60
_NICE_STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)

JsonObject = dict[str, JsonValue]


def _rounded(value: float) -> JsonValue:
    """Six significant digits; non-finite values as Prometheus writes them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return float(f"{value:.6g}")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _trend(values: list[float]) -> str:
    """Rising, falling or flat: the last tenth of the window against the first tenth."""
    tail = max(1, len(values) // 10)
    head_mean = sum(values[:tail]) / tail
    tail_mean = sum(values[-tail:]) / tail
    delta = tail_mean - head_mean
    span = max(values) - min(values)
    if (
        span == 0
        or abs(delta) <= 0.1 * span
        or abs(delta) <= 0.05 * max(abs(head_mean), abs(tail_mean))
    ):
        return "flat"
    return "rising" if delta > 0 else "falling"


def summarize_series(series: Series) -> JsonObject:
    """One range series in a few numbers: the shape of the curve without its points."""
    finite = [
        (t, v) for t, v in ((t, float(text)) for t, text in series.values) if math.isfinite(v)
    ]
    summary: JsonObject = {"labels": dict(series.metric), "points": len(series.values)}
    if not finite:
        summary["note"] = "no finite values in the window"
        return summary
    values = [v for _, v in finite]
    summary |= {
        "first": _rounded(values[0]),
        "last": _rounded(values[-1]),
        "min": _rounded(min(values)),
        "max": _rounded(max(values)),
        "mean": _rounded(sum(values) / len(values)),
        "trend": _trend(values),
    }
    if len(finite) > 1:
        (t0, v0), (t1, v1) = max(
            itertools.pairwise(finite), key=lambda pair: abs(pair[1][1] - pair[0][1])
        )
        summary["largest_change"] = {
            "between": f"{_iso(t0)} and {_iso(t1)}",
            "minutes_ago": round((time.time() - (t0 + t1) / 2) / 60, 1),
            "from": _rounded(v0),
            "to": _rounded(v1),
        }
    return summary


def _capped(items: list[JsonValue]) -> tuple[list[JsonValue], str | None]:
    if len(items) <= MAX_SERIES:
        return items, None
    note = f"{len(items)} series; showing the first {MAX_SERIES}: aggregate or filter by label"
    return items[:MAX_SERIES], note


def _series(data: QueryData) -> list[Series]:
    return data.result if isinstance(data.result, list) else []


def _instant(data: QueryData) -> list[JsonValue]:
    """An instant answer as [{labels, value}]; a range selector's matrix is summarised."""
    if isinstance(data.result, tuple):
        value = data.result[1]
        return [
            {
                "labels": {},
                "value": value if data.result_type == "string" else _rounded(float(value)),
            }
        ]
    if data.result_type == "matrix":
        return [summarize_series(s) for s in data.result]
    return [
        {"labels": dict(s.metric), "value": _rounded(float(s.value[1]))}
        for s in data.result
        if s.value is not None
    ]


class QueryInput(BaseModel):
    """Arguments of `prometheus.query`."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1,
        description="A PromQL expression, evaluated at one instant.",
        examples=['sum by (code) (rate(http_requests_total{service="checkout"}[5m]))'],
    )
    time: datetime | None = Field(
        default=None,
        description="Evaluation time (RFC 3339); omit for now.",
        examples=["2025-03-01T14:05:00Z"],
    )


def describe_query(args: QueryInput, result: ToolResult) -> str:
    """`Queried the ratio of http_requests_total (code=~5..) for shop/checkout: 0.12`."""
    subject = promql_subject(args.query)
    if args.time is not None:
        subject += f" at {args.time.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    if result.status == "error":
        return failed(f"query {subject}", result)
    if result.status == "no_data":
        return f"No data for {subject}"
    series = objects(result.data)
    return f"Queried {subject}: {instant_gist(series, total(result, len(series)))}"


@tool("prometheus.query", narrow=PROMETHEUS_NARROW, describe=describe_query)
async def query(ctx: ToolContext, args: QueryInput) -> ToolResult:
    """Evaluate a PromQL expression at one instant (now unless `time` is given).

    Returns a list of {labels, value}; values are plain numbers in the metric's own unit
    (ratios 0-1, seconds, bytes, requests per second for `rate(...)`). Use it for the
    current value of a signal, e.g. the 5xx ratio of a service:
    `sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))
     / sum(rate(http_requests_total{service="checkout"}[5m]))`.
    """
    params = {"query": args.query}
    if args.time is not None:
        params["time"] = str(args.time.timestamp())
    try:
        data = await query_api(ctx, "query", params)
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    series, note = _capped(_instant(data))
    if not series:
        return ToolResult.no_data(f"no series for `{args.query}`")
    return ToolResult.ok(series, note=note)


class QueryRangeInput(BaseModel):
    """Arguments of `prometheus.query_range`."""

    model_config = ConfigDict(extra="forbid")
    query: str = Field(
        min_length=1,
        description="A PromQL expression, evaluated at every step of the window.",
        examples=['sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))'],
    )
    minutes: int = Field(
        default=30,
        ge=1,
        le=7 * 24 * 60,
        description="Length of the window ending now, in minutes (at most 7 days).",
        examples=[30],
    )
    step_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Seconds between points; omit for about 60 points over the window.",
        examples=[30],
    )


def choose_step(window_seconds: int) -> int:
    """The smallest round step that gives at most about `TARGET_POINTS` points."""
    wanted = window_seconds / TARGET_POINTS
    return next((s for s in _NICE_STEPS if s >= wanted), math.ceil(wanted))


def describe_query_range(args: QueryRangeInput, result: ToolResult) -> str:
    """`Read 30 min of ... for shop/checkout: rising from 0.002 to 0.12; biggest jump ...`."""
    subject = promql_subject(args.query)
    if result.status == "error":
        return failed(f"read {minutes(args.minutes)} of {subject}", result)
    if result.status == "no_data":
        return f"No data for {subject} in the last {minutes(args.minutes)}"
    series = objects(result.data.get("series") if isinstance(result.data, dict) else None)
    gist = range_gist(series, total(result, len(series)))
    return f"Read {minutes(args.minutes)} of {subject}: {gist}"


@tool("prometheus.query_range", narrow=PROMETHEUS_NARROW, describe=describe_query_range)
async def query_range(ctx: ToolContext, args: QueryRangeInput) -> ToolResult:
    """Evaluate a PromQL expression over the last `minutes` (default 30) and summarise it.

    Each series comes back as numbers, not points: first, last, min, max, mean, trend
    (rising/falling/flat) and largest_change (when, and from which value to which, the
    biggest jump between consecutive points happened). Use it to see when a signal changed,
    e.g. whether the 5xx ratio jumped right after a deploy:
    `sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))` with minutes=60.
    """
    window = args.minutes * 60
    step = args.step_seconds or choose_step(window)
    end = time.time()
    params = {"query": args.query, "start": str(end - window), "end": str(end), "step": str(step)}
    try:
        data = await query_api(ctx, "query_range", params)
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    series, note = _capped([summarize_series(s) for s in _series(data)])
    if not series:
        return ToolResult.no_data(f"no series for `{args.query}` in the last {args.minutes} min")
    window_info: JsonObject = {"start": _iso(end - window), "end": _iso(end), "step_seconds": step}
    return ToolResult.ok({"window": window_info, "series": series}, note=note)


async def instant_value(ctx: PrometheusAccess, query: str) -> float | None:
    """The value of the first series `query` returns now; None when it returns none.

    Raises `PrometheusError` when Prometheus rejects the query or cannot be reached.
    """
    data = await query_api(ctx, "query", {"query": query})
    if isinstance(data.result, tuple):
        if data.result_type == "string":
            raise PrometheusError(f"`{query}` returns a string, not a number")
        return float(data.result[1])
    for series in data.result:
        if series.value is not None:
            return float(series.value[1])
    return None


PROMETHEUS = Toolset(
    name="prometheus",
    tools=(query, query_range, alerts, alerting_rules, label_values, series_of, metadata),
    probe=probe_prometheus,
)
