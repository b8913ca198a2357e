"""The chart's Grafana dashboard: valid JSON in a ConfigMap the Grafana sidecar loads,
every panel with a query, every query reading only metrics the code registers."""

from __future__ import annotations

import json
from typing import Any

from tests.chart_render import CHART, FULLNAME, metric_names, registered_series, render

DASHBOARD = CHART / "dashboards" / "incident-bot.json"


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside rows too (rows themselves left out)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def test_the_dashboard_is_a_configmap_for_the_grafana_sidecar_only_when_enabled() -> None:
    assert not [
        d for d in render() if d["kind"] == "ConfigMap" and "dashboard" in d["metadata"]["name"]
    ]
    docs = render({"dashboard": {"enabled": True, "folder": "SRE"}})
    [configmap] = [d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-dashboard"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"]["grafana_folder"] == "SRE"
    assert json.loads(configmap["data"]["incident-bot.json"]) == json.loads(DASHBOARD.read_text())


def test_every_panel_has_a_query_and_reads_only_registered_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    known = registered_series() | {"up"}
    found = panels(dashboard)
    assert len(found) >= 12
    titles = [p["title"] for p in found]
    assert len(set(titles)) == len(titles)
    read: set[str] = set()
    for panel in found:
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: {target['expr']}"
            assert names <= known, f"{panel['title']} reads unregistered {names - known}"
            read |= names
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # label_values(SERIES, LABEL): the series' metric must exist.
            series = variable["definition"].removeprefix("label_values(").rsplit(",", 1)[0]
            assert metric_names(series) <= known, variable["name"]
    # What an operator looks for is there.
    for wanted in (
        "incident_bot_runs",
        "incident_bot_alerts_received_total",
        "incident_bot_queue_depth",
        "incident_bot_queue_oldest_age_seconds",
        "incident_bot_model_requests_total",
        "incident_bot_model_tokens_total",
        "incident_bot_model_cost_dollars_total",
        "incident_bot_tool_calls_total",
        "incident_bot_approvals_total",
        "incident_bot_time_to_decision_seconds_bucket",
        "incident_bot_actions_total",
        "incident_bot_slack_api_calls_total",
        "incident_bot_sweeper_actions_total",
        "incident_bot_redactions_total",
        "incident_bot_injection_flags_total",
    ):
        assert wanted in read, wanted


def test_metric_names_are_read_out_of_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, tool) (rate(a_bucket{job="x",le!="1"}[5m])))'
        " / on (tool) group_left b + time() - max(c offset 5m) > bool 1 and d"
    )
    assert metric_names(expr) == {"a_bucket", "b", "c", "d"}
    assert "incident_bot_runs_started_total" in registered_series()
    assert "incident_bot_run_cost_dollars_bucket" in registered_series()
    assert "incident_bot_queue_depth" in registered_series()
    assert "incident_bot_runs_started" not in registered_series()
