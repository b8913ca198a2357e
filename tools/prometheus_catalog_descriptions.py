"""How the Prometheus catalog tools (`tools.prometheus_catalog`) word their calls for
people: alerts by state, rules with their expression, values, series and metadata."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import JsonValue

from tools.describing import (
    failed,
    get,
    listed,
    objects,
    plural,
    quote,
    seconds,
    text,
    texts,
    total,
)
from tools.toolset import ToolResult

if TYPE_CHECKING:
    from tools.prometheus_catalog import (
        AlertsInput,
        LabelValuesInput,
        MetadataInput,
        RulesInput,
        SeriesInput,
    )

JsonObject = dict[str, JsonValue]


def _by_state(items: list[JsonObject], name: str) -> str:
    """`2 firing (HighErrorRate, KubePodNotReady), 1 pending (DiskFilling)`."""
    states: dict[str, list[str]] = {}
    for item in items:
        states.setdefault(text(item.get("state")) or "unknown", []).append(
            text(get(item, *name.split(".")))
        )
    return ", ".join(f"{len(names)} {state} ({listed(names)})" for state, names in states.items())


def describe_alerts(args: AlertsInput, result: ToolResult) -> str:
    """`Listed 2 alerts in Prometheus with namespace=shop: 2 firing (HighErrorRate, ...)`."""
    filters = [f"{k}={v}" for k, v in args.labels.items()]
    filters += [f"named {args.alertname}"] * bool(args.alertname)
    which = f" with {', '.join(filters)}" if filters else ""
    state = f"{args.state} " if args.state else ""
    if result.status == "error":
        return failed(f"list the {state}alerts in Prometheus{which}", result)
    if result.status == "no_data":
        return f"No {state}alerts in Prometheus{which}"
    found = objects(result.data)
    count = plural(total(result, len(found)), "alert")
    return f"Listed {count} in Prometheus{which}: {_by_state(found, 'labels.alertname')}"


def describe_rules(args: RulesInput, result: ToolResult) -> str:
    """`Read alerting rule HighErrorRate (firing): `expr` for 120 s`, or the rules by state."""
    which = f" matching {args.name}" if args.name else ""
    if result.status == "error":
        return failed(f"read the alerting rules{which}", result)
    if result.status == "no_data":
        return f"No alerting rules{which}" + (" are active" if args.only_active else "")
    found = objects(result.data)
    broken = sum(1 for r in found if r.get("last_error"))
    problem = f"; {plural(broken, 'rule')} failing to evaluate" if broken else ""
    if len(found) == 1:
        rule = found[0]
        return (
            f"Read alerting rule {text(rule.get('name'))} ({text(rule.get('state'))}): "
            f"{quote(text(rule.get('expr')), 80)} for {seconds(rule.get('for_seconds'))}{problem}"
        )
    count = plural(total(result, len(found)), "alerting rule")
    return f"Read {count}: {_by_state(found, 'name')}{problem}"


def describe_label_values(args: LabelValuesInput, result: ToolResult) -> str:
    """`Listed 4 values of label service: cart, checkout, payments and 1 more`."""
    which = f"label {args.label}" + (f" in {args.match}" if args.match else "")
    if result.status == "error":
        return failed(f"list the values of {which}", result)
    if result.status == "no_data":
        return f"No values of {which} in the last {args.minutes} min"
    values = texts(result.data)
    count = plural(total(result, len(values)), "value")
    return f"Listed {count} of {which}: {listed(values, 5)}"


def describe_series(args: SeriesInput, result: ToolResult) -> str:
    """`Found 12 series for up{namespace="shop"}: metrics up, http_requests_total`."""
    if result.status == "error":
        return failed(f"list the series of {args.match}", result)
    if result.status == "no_data":
        return f"No series match {args.match} in the last {args.minutes} min"
    found = objects(result.data)
    count = plural(total(result, len(found)), "series", "series")
    names = listed([text(s.get("__name__")) for s in found])
    return f"Found {count} for {args.match}: metrics {names}"


def describe_metadata(args: MetadataInput, result: ToolResult) -> str:
    """`Read what http_requests_total is: a counter, 'Total HTTP requests'`."""
    which = args.metric or "the metrics"
    if result.status == "error":
        return failed(f"read the metadata of {which}", result)
    if result.status == "no_data":
        return f"No metadata for {which}"
    found = objects(result.data)
    if args.metric and found:
        entry = found[0]
        unit = f" in {text(entry.get('unit'))}" if entry.get("unit") else ""
        return (
            f"Read what {args.metric} is: a {text(entry.get('type'))}{unit}, "
            f"{quote(text(entry.get('help')))}"
        )
    kinds = listed([f"{text(m.get('type'))}" for m in found], 4)
    return f"Read the metadata of {plural(len(found), 'metric')}: {kinds}"
