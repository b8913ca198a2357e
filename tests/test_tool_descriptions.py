"""Each tool's own line about a call (`Tool.describe`), on the real tools' results from the
sandbox: ok, no data, errors and cut results; the loop stores it from the redacted result
(never sent to the model), falls back to a default line when a describer fails, and steps
recorded before tools described their calls still read as words."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel, ConfigDict

from bot.deps import TOOLSETS, open_deps
from bot.models import Alert, RunStatus, ToolResultPart
from bot.progress import tool_line
from bot.runs import start_run
from bot.settings import Settings
from tests.anthropic_server import (
    API_KEY,
    RATIO_QUERY,
    Exchange,
    ScriptedAnthropic,
    call,
    tool_result,
    tool_use,
)
from tests.servers import free_port
from tools import alertmanager, kubernetes, logs, prometheus
from tools.kube_client import KubernetesApi
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.sandbox.scenario_parts import EventSpec, NodeSpec
from tools.toolset import (
    SUMMARY_CHARS,
    Tool,
    ToolContext,
    ToolResult,
    describe_default,
    one_line,
    tool,
)

pytest_plugins = ("tests.sandbox_fixtures",)

SECRET = "AKIAVQJXXVBOTHD2WTFL"  # from tests/fixtures/secrets: a fake, real-shaped key id
FLAT = 'sum(rate(http_requests_total{service="checkout"}[5m]))'
CHECKOUT_LOGS = '{namespace="shop", app="checkout"}'


def readable(line: str) -> str:
    """The line, after checking it is one line for people: short, no JSON."""
    assert line and "\n" not in line and len(line) <= SUMMARY_CHARS, line
    assert '{"' not in line and "→" not in line, line
    return line


async def said(one: Tool, ctx: ToolContext, **raw: Any) -> str:
    """What the tool says about a real call with `raw` arguments."""
    args = one.validate_input(raw)
    return readable(one.describe(args, await one.call(ctx, args)))


@pytest.fixture
async def ctx(sandbox: RunningSandbox, http: aiohttp.ClientSession, kube: Any) -> ToolContext:
    """Every backend is the sandbox."""
    url = sandbox.url
    return ToolContext(
        http=http,
        prometheus_url=url,
        kubernetes=kube,
        alertmanager_url=url,
        loki_url=url,
        timeout_seconds=5,
    )


@pytest.fixture
def nowhere(http: aiohttp.ClientSession) -> ToolContext:
    """Prometheus and Alertmanager on a port nobody listens on; no Loki, no Kubernetes."""
    url = f"http://127.0.0.1:{free_port()}"
    return ToolContext(
        http=http, prometheus_url=url, alertmanager_url=url, kubernetes=None, timeout_seconds=2
    )


def test_every_built_in_tool_has_its_own_describer() -> None:
    plain = [t.name for ts in TOOLSETS for t in ts.tools if t.describer is None]
    assert plain == []


# -- Prometheus ------------------------------------------------------------------------------
async def test_prometheus_queries_name_the_signal_and_its_value(ctx: ToolContext) -> None:
    query, query_range = prometheus.query, prometheus.query_range
    assert await said(query, ctx, query=RATIO_QUERY) == (
        "Queried the 5xx ratio of http_requests_total for shop/checkout: 0.12"
    )
    before = datetime.fromtimestamp(time.time() - 600, UTC)
    earlier = await said(query, ctx, query=RATIO_QUERY, time=before.isoformat())
    assert earlier.endswith(f"at {before:%Y-%m-%d %H:%M} UTC: 0.002"), earlier
    assert await said(query, ctx, query='up{job="cart"}') == 'No data for `up{job="cart"}`'
    bad = "sum(rate(http_requests_total[5m])))"
    failed = await said(query, ctx, query=bad)
    assert failed.startswith(f"Could not query `{bad}`: ") and "parse error" in failed, failed

    rising = await said(query_range, ctx, query=RATIO_QUERY)
    assert rising.startswith(
        "Read 30 min of the 5xx ratio of http_requests_total for shop/checkout: "
        "rising from 0.002 to 0.12; biggest jump from "
    ), rising
    assert rising.endswith(" min ago"), rising
    assert await said(query_range, ctx, query=FLAT, minutes=120) == (
        f"Read 2 h of `{FLAT}`: flat at 250"
    )
    assert await said(query_range, ctx, query='up{job="cart"}', minutes=15) == (
        'No data for `up{job="cart"}` in the last 15 min'
    )


async def test_prometheus_catalog_tools_say_what_exists(
    ctx: ToolContext, nowhere: ToolContext
) -> None:
    tools = {t.name: t for t in prometheus.PROMETHEUS.tools}
    alerts, rules = tools["prometheus.alerts"], tools["prometheus.alerting_rules"]
    assert await said(alerts, ctx) == (
        "Listed 2 alerts in Prometheus: 2 firing (HighErrorRate, KubePodNotReady)"
    )
    assert await said(alerts, ctx, labels={"namespace": "cart"}, state="pending") == (
        "No pending alerts in Prometheus with namespace=cart"
    )
    one = await said(rules, ctx, name="HighErrorRate")
    assert one.startswith("Read alerting rule HighErrorRate (firing): 'sum(rate(http_"), one
    assert one.endswith(" for 2 min"), one
    assert await said(rules, ctx, name="Nothing.*") == "No alerting rules matching Nothing.*"
    assert await said(tools["prometheus.label_values"], ctx, label="service") == (
        "Listed 1 value of label service: checkout"
    )
    assert await said(tools["prometheus.series"], ctx, match='up{namespace="shop"}') == (
        'Found 1 series for up{namespace="shop"}: metrics http_requests_total'
    )
    assert await said(tools["prometheus.metadata"], ctx, metric="http_requests_total") == (
        "Read what http_requests_total is: a counter, 'http_requests_total (sandbox)'"
    )
    down = await said(alerts, nowhere)
    assert down.startswith("Could not list the alerts in Prometheus: "), down
    assert nowhere.prometheus_url is not None and nowhere.prometheus_url in down


# -- Alertmanager ----------------------------------------------------------------------------
async def test_alertmanager_tools_list_alerts_silences_and_groups(
    ctx: ToolContext, nowhere: ToolContext
) -> None:
    am = alertmanager
    assert await said(am.alerts, ctx) == (
        "Listed 2 alerts in Alertmanager: HighErrorRate, KubePodNotReady"
    )
    assert await said(am.alerts, ctx, matchers=['namespace="cart"']) == (
        'No alerts in Alertmanager matching namespace="cart"'
    )
    silence = await said(am.silences, ctx)
    assert silence.startswith(
        'Found 1 silence: active on alertname="KubeCPUOvercommit" by platform@example.com, '
        "'capacity review next week', started "
    ), silence
    assert await said(am.silences, ctx, state="expired") == "No expired silences"
    assert await said(am.groups, ctx) == (
        "Listed 2 alert groups (2 alerts) for incident-bot: HighErrorRate, KubePodNotReady"
    )
    refused = await said(am.alerts, ctx, matchers=["not a matcher"])
    assert refused.startswith(
        "Could not list the alerts in Alertmanager matching not a matcher: Alertmanager "
        "answered HTTP 400"
    ), refused
    down = await said(am.groups, nowhere)
    assert down.startswith("Could not list the alert groups: "), down


# -- Kubernetes ------------------------------------------------------------------------------
async def test_kubernetes_deployment_and_history_name_revision_and_image(
    ctx: ToolContext,
) -> None:
    k8s = kubernetes
    assert await said(k8s.get_deployment, ctx, namespace="shop", name="checkout") == (
        "Read deployment shop/checkout: revision 2 (checkout:v2.4.0), 3/3 ready, rollout complete"
    )
    gone = await said(k8s.get_deployment, ctx, namespace="shop", name="gone")
    assert gone == "Could not read deployment shop/gone: deployment shop/gone not found"
    history = await said(k8s.rollout_history, ctx, namespace="shop", deployment="checkout")
    assert history.startswith("Read 2 revisions of shop/checkout: latest 2 (checkout:v2.4.0) ")
    assert history.endswith(" min ago"), history


async def test_kubernetes_pods_logs_events_and_nodes(ctx: ToolContext) -> None:
    k8s = kubernetes
    pods = await said(k8s.pods, ctx, namespace="shop", label_selector="app=checkout")
    assert pods == (
        "Listed 3 pods of shop/checkout: 3 Running; 6 restarts; last exit Error: "
        "'panic: upstream connection pool exhausted (payments.shop:8443)'"
    )
    assert await said(k8s.pods, ctx, namespace="shop", label_selector="app=cart") == (
        "No pods of shop/cart"
    )
    # A cut result counts what there was, not what it shows.
    everywhere = k8s.pods.validate_input({"namespace": "shop"})
    listed = await k8s.pods.call(ctx, everywhere)
    cut = listed.model_copy(update={"note": "120 pods; showing the 100 in most trouble"})
    assert readable(k8s.pods.describe(everywhere, cut)).startswith("Listed 120 pods of shop: ")

    assert isinstance(listed.data, list) and isinstance(listed.data[0], dict)
    pod = str(listed.data[0]["pod"])
    tail = await said(k8s.pod_logs, ctx, namespace="shop", pod=pod, tail_lines=5)
    assert tail.startswith(f"Read 5 log lines of pod {pod}: most frequent 'upstream timeout")
    crashed = await said(k8s.pod_logs, ctx, namespace="shop", pod=pod, previous=True)
    assert crashed.startswith("Read ") and f"of the previous container of pod {pod}: " in crashed
    assert "it ended with '" in crashed, crashed
    assert await said(k8s.pod_logs, ctx, namespace="shop", pod=pod, contains="nothing") == (
        f"No 'nothing' lines in pod {pod}"
    )
    assert await said(k8s.pod_logs, ctx, namespace="shop", pod="checkout-gone") == (
        "Could not read the log lines of pod checkout-gone: pod shop/checkout-gone not found"
    )

    events = await said(k8s.events, ctx, namespace="shop")
    assert events.startswith("Read 8 events of shop: 6 warnings (21 Unhealthy, 6 BackOff); ")
    assert "latest Unhealthy: 'Readiness probe failed" in events, events
    rollout = await said(k8s.events, ctx, namespace="shop", kind="Deployment", name="checkout")
    assert rollout.startswith(
        "Read 2 events of shop about Deployment checkout: no warnings; latest "
        "ScalingReplicaSet: 'Scaled"
    ), rollout
    assert await said(k8s.events, ctx, namespace="empty") == "No events in empty"
    assert await said(k8s.nodes, ctx) == "Checked 3 nodes: all Ready"


async def test_nodes_in_trouble_are_named_with_their_problem(http: aiohttp.ClientSession) -> None:
    nodes = [
        NodeSpec(name="node-a"),
        NodeSpec(name="node-b", pressure=["DiskPressure"]),
        NodeSpec(name="node-c", ready=False, unschedulable=True),
    ]
    scenario = load_scenario("bad-deploy").model_copy(update={"nodes": nodes})
    async with run_sandbox(scenario) as sandbox:
        client = KubernetesApi(sandbox.url, None)
        async with client:
            ctx = ToolContext(http=http, prometheus_url=None, kubernetes=client)
            assert await said(kubernetes.nodes, ctx) == (
                "Checked 3 nodes: 2 in trouble: node-b DiskPressure; node-c not Ready, cordoned"
            )
            assert await said(kubernetes.nodes, ctx, name="node-d") == "No node node-d"
    unconfigured = ToolContext(http=http, prometheus_url=None, kubernetes=None)
    assert (await said(kubernetes.nodes, unconfigured)).startswith("Could not check the nodes: ")


# -- Loki ------------------------------------------------------------------------------------
async def test_log_queries_count_lines_and_quote_the_most_frequent(
    ctx: ToolContext, nowhere: ToolContext
) -> None:
    query = logs.query
    errors = await said(query, ctx, query=CHECKOUT_LOGS + ' |= "error"', minutes=15)
    assert errors.startswith("Read ") and " error lines of shop/checkout in 15 min: " in errors
    assert errors.endswith(
        "most frequent 'upstream timeout (upstream=payments.shop:8443)' "
        f"({errors.rsplit('(', 1)[-1]}"
    )
    capped = await said(query, ctx, query=CHECKOUT_LOGS, minutes=15, limit=5)
    assert capped.startswith("Read at least 5 log lines of shop/checkout in 15 min: "), capped
    counted = await said(
        query, ctx, query='sum by (pod) (count_over_time({app="checkout"} |= "timeout" [5m]))'
    )
    assert counted.startswith(
        "Counted the timeout lines of checkout over 30 min: 3 series; highest at the end pod="
    ), counted
    assert await said(query, ctx, query='{app="cart"}', minutes=5) == (
        "No log lines of cart in the last 5 min"
    )
    unset = await said(query, nowhere, query=CHECKOUT_LOGS)
    assert unset == (
        "Could not search the log lines of shop/checkout: Loki is not configured "
        "(LOKI_URL is unset)"
    )


# -- the default line, and lines of recorded steps ----------------------------------------
class EchoInput(BaseModel):
    """Arguments of `prometheus.echo`."""

    model_config = ConfigDict(extra="forbid")
    text: str = "hello"


@tool("prometheus.echo")
async def echo(ctx: ToolContext, args: EchoInput) -> ToolResult:
    """Answer with the text (a test tool without a describer)."""
    return ToolResult.ok([args.text])


def _broken(args: EchoInput, result: ToolResult) -> str:
    raise ValueError("this describer is broken")


@tool("prometheus.broken", describe=_broken)
async def broken(ctx: ToolContext, args: EchoInput) -> ToolResult:
    """Answer with the text (a test tool whose describer fails)."""
    return ToolResult.ok({"text": args.text})


async def test_a_tool_without_a_describer_gets_the_default_line(
    http: aiohttp.ClientSession,
) -> None:
    context = ToolContext(http=http, prometheus_url=None, kubernetes=None)
    assert await said(echo, context) == "Ran prometheus echo: 1 result"
    assert describe_default("logs_query", ToolResult.no_data("no log lines for `x`")) == (
        "Logs query found nothing: no log lines for `x`"
    )
    assert describe_default("kubectl_exec", ToolResult.fail("unknown tool 'kubectl_exec'")) == (
        "Could not run kubectl exec: unknown tool 'kubectl_exec'"
    )
    long = one_line('Alertmanager answered HTTP 500: {"error": "x"}\n' + "y " * 200)
    assert long == "Alertmanager answered HTTP 500 …"
    assert len(one_line("word " * 100)) == SUMMARY_CHARS


def test_steps_recorded_without_a_summary_read_as_words() -> None:
    ok = ToolResultPart(tool_use_id="t1", content='{"status":"ok","data":[{"value":0.12}]}')
    assert tool_line(ok, "prometheus_query") == "Ran prometheus query: 1 result"
    empty = ToolResultPart(tool_use_id="t2", content='{"status":"no_data","note":"no series"}')
    assert tool_line(empty, None) == "A tool found nothing: no series"
    failed = ToolResultPart(
        tool_use_id="t3", content='{"status":"error","error":"pod not found"}', is_error=True
    )
    assert tool_line(failed, "kubernetes_pod_logs") == (
        "Could not run kubernetes pod logs: pod not found"
    )
    cut = ToolResultPart(tool_use_id="t4", content='{"status":"ok","data":[1,2\n[truncated: …]')
    assert tool_line(cut, "logs_query") == "Ran logs query: done"
    answered = ToolResultPart(tool_use_id="t5", content="not run: fix it first", is_error=True)
    assert tool_line(answered, "conclude") == "Could not run conclude: not run: fix it first"
    own = ToolResultPart(tool_use_id="t6", content="{}", summary="Checked 3 nodes: all Ready")
    assert tool_line(own, "kubernetes_nodes") == "Checked 3 nodes: all Ready"


# -- the loop stores each call's line ------------------------------------------------------
ALERT = Alert(
    source="alertmanager",
    fingerprint="8c1d4e2f9a7b3c50",
    group_key='{}:{alertname="HighErrorRate"}',
    title="HighErrorRate: checkout 5xx ratio above 5%",
    labels={"alertname": "HighErrorRate", "namespace": "shop", "service": "checkout"},
)
LEAK = {"namespace": "shop", "kind": "Pod", "name": "leak-0"}


@pytest.fixture
async def leaky_sandbox() -> AsyncIterator[RunningSandbox]:
    """bad-deploy with an event whose message holds a (fake) access key."""
    scenario = load_scenario("bad-deploy")
    leak = EventSpec(
        **LEAK,
        type="Warning",
        reason="Leaked",
        message=f"s3-uploader failed; credentials AWS_ACCESS_KEY_ID={SECRET} region=us-east-1",
        at=-60,
    )
    async with run_sandbox(scenario.model_copy(update={"events": [*scenario.events, leak]})) as s:
        yield s


async def test_the_loop_stores_each_calls_line_redacted_and_never_sends_it(
    redis_url: str, leaky_sandbox: RunningSandbox, caplog: pytest.LogCaptureFixture
) -> None:
    conclude = {"summary": "Looked around.", "findings": []}
    script = [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                call("toolu_leak", "kubernetes_events", LEAK),
                call("toolu_exec", "kubectl_exec", {"command": "rm -rf /"}),
                call("toolu_broken", "prometheus_broken", {}),
            )
        ),
        Exchange(
            tool_use(call("toolu_done", "conclude", conclude)),
            expect=[
                tool_result("toolu_ratio", contains='"value":0.12'),
                tool_result("toolu_leak", contains="[REDACTED:"),
            ],
        ),
    ]
    async with ScriptedAnthropic(script) as claude:
        settings = Settings(
            REDIS_URL=redis_url,
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=claude.url,
            INCIDENT_BOT_MODEL="claude-sonnet-4-6",
            PROMETHEUS_URL=leaky_sandbox.url,
            KUBERNETES_URL=leaky_sandbox.url,
        )
        async with open_deps(settings) as opened:
            deps = dataclasses.replace(
                opened, tools={**opened.tools, broken.api_name: broken, echo.api_name: echo}
            )
            run = await start_run(deps, ALERT)
            with caplog.at_level(logging.ERROR, logger="bot.investigation"):
                run = await deps.driver().drive(run.id)
            transcript = await deps.store.transcript(run.id)
            audit = [e for e in await deps.store.read_audit(run.id) if e.event == "tool_call"]
        sent = json.dumps(claude.requests[1].body)
        results = claude.requests[1].tool_results()

    assert run.status is RunStatus.CONCLUDED
    [step] = [s for s in transcript if s.author == "tools"]
    lines = {p.tool_use_id: p.summary for p in step.content if isinstance(p, ToolResultPart)}
    assert lines["toolu_ratio"] == (
        "Queried the 5xx ratio of http_requests_total for shop/checkout: 0.12"
    )
    assert lines["toolu_leak"].startswith("Read 1 event of shop about Pod leak-0: 1 warning")
    assert "[REDACTED:" in lines["toolu_leak"] and SECRET not in lines["toolu_leak"]
    assert lines["toolu_exec"].startswith("Could not run kubectl exec: unknown tool 'kubectl_exec'")
    assert lines["toolu_broken"] == "Ran prometheus broken: done"
    [failure] = [r for r in caplog.records if "could not describe" in r.getMessage()]
    assert getattr(failure, "run_id", None) == run.id
    # The lines are for people: the model gets the results without them.
    fields = {"type", "tool_use_id", "content", "is_error", "cache_control"}
    assert all(set(block) <= fields for block in results.values()), results
    for line in lines.values():
        assert readable(line) not in sent
    assert {e.data["tool"]: e.data["summary"] for e in audit} == {
        "prometheus_query": lines["toolu_ratio"],
        "kubernetes_events": lines["toolu_leak"],
        "kubectl_exec": lines["toolu_exec"],
        "prometheus_broken": lines["toolu_broken"],
    }
