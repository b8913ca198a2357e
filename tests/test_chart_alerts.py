"""The chart's PrometheusRule: accepted by Prometheus's own `promtool check rules`, each
alert evaluated by `promtool test rules` on synthetic series (firing and not firing), and
every metric its expressions read registered by the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart_render import (
    FULLNAME,
    NAMESPACE,
    VALUE_SETS,
    metric_names,
    registered_series,
    render,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed"
)
ON = {"prometheusRule": {"enabled": True}}
SELECTOR = f'job="{FULLNAME}",namespace="{NAMESPACE}"'


def rules(values: dict[str, Any]) -> dict[str, Any]:
    """The rule file in the rendered PrometheusRule (its spec is one)."""
    [rule] = [d for d in render(values) if d["kind"] == "PrometheusRule"]
    spec: dict[str, Any] = rule["spec"]
    return spec


def alerts(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for group in rules(values)["groups"] for r in group["rules"]}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join([SELECTOR, *(f'{k}="{v}"' for k, v in labels.items())])
    return {"series": f"{metric}{{{matchers}}}", "values": values}


# Per alert: (series, evaluated at, fires?) cases; at least one firing and one not.
CASES: dict[str, list[tuple[list[dict[str, str]], str, bool]]] = {
    "IncidentBotNoReadyReplica": [
        (
            [
                series("incident_bot_ready", "0x20", pod="a"),
                series("incident_bot_ready", "0x20", pod="b"),
            ],
            "10m",
            True,
        ),
        ([], "10m", True),  # nothing scraped at all
        (
            [
                series("incident_bot_ready", "0x20", pod="a"),
                series("incident_bot_ready", "1x20", pod="b"),
            ],
            "10m",
            False,
        ),
        ([series("incident_bot_ready", "0x20", pod="a")], "3m", False),  # not for 5m yet
    ],
    "IncidentBotNoWorkerHeartbeat": [
        (
            [series("incident_bot_worker_heartbeat_timestamp_seconds", "60x40", pod="a")],
            "30m",
            True,
        ),
        (
            [series("incident_bot_worker_heartbeat_timestamp_seconds", "0+60x40", pod="a")],
            "30m",
            False,
        ),
        (
            [series("incident_bot_worker_heartbeat_timestamp_seconds", "0x40", pod="a")],
            "30m",
            False,
        ),
    ],
    "IncidentBotQueueBacklogGrowing": [
        ([series("incident_bot_queue_oldest_age_seconds", "0+60x60", pod="a")], "30m", True),
        ([series("incident_bot_queue_oldest_age_seconds", "400x60", pod="a")], "30m", False),
        ([series("incident_bot_queue_oldest_age_seconds", "0+1x60", pod="a")], "30m", False),
    ],
    "IncidentBotApprovalsOverdue": [
        ([series("incident_bot_approvals_overdue", "2x20", pod="a")], "10m", True),
        ([series("incident_bot_approvals_overdue", "0x20", pod="a")], "10m", False),
    ],
    "IncidentBotDailyModelBudgetExhausted": [
        (
            [
                series(
                    "incident_bot_daily_budget_used_ratio",
                    "0.5 0.9 1 1 1 1",
                    kind="dollars",
                    pod="a",
                )
            ],
            "5m",
            True,
        ),
        (
            [series("incident_bot_daily_budget_used_ratio", "0.99x5", kind="tokens", pod="a")],
            "5m",
            False,
        ),
    ],
    "IncidentBotSlackAPIErrors": [
        (
            [
                series(
                    "incident_bot_slack_api_calls_total",
                    "0+10x40",
                    method="chat.postMessage",
                    outcome="error",
                )
            ],
            "30m",
            True,
        ),
        (
            [
                series(
                    "incident_bot_slack_api_calls_total",
                    "0+100x40",
                    method="chat.postMessage",
                    outcome="ok",
                ),
                series(
                    "incident_bot_slack_api_calls_total",
                    "0+1x40",
                    method="chat.update",
                    outcome="error",
                ),
            ],
            "30m",
            False,
        ),
    ],
    "IncidentBotActionsFailing": [
        (
            [
                series(
                    "incident_bot_actions_total",
                    "0 0 0 1 1 1 1 1 1 1",
                    action="kubernetes.rollback",
                    outcome="failed",
                )
            ],
            "5m",
            True,
        ),
        (
            [
                series(
                    "incident_bot_actions_total",
                    "0+1x10",
                    action="kubernetes.rollback",
                    outcome="succeeded",
                ),
                series(
                    "incident_bot_actions_total",
                    "0x10",
                    action="kubernetes.rollback",
                    outcome="failed",
                ),
            ],
            "5m",
            False,
        ),
    ],
}


def test_every_alert_the_issue_asks_for_is_there_with_severity_and_runbook() -> None:
    rendered = alerts(ON)
    assert set(rendered) == set(CASES)
    for name, rule in rendered.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), name
        assert rule["for"]
    assert not [d for d in render() if d["kind"] == "PrometheusRule"]  # off by default


def test_every_metric_the_rules_read_is_registered_by_the_code() -> None:
    known = registered_series() | {"up"}
    for name, rule in alerts(ON).items():
        read = metric_names(rule["expr"])
        assert read, name
        assert read <= known, f"{name} reads unregistered {read - known}"


def test_labels_and_runbook_links_from_the_values() -> None:
    rendered = alerts(VALUE_SETS["statefulset-monitoring"])
    for name, rule in rendered.items():
        assert rule["labels"]["team"] == "sre"
        assert rule["annotations"]["runbook_url"] == (
            f"https://runbooks.example.com/incident-bot#{name.lower()}"
        )


@needs_promtool
def test_promtool_accepts_the_rules_and_each_alert_fires_only_when_it_should(
    tmp_path: Path,
) -> None:
    assert PROMTOOL is not None
    rule_file = tmp_path / "incident-bot.rules.yaml"
    rule_file.write_text(yaml.safe_dump(rules(ON)))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout

    rendered = alerts(ON)
    tests = []
    for name, cases in CASES.items():
        rule = rendered[name]
        for input_series, at, fires in cases:
            labels = {**rule["labels"], **extra_labels(input_series, name)}
            expected = [{"exp_labels": labels, "exp_annotations": rule["annotations"]}]
            tests.append(
                {
                    "interval": "1m",
                    "input_series": input_series,
                    "alert_rule_test": [
                        {
                            "eval_time": at,
                            "alertname": name,
                            "exp_alerts": expected if fires else [],
                        }
                    ],
                }
            )
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [rule_file.name], "tests": tests}))
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def extra_labels(input_series: list[dict[str, str]], alert: str) -> dict[str, str]:
    """Labels an alert keeps from its series: the budget alert is per `kind`."""
    if alert != "IncidentBotDailyModelBudgetExhausted" or not input_series:
        return {}
    kind = input_series[0]["series"].split('kind="')[1].split('"')[0]
    return {"kind": kind}
