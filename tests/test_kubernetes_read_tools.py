"""Pods, logs, events and nodes with the real lightkube client against the sandbox,
including a 404, a 403 (RBAC), a 429 that succeeds on retry, and that no tool reads Secrets."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import BaseModel

from tools import kube_client, kubernetes, kubernetes_cluster, kubernetes_pods
from tools.kube_client import KubernetesApi
from tools.kubernetes import KUBERNETES, events, nodes, pod_logs, pods
from tools.sandbox import RunningSandbox, Scenario, load_scenario, run_sandbox
from tools.sandbox.scenario_parts import Fault, NodeSpec
from tools.toolset import DEFAULT_BUDGET_CHARS, Tool, ToolContext, ToolInputError, ToolResult

pytest_plugins = ("tests.sandbox_fixtures",)

NEW = "registry.example/checkout:v2.4.0"


async def call(tool: Tool, ctx: ToolContext, **raw: Any) -> ToolResult:
    return await tool.call(ctx, tool.validate_input(raw))


def data_list(result: ToolResult) -> list[dict[str, Any]]:
    assert result.status == "ok", result
    assert isinstance(result.data, list)
    return [d for d in result.data if isinstance(d, dict)]


async def a_pod(ctx: ToolContext) -> str:
    return str(data_list(await call(pods, ctx, namespace="shop"))[0]["pod"])


@pytest.fixture
async def scenario_context(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Any]:
    """`await make(**changes)`: a sandbox of bad-deploy with scenario changes, and its context."""
    stack: list[Any] = []

    async def make(**changes: Any) -> tuple[RunningSandbox, ToolContext]:
        scenario: Scenario = load_scenario("bad-deploy").model_copy(update=changes)
        sandbox_cm = run_sandbox(scenario)
        sandbox = await sandbox_cm.__aenter__()
        stack.append(sandbox_cm)
        client = KubernetesApi(sandbox.url, None)
        stack.append(client)
        ctx = ToolContext(http=http, prometheus_url=None, kubernetes=client, timeout_seconds=5)
        return sandbox, ctx

    yield make
    for item in reversed(stack):
        if hasattr(item, "close"):
            await item.close()
        else:
            await item.__aexit__(None, None, None)


async def test_pods_show_restarts_and_last_termination(tool_context: ToolContext) -> None:
    listed = data_list(
        await call(pods, tool_context, namespace="shop", label_selector="app=checkout")
    )
    assert len(listed) == 3
    pod = listed[0]
    assert (pod["phase"], pod["ready"], pod["restarts"]) == ("Running", "1/1", 2)
    assert str(pod["owner"]).startswith("ReplicaSet/checkout-")
    [container] = pod["containers"]
    assert container["image"] == NEW
    assert container["last_termination"]["reason"] == "Error"
    assert container["last_termination"]["exit_code"] == 2
    assert "connection pool exhausted" in container["last_termination"]["message"]
    none = await call(pods, tool_context, namespace="shop", label_selector="app=cart")
    assert none.status == "no_data"


async def test_pod_logs_tail_contains_and_previous(tool_context: ToolContext) -> None:
    pod = await a_pod(tool_context)
    result = await call(pod_logs, tool_context, namespace="shop", pod=pod, tail_lines=5)
    assert result.status == "ok" and isinstance(result.data, dict)
    lines = result.data["lines"]
    assert isinstance(lines, list) and len(lines) == 5
    assert any("upstream timeout" in str(line) for line in lines)
    only = await call(
        pod_logs, tool_context, namespace="shop", pod=pod, tail_lines=50, contains="status=504"
    )
    assert isinstance(only.data, dict) and isinstance(only.data["lines"], list)
    assert only.data["lines"] and all("status=504" in str(x) for x in only.data["lines"])
    previous = await call(pod_logs, tool_context, namespace="shop", pod=pod, previous=True)
    assert isinstance(previous.data, dict)
    assert "panic: upstream connection pool exhausted" in str(previous.data["lines"])
    with pytest.raises(ToolInputError, match="tail_lines"):
        pod_logs.validate_input({"namespace": "shop", "pod": pod, "tail_lines": 501})


async def test_missing_pod_is_a_404_error(tool_context: ToolContext) -> None:
    result = await call(pod_logs, tool_context, namespace="shop", pod="checkout-gone")
    assert (result.status, result.error) == ("error", "pod shop/checkout-gone not found")


async def test_events_of_the_rollout_and_the_pods(tool_context: ToolContext) -> None:
    rollout = data_list(
        await call(events, tool_context, namespace="shop", kind="Deployment", name="checkout")
    )
    messages = [e["message"] for e in rollout]
    assert any(m.startswith("Scaled up replica set checkout-") for m in messages)
    assert {e["reason"] for e in rollout} == {"ScalingReplicaSet"}
    warnings = data_list(await call(events, tool_context, namespace="shop", warnings_only=True))
    assert {e["reason"] for e in warnings} == {"Unhealthy", "BackOff"}
    assert all(str(e["object"]).startswith("Pod/checkout-") for e in warnings)
    assert (await call(events, tool_context, namespace="empty")).status == "no_data"


async def test_nodes_with_pressure(scenario_context: Any) -> None:
    _, ctx = await scenario_context(
        nodes=[NodeSpec(name="node-a"), NodeSpec(name="node-b", pressure=["DiskPressure"])]
    )
    everything = data_list(await call(nodes, ctx))
    assert [n["node"] for n in everything] == ["node-a", "node-b"]
    troubled = data_list(await call(nodes, ctx, problems_only=True))
    assert [n["node"] for n in troubled] == ["node-b"]
    assert troubled[0]["pressure"] == ["DiskPressure: kubelet has DiskPressure"]
    assert data_list(await call(nodes, ctx, name="node-a"))[0]["ready"] is True


async def test_rbac_refusal_is_a_403_error(scenario_context: Any) -> None:
    _, ctx = await scenario_context(readable_namespaces=["shop"])
    result = await call(pods, ctx, namespace="kube-system")
    assert result.status == "error"
    assert result.error == (
        "Kubernetes API answered 403 Forbidden for pods in namespace kube-system: pods is "
        'forbidden: User "system:serviceaccount:incident-bot:incident-bot" cannot get resource '
        '"pods" in API group "" in the namespace "kube-system"'
    )
    assert (await call(pods, ctx, namespace="shop")).status == "ok"


async def test_429_is_retried_after_retry_after(scenario_context: Any) -> None:
    fault = Fault(path=r"/namespaces/shop/events$", status=429, times=2, retry_after=0)
    sandbox, ctx = await scenario_context(faults=[fault])
    result = await call(events, ctx, namespace="shop")
    assert result.status == "ok"
    assert len(sandbox.requests.matching(r"/namespaces/shop/events")) == 3


async def test_a_lasting_5xx_fails_within_the_timeout(scenario_context: Any) -> None:
    fault = Fault(path=r"/nodes$", status=503, times=None, retry_after=0)
    _, ctx = await scenario_context(faults=[fault])
    result = await call(nodes, ctx)
    assert result.status == "error" and "Kubernetes API is failing (nodes): HTTP 503" in str(
        result.error
    )


async def test_a_200_kb_log_is_cut_to_the_budget(scenario_context: Any) -> None:
    long_line = "level=error msg=upstream timeout " + "x" * 1000 + " id={id}"
    profile = (
        load_scenario("bad-deploy")
        .pods[NEW]
        .model_copy(update={"logs": [long_line], "log_interval_seconds": 0.1})
    )
    _, ctx = await scenario_context(pods={NEW: profile})
    pod = await a_pod(ctx)
    result = await call(pod_logs, ctx, namespace="shop", pod=pod, tail_lines=500)
    assert len(result.model_dump_json()) > 200_000
    rendered = pod_logs.render(result)
    note = json.loads(rendered)["truncated"]
    assert len(rendered) <= DEFAULT_BUDGET_CHARS + len(note) + 20
    assert re.match(r"showing the last \d+ of \d+ items of `lines`", note)
    lines = json.loads(rendered)["data"]["lines"]
    assert lines[-1] == result.data["lines"][-1]  # the newest line is kept
    assert "tail_lines" in note  # how to narrow the query


# -- Secrets -------------------------------------------------------------------------------
def _secretive(model: type[BaseModel]) -> dict[str, Any]:
    """Arguments that try hard to point a tool at Secrets."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        if field.annotation in (str, str | None):
            values[name] = "secrets" if name != "label_selector" else "app=secrets"
    if "namespace" in values:
        values["namespace"] = "shop"
    return values


async def test_no_tool_reads_secrets(sandbox: RunningSandbox, tool_context: ToolContext) -> None:
    for tool in KUBERNETES.tools:
        args = _secretive(tool.input_model)
        await tool.call(tool_context, tool.validate_input(args))
        for bad in ("../secrets/x", "shop/secrets", "Secret"):
            with pytest.raises(ToolInputError):
                tool.validate_input({**args, **{k: bad for k in args if k != "label_selector"}})
    assert sandbox.requests.entries, "the tools sent requests"
    # A deployment or pod may be called "secrets"; the Secret resource is never requested.
    assert not sandbox.requests.matching(r"/v1/(namespaces/[^/]+/)?secrets\b")
    # Nor does their code call any client method about Secrets (read_namespaced_secret...).
    for module in (kubernetes, kubernetes_pods, kubernetes_cluster, kube_client):
        assert not re.search(r"secret\w*\(", inspect.getsource(module), re.IGNORECASE)


async def test_the_sandbox_forbids_secrets_like_rbac(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    async with http.get(f"{sandbox.url}/api/v1/namespaces/shop/secrets") as response:
        assert response.status == 403
        assert 'cannot get resource "secrets"' in (await response.json())["message"]
