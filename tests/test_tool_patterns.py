"""Regular expressions from the model: a length limit, clear errors, and a time bound that
stops a catastrophic pattern instead of letting it hold the event loop."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tools.patterns import MATCH_BUDGET_SECONDS, PatternError, compile_pattern
from tools.prometheus_catalog import alerting_rules, alerts
from tools.toolset import ToolContext, ToolInputError

# Nested, overlapping repetition: backtracking tries every split of the a's before failing.
CATASTROPHIC = "(a|aa)+$"
NOT_MATCHING = "a" * 64 + "!"


def _alert(name: str) -> dict[str, Any]:
    return {"labels": {"alertname": name}, "annotations": {}, "state": "firing", "value": "1"}


@pytest.fixture
async def prometheus() -> AsyncIterator[str]:
    """A Prometheus HTTP API answering /alerts and /rules with alerts named `NOT_MATCHING`
    (twenty of them, so the bound must hold across matches, not per match)."""

    async def alerts_api(request: web.Request) -> web.Response:
        found = [_alert(NOT_MATCHING) for _ in range(20)] + [_alert("HighErrorRate")]
        return web.json_response({"status": "success", "data": {"alerts": found}})

    async def rules_api(request: web.Request) -> web.Response:
        rules = [{"name": NOT_MATCHING, "query": "up == 0", "state": "inactive"}] * 20
        data = {"groups": [{"name": "g", "rules": rules}]}
        return web.json_response({"status": "success", "data": data})

    app = web.Application()
    app.router.add_get("/api/v1/alerts", alerts_api)
    app.router.add_get("/api/v1/rules", rules_api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def ctx(prometheus: str) -> AsyncIterator[ToolContext]:
    async with aiohttp.ClientSession() as http:
        yield ToolContext(http=http, prometheus_url=prometheus, kubernetes=None, timeout_seconds=5)


async def test_a_catastrophic_pattern_is_a_tool_error_within_the_budget(ctx: ToolContext) -> None:
    beats: list[float] = []

    async def heartbeat() -> None:
        while True:
            beats.append(time.monotonic())
            await asyncio.sleep(0.01)

    beating = asyncio.create_task(heartbeat())
    try:
        for call in (
            alerts.call(ctx, alerts.validate_input({"alertname": CATASTROPHIC})),
            alerting_rules.call(ctx, alerting_rules.validate_input({"name": CATASTROPHIC})),
        ):
            started = time.monotonic()
            result = await call
            took = time.monotonic() - started

            assert result.status == "error"
            assert result.error is not None
            assert f"{CATASTROPHIC!r} took more than {MATCH_BUDGET_SECONDS:g}s" in result.error
            assert "simplify it" in result.error
            # One budget for all twenty matches (each alone would run for years).
            assert took < MATCH_BUDGET_SECONDS + 1.0
    finally:
        beating.cancel()
    stalls = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert max(stalls) < MATCH_BUDGET_SECONDS + 0.5  # the loop was held no longer than that


async def test_nested_quantifiers_the_engine_handles_answer_at_once(ctx: ToolContext) -> None:
    started = time.monotonic()
    result = await alerts.call(ctx, alerts.validate_input({"alertname": "(a+)+$"}))

    assert result.status == "no_data"
    assert time.monotonic() - started < MATCH_BUDGET_SECONDS


async def test_an_ordinary_pattern_still_filters(ctx: ToolContext) -> None:
    result = await alerts.call(ctx, alerts.validate_input({"alertname": "High.*Rate"}))

    assert result.status == "ok"
    assert [a["labels"]["alertname"] for a in result.data] == ["HighErrorRate"]  # type: ignore[index,union-attr]


async def test_an_invalid_pattern_is_an_error_the_model_can_act_on(ctx: ToolContext) -> None:
    result = await alerts.call(ctx, alerts.validate_input({"alertname": "High(Error"}))

    assert result.status == "error"
    assert result.error is not None
    assert result.error.startswith("alertname: 'High(Error' is not a valid regular expression")


def test_a_pattern_over_the_length_limit_is_refused_with_the_limit() -> None:
    with pytest.raises(ToolInputError, match="alertname: String should have at most 256"):
        alerts.validate_input({"alertname": "a" * 257})
    with pytest.raises(PatternError, match="has 300 characters, more than the 256 allowed"):
        compile_pattern("a" * 300, what="name")
    assert compile_pattern("a" * 256, what="name").fullmatch("a" * 256)
