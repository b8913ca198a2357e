"""Read-only Prometheus tools about what exists: active alerts, alerting rules, label
values, the series of a matcher and metric metadata (types, help texts, units)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from tools.patterns import MAX_PATTERN_CHARS, BoundedPattern, PatternError, compile_pattern
from tools.prometheus_catalog_descriptions import (
    describe_alerts,
    describe_label_values,
    describe_metadata,
    describe_rules,
    describe_series,
)
from tools.prometheus_http import PrometheusError, prometheus_api
from tools.toolset import Health, ToolContext, ToolResult, tool

PROMETHEUS_NARROW = "a label filter, a regex on the name, fewer minutes"
MAX_ITEMS = 200
_LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"

JsonObject = dict[str, JsonValue]


def _objects(value: JsonValue) -> list[JsonObject]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _field(obj: JsonValue, key: str) -> JsonValue:
    return obj.get(key) if isinstance(obj, dict) else None


def _labels(obj: JsonValue, key: str = "labels") -> dict[str, str]:
    value = _field(obj, key)
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def _json(labels: dict[str, str]) -> JsonObject:
    return {k: v for k, v in labels.items()}


def _capped(items: list[JsonValue], what: str) -> tuple[list[JsonValue], str | None]:
    if len(items) <= MAX_ITEMS:
        return items, None
    return items[:MAX_ITEMS], f"{len(items)} {what}; showing the first {MAX_ITEMS}: filter more"


def _compile(pattern: str | None, what: str) -> BoundedPattern | None:
    return compile_pattern(pattern, what=what) if pattern else None


def _window(minutes: int) -> list[tuple[str, str]]:
    end = time.time()
    return [("start", str(end - minutes * 60)), ("end", str(end))]


class AlertsInput(BaseModel):
    """Arguments of `prometheus.alerts`."""

    model_config = ConfigDict(extra="forbid")
    alertname: str | None = Field(
        default=None,
        max_length=MAX_PATTERN_CHARS,
        description="Regular expression the alert name must fully match; omit for all.",
        examples=["HighErrorRate|KubePodCrashLooping"],
    )
    state: Literal["firing", "pending"] | None = Field(
        default=None, description="Only alerts in this state; omit for both."
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description="Labels the alert must carry with exactly these values.",
        examples=[{"namespace": "shop"}],
    )


@tool("prometheus.alerts", narrow=PROMETHEUS_NARROW, describe=describe_alerts)
async def alerts(ctx: ToolContext, args: AlertsInput) -> ToolResult:
    """List the alerts Prometheus's rules produce right now (firing and pending), with
    their labels, annotations, state, since when (active_at) and the value that triggered
    them. Use it to see what else is wrong around the alert under investigation.
    Example: labels={"namespace": "shop"}, state="firing".
    """
    try:
        data = await prometheus_api(ctx, "alerts", {})
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    try:
        found = _matching_alerts(data, args, _compile(args.alertname, "alertname"))
    except PatternError as exc:
        return ToolResult.fail(str(exc))
    if not found:
        return ToolResult.no_data("no active alerts match the filters")
    items, note = _capped(found, "alerts")
    return ToolResult.ok(items, note=note)


def _matching_alerts(
    data: JsonValue, args: AlertsInput, name: BoundedPattern | None
) -> list[JsonValue]:
    found: list[JsonValue] = []
    for alert in _objects(_field(data, "alerts")):
        labels = _labels(alert)
        if name is not None and not name.fullmatch(labels.get("alertname", "")):
            continue
        if args.state is not None and alert.get("state") != args.state:
            continue
        if any(labels.get(k) != v for k, v in args.labels.items()):
            continue
        found.append(
            {
                "labels": _json(labels),
                "annotations": _json(_labels(alert, "annotations")),
                "state": alert.get("state"),
                "active_at": alert.get("activeAt"),
                "value": alert.get("value"),
            }
        )
    return found


class RulesInput(BaseModel):
    """Arguments of `prometheus.alerting_rules`."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(
        default=None,
        max_length=MAX_PATTERN_CHARS,
        description="Regular expression the rule's alert name must fully match.",
        examples=["HighErrorRate"],
    )
    only_active: bool = Field(
        default=False, description="Only rules that are firing or pending now."
    )


@tool("prometheus.alerting_rules", narrow=PROMETHEUS_NARROW, describe=describe_rules)
async def alerting_rules(ctx: ToolContext, args: RulesInput) -> ToolResult:
    """List Prometheus's alerting rules: name, PromQL expression, `for` duration (seconds),
    labels, state (inactive, pending, firing), health and the last evaluation error.
    Use it to learn what exactly an alert measures and its threshold.
    Example: name="HighErrorRate".
    """
    try:
        data = await prometheus_api(ctx, "rules", {"type": "alert"})
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    try:
        found = _matching_rules(data, args, _compile(args.name, "name"))
    except PatternError as exc:
        return ToolResult.fail(str(exc))
    if not found:
        return ToolResult.no_data("no alerting rules match")
    items, note = _capped(found, "rules")
    return ToolResult.ok(items, note=note)


def _matching_rules(
    data: JsonValue, args: RulesInput, name: BoundedPattern | None
) -> list[JsonValue]:
    found: list[JsonValue] = []
    for group in _objects(_field(data, "groups")):
        for rule in _objects(group.get("rules")):
            state = rule.get("state")
            if name is not None and not name.fullmatch(str(rule.get("name", ""))):
                continue
            if args.only_active and state not in ("firing", "pending"):
                continue
            found.append(
                {
                    "name": rule.get("name"),
                    "group": group.get("name"),
                    "expr": rule.get("query"),
                    "for_seconds": rule.get("duration"),
                    "labels": _json(_labels(rule)),
                    "state": state,
                    "health": rule.get("health"),
                    "last_error": rule.get("lastError") or None,
                    "active_alerts": len(_objects(rule.get("alerts"))),
                }
            )
    return found


class LabelValuesInput(BaseModel):
    """Arguments of `prometheus.label_values`."""

    model_config = ConfigDict(extra="forbid")
    label: str = Field(pattern=_LABEL_NAME, description="The label's name.", examples=["service"])
    match: str | None = Field(
        default=None,
        description="A series selector to restrict the values to; omit for every series.",
        examples=['http_requests_total{namespace="shop"}'],
    )
    minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="Look back this many minutes."
    )


@tool("prometheus.label_values", narrow=PROMETHEUS_NARROW, describe=describe_label_values)
async def label_values(ctx: ToolContext, args: LabelValuesInput) -> ToolResult:
    """List the values a label takes, e.g. which services, pods or status codes exist.
    Use it before writing a query, to spell label values right.
    Example: label="service", match='http_requests_total{namespace="shop"}'.
    """
    params = _window(args.minutes)
    if args.match:
        params.append(("match[]", args.match))
    try:
        data = await prometheus_api(ctx, f"label/{args.label}/values", params)
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    values: list[JsonValue] = [str(v) for v in data] if isinstance(data, list) else []
    if not values:
        return ToolResult.no_data(
            f"label {args.label} has no values in the last {args.minutes} min"
        )
    items, note = _capped(values, "values")
    return ToolResult.ok(items, note=note)


class SeriesInput(BaseModel):
    """Arguments of `prometheus.series`."""

    model_config = ConfigDict(extra="forbid")
    match: str = Field(
        min_length=1,
        description="A series selector: a metric name and/or label matchers.",
        examples=['up{namespace="shop"}', '{__name__=~"http_.*",service="checkout"}'],
    )
    minutes: int = Field(
        default=60, ge=1, le=7 * 24 * 60, description="Look back this many minutes."
    )


@tool("prometheus.series", narrow=PROMETHEUS_NARROW, describe=describe_series)
async def series_of(ctx: ToolContext, args: SeriesInput) -> ToolResult:
    """List the series (label sets) a selector matches, without their values. Use it to
    find which metrics and label combinations exist for a service or pod.
    Example: match='{__name__=~"http_.*",service="checkout"}'.
    """
    try:
        data = await prometheus_api(
            ctx, "series", [("match[]", args.match), *_window(args.minutes)]
        )
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    found: list[JsonValue] = [dict(s) for s in _objects(data)]
    if not found:
        return ToolResult.no_data(f"no series match `{args.match}` in the last {args.minutes} min")
    items, note = _capped(found, "series")
    return ToolResult.ok(items, note=note)


class MetadataInput(BaseModel):
    """Arguments of `prometheus.metadata`."""

    model_config = ConfigDict(extra="forbid")
    metric: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="A metric name; omit to list metrics (at most `limit`).",
        examples=["http_requests_total"],
    )
    limit: int = Field(default=50, ge=1, le=MAX_ITEMS, description="Metrics to list at most.")


@tool("prometheus.metadata", narrow=PROMETHEUS_NARROW, describe=describe_metadata)
async def metadata(ctx: ToolContext, args: MetadataInput) -> ToolResult:
    """Show a metric's type (counter, gauge, histogram, summary), help text and unit, as
    its exporters declare them. Use it to know whether to apply rate() and what a value
    means. Example: metric="http_requests_total".
    """
    params = {"limit": str(args.limit)}
    if args.metric:
        params["metric"] = args.metric
    try:
        data = await prometheus_api(ctx, "metadata", params)
    except PrometheusError as exc:
        return ToolResult.fail(str(exc))
    found: list[JsonValue] = []
    if isinstance(data, dict):
        for name, entries in data.items():
            for entry in _objects(entries)[:1]:
                found.append(
                    {
                        "metric": name,
                        "type": entry.get("type"),
                        "help": entry.get("help"),
                        "unit": entry.get("unit") or None,
                    }
                )
    if not found:
        return ToolResult.no_data(f"no metadata for {args.metric or 'any metric'}")
    return ToolResult.ok(found)


class _BuildInfo(BaseModel):
    version: str


async def probe_prometheus(ctx: ToolContext) -> Health:
    """Whether Prometheus is configured and answers its build-info endpoint."""
    if not ctx.prometheus_url:
        return Health(configured=False, reachable=False, detail="PROMETHEUS_URL is unset")
    try:
        data = await prometheus_api(ctx, "status/buildinfo", {})
        version = _BuildInfo.model_validate(data).version
    except PrometheusError as exc:
        return Health(configured=True, reachable=False, detail=str(exc))
    except ValidationError:
        version = "unknown version"
    return Health(
        configured=True, reachable=True, detail=f"Prometheus {version} at {ctx.prometheus_url}"
    )
