"""The Prometheus and Alertmanager tools against real servers (Debian packages).

Prometheus scrapes a target this test serves (known values, HELP and TYPE lines) and
evaluates one alerting rule; the test posts alerts and a silence to Alertmanager through
its API. The tools must return the right values, a PromQL syntax error as a readable
error, and a 7-day range inside the tool's budget.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.servers import AlertRule, run_alertmanager, run_prometheus
from tests.processes import eventually
from tests.servers import free_port
from tools import alertmanager, prometheus, prometheus_catalog
from tools.toolset import DEFAULT_BUDGET_CHARS, Tool, ToolContext, ToolResult

pytestmark = pytest.mark.e2e

PODS = 300
EXPOSITION = "\n".join(
    [
        "# HELP shop_requests_total Requests served by the shop, by pod and status code.",
        "# TYPE shop_requests_total counter",
        'shop_requests_total{pod="checkout-0",code="200"} 1000',
        'shop_requests_total{pod="checkout-0",code="500"} 42',
        "# HELP shop_queue_depth Orders waiting to be charged.",
        "# TYPE shop_queue_depth gauge",
        'shop_queue_depth{service="checkout"} 7',
        "# HELP shop_pod_memory_bytes Memory of each pod.",
        "# TYPE shop_pod_memory_bytes gauge",
        *(f'shop_pod_memory_bytes{{pod="pod-{i:03d}"}} {i * 1024}' for i in range(PODS)),
        "",
    ]
)
BACKLOG = AlertRule(
    alert="QueueBacklog",
    expr="shop_queue_depth > 5",
    labels={"severity": "warning", "namespace": "shop"},
    annotations={"summary": "{{ $value }} orders waiting"},
)


async def call(tool: Tool, ctx: ToolContext, **raw: Any) -> ToolResult:
    return await tool.call(ctx, tool.validate_input(raw))


@pytest.fixture
async def target() -> AsyncIterator[str]:
    """A scrape target serving `EXPOSITION` at /metrics; yields host:port."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text=EXPOSITION, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def servers(
    target: str, tmp_path: Path
) -> AsyncIterator[tuple[ToolContext, aiohttp.ClientSession]]:
    """Alertmanager and Prometheus running; a tool context aimed at both."""
    async with aiohttp.ClientSession() as http:
        async with run_alertmanager(
            http,
            workdir=tmp_path / "am",
            webhook_url=f"http://127.0.0.1:{free_port()}/nowhere",
            bearer_token="unused",
        ) as am:
            async with run_prometheus(
                http,
                workdir=tmp_path / "prom",
                alertmanager=am.url.removeprefix("http://"),
                rules=[BACKLOG],
                scrape_targets={"shop": target},
            ) as prom:
                yield (
                    ToolContext(
                        http=http,
                        prometheus_url=prom.url,
                        alertmanager_url=am.url,
                        kubernetes=None,
                        timeout_seconds=5,
                    ),
                    http,
                )


async def _scraped(ctx: ToolContext) -> bool | None:
    result = await call(prometheus.query, ctx, query="shop_queue_depth")
    return True if result.status == "ok" else None


async def test_prometheus_tools_on_a_real_prometheus(
    servers: tuple[ToolContext, aiohttp.ClientSession],
) -> None:
    ctx, _ = servers
    await eventually(lambda: _scraped(ctx), within=20)

    errors = await call(prometheus.query, ctx, query='sum(shop_requests_total{code="500"})')
    assert errors.data == [{"labels": {}, "value": 42}]

    broken = await call(prometheus.query, ctx, query="sum(rate(shop_requests_total[5m])")
    assert broken.status == "error" and broken.error is not None
    assert broken.error.startswith("Prometheus rejected the query (bad_data): ")
    assert "parse error" in broken.error and "unclosed left parenthesis" in broken.error

    week = await call(
        prometheus.query_range, ctx, query="shop_pod_memory_bytes", minutes=7 * 24 * 60
    )
    assert week.status == "ok" and isinstance(week.data, dict)
    assert week.data["window"]["step_seconds"] == 10800  # 56 points over the week
    assert week.note == f"{PODS} series; showing the first 50: aggregate or filter by label"
    assert len(prometheus.query_range.render(week)) <= DEFAULT_BUDGET_CHARS

    async def firing() -> ToolResult | None:
        found = await call(prometheus_catalog.alerts, ctx, state="firing")
        return found if found.status == "ok" else None

    fired = await eventually(firing, within=20)
    assert isinstance(fired.data, list) and isinstance(fired.data[0], dict)
    assert fired.data[0]["labels"]["alertname"] == "QueueBacklog"
    assert fired.data[0]["annotations"] == {"summary": "7 orders waiting"}
    rules = await call(prometheus_catalog.alerting_rules, ctx, name="Queue.*")
    assert isinstance(rules.data, list) and isinstance(rules.data[0], dict)
    assert (rules.data[0]["expr"], rules.data[0]["health"]) == ("shop_queue_depth > 5", "ok")

    pods = await call(
        prometheus_catalog.label_values, ctx, label="pod", match="shop_requests_total"
    )
    assert pods.data == ["checkout-0"]
    series = await call(prometheus_catalog.series_of, ctx, match="shop_requests_total")
    assert isinstance(series.data, list)
    assert sorted(str(s["code"]) for s in series.data if isinstance(s, dict)) == ["200", "500"]

    async def described() -> ToolResult | None:
        found = await call(prometheus_catalog.metadata, ctx, metric="shop_requests_total")
        return found if found.status == "ok" else None

    meta = await eventually(described, within=10)
    assert meta.data == [
        {
            "metric": "shop_requests_total",
            "type": "counter",
            "help": "Requests served by the shop, by pod and status code.",
            "unit": None,
        }
    ]
    health = await prometheus_catalog.probe_prometheus(ctx)
    assert health.reachable and health.detail.startswith("Prometheus 2.")


async def test_alertmanager_tools_on_a_real_alertmanager(
    servers: tuple[ToolContext, aiohttp.ClientSession],
) -> None:
    ctx, http = servers
    assert ctx.alertmanager_url is not None
    now = datetime.now(UTC)
    posted = [
        {
            "labels": {"alertname": "DiskFull", "namespace": ns, "severity": "critical"},
            "annotations": {"summary": f"disk of {ns} is full"},
            "startsAt": now.isoformat(),
        }
        for ns in ("shop", "search")
    ]
    async with http.post(f"{ctx.alertmanager_url}/api/v2/alerts", json=posted) as response:
        assert response.status == 200
    silence = {
        "matchers": [{"name": "namespace", "value": "search", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "oncall@example.com",
        "comment": "reindexing",
    }
    async with http.post(f"{ctx.alertmanager_url}/api/v2/silences", json=silence) as response:
        assert response.status == 200
        silence_id = (await response.json())["silenceID"]

    async def shop_alert() -> ToolResult | None:
        found = await call(alertmanager.alerts, ctx, matchers=['alertname="DiskFull"'])
        return found if found.status == "ok" else None

    active = await eventually(shop_alert, within=10)
    assert isinstance(active.data, list)
    assert [a["labels"]["namespace"] for a in active.data if isinstance(a, dict)] == ["shop"]

    both = await call(
        alertmanager.alerts, ctx, matchers=['alertname="DiskFull"'], include_silenced=True
    )
    assert isinstance(both.data, list)
    muted = [a for a in both.data if isinstance(a, dict) and a["silenced_by"]]
    assert [(a["labels"]["namespace"], a["state"], a["silenced_by"]) for a in muted] == [
        ("search", "suppressed", [silence_id])
    ]

    silences = await call(alertmanager.silences, ctx)
    assert isinstance(silences.data, list) and isinstance(silences.data[0], dict)
    assert silences.data[0]["matchers"] == ['namespace="search"']
    assert (silences.data[0]["state"], silences.data[0]["comment"]) == ("active", "reindexing")

    groups = await call(alertmanager.groups, ctx, matchers=['alertname="DiskFull"'])
    assert isinstance(groups.data, list) and groups.data
    assert all(isinstance(g, dict) and g["receiver"] == "incident-bot" for g in groups.data)

    bad = await call(alertmanager.alerts, ctx, matchers=["namespace~shop"])
    assert bad.status == "error" and "HTTP 400" in str(bad.error)
    assert "namespace~shop" in str(bad.error)
    health = await alertmanager.probe_alertmanager(ctx)
    assert health.reachable and health.detail.startswith("Alertmanager 0.")
