"""`logs.query` against the sandbox's Loki API: lines, the most frequent lines, the cap,
LogQL errors, metric queries, a 429 that succeeds on retry and a 403."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tools.logs import LOGS, newest_lines, pattern_of, query, summarize_lines
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.sandbox.scenario_parts import Fault
from tools.toolset import ToolContext, ToolInputError, ToolResult

pytest_plugins = ("tests.sandbox_fixtures",)

CHECKOUT = '{namespace="shop", app="checkout"}'
Make = Callable[..., Awaitable[tuple[RunningSandbox, ToolContext]]]


@pytest.fixture
def loki(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> ToolContext:
    return ToolContext(
        http=http, prometheus_url=None, kubernetes=None, loki_url=sandbox.url, timeout_seconds=5
    )


@pytest.fixture
async def faulty(http: aiohttp.ClientSession) -> AsyncIterator[Make]:
    opened: list[Any] = []

    async def make(*faults: Fault) -> tuple[RunningSandbox, ToolContext]:
        scenario = load_scenario("bad-deploy").model_copy(update={"faults": list(faults)})
        manager = run_sandbox(scenario)
        opened.append(manager)
        sandbox = await manager.__aenter__()
        ctx = ToolContext(
            http=http,
            prometheus_url=None,
            kubernetes=None,
            loki_url=sandbox.url,
            timeout_seconds=5,
        )
        return sandbox, ctx

    yield make
    for manager in reversed(opened):
        await manager.__aexit__(None, None, None)


async def run(ctx: ToolContext, **raw: Any) -> ToolResult:
    return await query.call(ctx, query.validate_input(raw))


async def test_error_lines_are_summarised_by_frequency(loki: ToolContext) -> None:
    result = await run(loki, query=CHECKOUT + ' |= "level=error"', minutes=10, show_lines=3)
    assert result.status == "ok" and isinstance(result.data, dict)
    data = result.data
    # 3 pods of v2.4.0 for 240 s, one line every 2 s, 3 of every 5 lines an error; capped.
    assert data["lines_matched"] == 200 and data["streams"] == 3
    assert result.note is not None and "limit of 200 lines" in result.note
    [top] = data["most_frequent"]
    assert isinstance(top, dict) and top["count"] == 200
    assert top["pattern"] == (
        'level=error msg="upstream timeout" upstream=payments.shop:<n> timeout_ms=<n> '
        "request_id=<n>"
    )
    # The newest 3 lines are one error from the three pods: shown once, counted.
    [newest] = data["newest"]
    assert isinstance(newest, dict) and newest["count"] == 3
    pods = newest["pods"]
    assert isinstance(pods, list) and len(pods) == 3
    assert all(str(pod).startswith("checkout-") for pod in pods)
    assert str(newest["since"]) <= str(newest["time"])
    assert pattern_of(str(newest["line"])) == top["pattern"]


def test_alike_newest_lines_are_grouped_in_the_order_of_their_newest() -> None:
    s = 1_000_000_000
    entries = [
        (50 * s, "timeout id=7", {"pod": "a"}),
        (40 * s, "disk full", {"pod": "b"}),
        (30 * s, "timeout id=9", {"pod": "c"}),
        (20 * s, "timeout id=3", {}),
    ] + [(10 * s - i, "timeout id=1", {"pod": f"p{i}"}) for i in range(6)]
    timeout, disk = newest_lines(entries)
    assert timeout == {
        "time": "1970-01-01T00:00:50Z",
        "since": "1970-01-01T00:00:09Z",
        "count": 9,
        "pods": ["a", "c", "p0", "p1", "p2"],
        "more_pods": 3,
        "line": "timeout id=7",
    }
    assert disk == {"time": "1970-01-01T00:00:40Z", "count": 1, "pods": ["b"], "line": "disk full"}


async def test_the_old_pods_logs_are_still_there(loki: ToolContext) -> None:
    served = await run(loki, query=CHECKOUT + ' |= "request served"', minutes=30, limit=500)
    assert isinstance(served.data, dict)
    assert served.data["streams"] == 6  # three pods of v2.3.1 before the deploy, three after
    quiet = await run(loki, query=CHECKOUT + ' |= "no such text"')
    assert quiet.status == "no_data" and "no such text" in str(quiet.note)


async def test_logql_syntax_error_is_returned_verbatim(loki: ToolContext) -> None:
    result = await run(loki, query='{app="checkout"')
    assert result.status == "error"
    assert result.error == (
        "Loki rejected the query (HTTP 400): parse error at line 1, col 16: syntax error: "
        "unexpected $end, expecting } or ,"
    )


async def test_metric_query_is_summarised_per_series(loki: ToolContext) -> None:
    result = await run(
        loki,
        query='sum by (pod) (count_over_time({app="checkout"} |= "timeout" [1m]))',
        minutes=10,
    )
    assert result.status == "ok" and isinstance(result.data, list)
    assert len(result.data) == 3
    first = result.data[0]
    assert isinstance(first, dict) and first["trend"] == "rising"


async def test_429_then_success_and_403(faulty: Make) -> None:
    sandbox, ctx = await faulty(Fault(path="/loki/api/v1/query_range", status=429, retry_after=0))
    assert (await run(ctx, query=CHECKOUT)).status == "ok"
    assert len(sandbox.requests.matching("query_range")) == 2
    sandbox, ctx = await faulty(
        Fault(path="/loki/api/v1/query_range", status=403, message="tenant may not read")
    )
    result = await run(ctx, query=CHECKOUT)
    assert result.status == "error" and "HTTP 403" in str(result.error)
    assert "tenant may not read" in str(result.error)
    assert len(sandbox.requests.matching("query_range")) == 1  # not retried


async def test_a_wrong_loki_url_is_a_404_error(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    ctx = ToolContext(
        http=http, prometheus_url=None, kubernetes=None, loki_url=f"{sandbox.url}/loki-typo"
    )
    result = await run(ctx, query=CHECKOUT)
    assert result.status == "error"
    assert str(result.error).startswith(
        f"Loki answered HTTP 404 at {sandbox.url}/loki-typo/loki/api/v1/query_range"
    )


async def test_unconfigured_and_caps(http: aiohttp.ClientSession) -> None:
    ctx = ToolContext(http=http, prometheus_url=None, kubernetes=None)
    result = await run(ctx, query=CHECKOUT)
    assert result.error == "Loki is not configured (LOKI_URL is unset)"
    with pytest.raises(ToolInputError, match="limit"):
        query.validate_input({"query": CHECKOUT, "limit": 501})
    assert [t.name for t in LOGS.tools] == ["logs.query"]


def test_patterns_mask_what_varies() -> None:
    assert pattern_of("took 5003ms id=4f1a9c2b7d4e5f60 at 12:01:02") == (
        "took <n>ms id=<n> at <n>:<n>:<n>"
    )
    summary = summarize_lines(["a 1", "a 2", "b", "a 3"])
    assert summary[0] == {"count": 3, "pattern": "a <n>", "example": "a 1"}
