"""The Prometheus tools against the sandbox, and against a flaky server for the retries."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from tests.servers import free_port
from tools.prometheus import PROMETHEUS, PrometheusError, instant_value, query, query_range
from tools.retry import MAX_ATTEMPTS, parse_retry_after
from tools.toolset import DEFAULT_BUDGET_CHARS, ToolContext, ToolInputError, ToolResult

pytest_plugins = ("tests.sandbox_fixtures",)

ERROR_RATIO = (
    'sum(rate(http_requests_total{namespace="shop",service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{namespace="shop",service="checkout"}[5m]))'
)


async def test_instant_query_now_and_before_the_deploy(tool_context: ToolContext) -> None:
    now = await query.call(tool_context, query.validate_input({"query": ERROR_RATIO}))
    assert now.status == "ok"
    assert now.data == [{"labels": {"namespace": "shop", "service": "checkout"}, "value": 0.12}]
    before = datetime.fromtimestamp(time.time() - 600, UTC).isoformat()
    earlier = await query.call(
        tool_context, query.validate_input({"query": ERROR_RATIO, "time": before})
    )
    assert earlier.data == [
        {"labels": {"namespace": "shop", "service": "checkout"}, "value": 0.002}
    ]


async def test_range_query_is_summarised(tool_context: ToolContext) -> None:
    result = await query_range.call(
        tool_context, query_range.validate_input({"query": ERROR_RATIO})
    )
    assert result.status == "ok"
    assert isinstance(result.data, dict)
    assert result.data["window"]["step_seconds"] == 30
    [series] = result.data["series"]
    assert isinstance(series, dict)
    assert series["labels"] == {"namespace": "shop", "service": "checkout"}
    assert series["points"] == 61
    assert (series["first"], series["last"]) == (0.002, 0.12)
    assert (series["min"], series["max"], series["trend"]) == (0.002, 0.12, "rising")
    change = series["largest_change"]
    assert isinstance(change, dict)
    assert (change["from"], change["to"]) == (0.002, 0.12)
    assert 3.6 <= float(str(change["minutes_ago"])) <= 4.4
    assert len(result.render()) < 600


async def test_stable_series_is_flat(tool_context: ToolContext) -> None:
    args = query_range.validate_input(
        {"query": 'sum(rate(http_requests_total{service="checkout"}[5m]))', "minutes": 60}
    )
    result = await query_range.call(tool_context, args)
    [series] = result.data["series"]
    assert (series["mean"], series["trend"]) == (250, "flat")


async def test_no_series_is_no_data_naming_the_query(tool_context: ToolContext) -> None:
    result = await query.call(tool_context, query.validate_input({"query": 'up{job="cart"}'}))
    assert result.status == "no_data"
    assert result.note is not None and 'up{job="cart"}' in result.note


async def test_promql_error_is_a_failure_with_prometheus_message(tool_context: ToolContext) -> None:
    args = query.validate_input({"query": "sum(rate(http_requests_total[5m])))"})
    result = await query.call(tool_context, args)
    assert result.status == "error"
    assert result.error is not None
    assert (
        'invalid parameter "query": 1:35: parse error: unexpected right parenthesis' in result.error
    )


async def test_instant_value(tool_context: ToolContext) -> None:
    assert await instant_value(tool_context, ERROR_RATIO) == 0.12
    assert await instant_value(tool_context, 'up{job="cart"}') is None
    with pytest.raises(PrometheusError, match="unclosed left parenthesis"):
        await instant_value(tool_context, "sum(up")


def test_input_is_validated_with_messages_for_the_model() -> None:
    with pytest.raises(ToolInputError, match="query: Field required"):
        query.validate_input({})
    with pytest.raises(ToolInputError, match="minutes"):
        query_range.validate_input({"query": "up", "minutes": 7 * 24 * 60 + 1})
    with pytest.raises(ToolInputError, match="Extra inputs are not permitted"):
        query_range.validate_input({"query": "up", "window": "1h"})
    schema = query_range.input_schema()
    assert schema["properties"]["minutes"]["examples"] == [30]
    assert [t.api_name for t in PROMETHEUS.tools] == [
        "prometheus_query",
        "prometheus_query_range",
        "prometheus_alerts",
        "prometheus_alerting_rules",
        "prometheus_label_values",
        "prometheus_series",
        "prometheus_metadata",
    ]


def test_a_large_result_is_cut_to_the_budget() -> None:
    big = ToolResult.ok([{"labels": {"pod": f"checkout-{i:06d}"}, "value": i} for i in range(5000)])
    text = big.render()
    assert len(big.model_dump_json()) > 200_000
    note = json.loads(text)["truncated"]
    assert note.startswith("showing the first ") and "narrow the query" in note
    assert len(text) <= DEFAULT_BUDGET_CHARS + len(note) + 20


@pytest.fixture
async def flaky_prometheus() -> AsyncIterator[tuple[str, list[int]]]:
    """Answers 429 (Retry-After: 0) on the first call, then 503 for `fail` queries, else a value."""
    calls: list[int] = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        form = await request.post()
        if len(calls) == 1:
            return web.Response(status=429, headers={"Retry-After": "0"})
        if form["query"] == "fail":
            return web.Response(status=503, text="overloaded", headers={"Retry-After": "0"})
        data = {"resultType": "vector", "result": [{"metric": {}, "value": [1, "7"]}]}
        return web.json_response({"status": "success", "data": data})

    app = web.Application()
    app.router.add_post("/api/v1/query", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", calls
    finally:
        await runner.cleanup()


async def test_transient_answers_are_retried(
    flaky_prometheus: tuple[str, list[int]], http: aiohttp.ClientSession
) -> None:
    url, calls = flaky_prometheus
    ctx = ToolContext(http=http, prometheus_url=url, kubernetes=None, timeout_seconds=5)
    assert await instant_value(ctx, "up") == 7
    assert len(calls) == 2
    calls.clear()
    result = await query.call(ctx, query.validate_input({"query": "fail"}))
    assert result.status == "error" and result.error is not None
    assert "HTTP 503: overloaded" in result.error
    assert len(calls) == MAX_ATTEMPTS


async def test_unreachable_or_unconfigured_prometheus_fails_in_time(
    http: aiohttp.ClientSession,
) -> None:
    ctx = ToolContext(
        http=http,
        prometheus_url=f"http://127.0.0.1:{free_port()}",
        kubernetes=None,
        timeout_seconds=0.5,
    )
    started = time.monotonic()
    result = await query.call(ctx, query.validate_input({"query": "up"}))
    assert result.status == "error" and "cannot reach Prometheus" in (result.error or "")
    assert time.monotonic() - started < 1.0
    unset = ToolContext(http=http, prometheus_url=None, kubernetes=None)
    result = await query.call(unset, query.validate_input({"query": "up"}))
    assert result.error == "Prometheus is not configured (PROMETHEUS_URL is unset)"


def test_retry_after_header() -> None:
    assert parse_retry_after("3") == 3
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0
    assert parse_retry_after("soon") is None
