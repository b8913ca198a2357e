"""The Kubernetes tools with a real lightkube client against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.servers import free_port
from tools.kube_client import KubernetesApi
from tools.kubernetes import KUBERNETES, get_deployment, rollout_history
from tools.sandbox import RunningSandbox
from tools.toolset import ToolContext, ToolInputError

pytest_plugins = ("tests.sandbox_fixtures",)

OLD = "registry.example/checkout:v2.3.1"
NEW = "registry.example/checkout:v2.4.0"


async def test_get_deployment(tool_context: ToolContext) -> None:
    args = get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
    result = await get_deployment.call(tool_context, args)
    assert result.status == "ok"
    data = result.data
    assert isinstance(data, dict)
    assert data["deployment"] == "shop/checkout"
    assert data["revision"] == 2
    assert data["change_cause"] == "deploy v2.4.0 (#4812)"
    assert data["containers"] == [{"name": "checkout", "image": NEW}]
    assert data["replicas"] == {
        "desired": 3,
        "ready": 3,
        "updated": 3,
        "available": 3,
        "unavailable": 0,
    }
    assert data["rollout"] == "complete"
    assert data["generation"] == data["observed_generation"] == 2
    assert data["selector"] == {"app": "checkout"}
    conditions = data["conditions"]
    assert isinstance(conditions, list)
    assert {c["type"] for c in conditions if isinstance(c, dict)} == {"Available", "Progressing"}


async def test_rollout_history_lists_revisions_newest_first(tool_context: ToolContext) -> None:
    args = rollout_history.validate_input({"namespace": "shop", "deployment": "checkout"})
    result = await rollout_history.call(tool_context, args)
    assert result.status == "ok"
    assert isinstance(result.data, list)
    summary = [
        (r["revision"], r["current"], r["images"], r["change_cause"], r["replicas"])
        for r in result.data
        if isinstance(r, dict)
    ]
    assert summary == [
        (2, True, [NEW], "deploy v2.4.0 (#4812)", 3),
        (1, False, [OLD], "deploy v2.3.1 (#4790)", 0),
    ]
    first = result.data[0]
    assert isinstance(first, dict) and str(first["created"]).endswith("Z")


async def test_missing_deployment_is_a_readable_error(tool_context: ToolContext) -> None:
    result = await get_deployment.call(
        tool_context, get_deployment.validate_input({"namespace": "shop", "name": "cart"})
    )
    assert (result.status, result.error) == ("error", "deployment shop/cart not found")
    result = await rollout_history.call(
        tool_context, rollout_history.validate_input({"namespace": "shop", "deployment": "cart"})
    )
    assert (result.status, result.error) == ("error", "deployment shop/cart not found")


def test_invalid_input_raises_tool_input_error() -> None:
    with pytest.raises(ToolInputError, match="kubernetes_get_deployment: name: Field required"):
        get_deployment.validate_input({"namespace": "shop"})
    with pytest.raises(ToolInputError, match="namespace"):
        rollout_history.validate_input({"namespace": "", "deployment": "checkout"})
    assert [t.name for t in KUBERNETES.tools] == [
        "kubernetes.get_deployment",
        "kubernetes.rollout_history",
        "kubernetes.pods",
        "kubernetes.pod_logs",
        "kubernetes.events",
        "kubernetes.nodes",
    ]


async def test_unconfigured_kubernetes_fails(http: aiohttp.ClientSession) -> None:
    ctx = ToolContext(http=http, prometheus_url=None, kubernetes=None)
    args = get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
    result = await get_deployment.call(ctx, args)
    assert result.status == "error" and "not configured" in (result.error or "")


async def test_a_kubeconfig_that_cannot_be_loaded_fails_the_call_not_the_process(
    http: aiohttp.ClientSession, tmp_path: Path, sandbox: RunningSandbox
) -> None:
    # The client is built at the first call: a broken kubeconfig is that call's error,
    # and a later call, once the file is right, succeeds.
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("clusters: [unclosed")
    args = get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
    async with KubernetesApi(None, kubeconfig) as kubernetes:
        ctx = ToolContext(http=http, prometheus_url=None, kubernetes=kubernetes)
        result = await get_deployment.call(ctx, args)
        assert result.status == "error"
        assert (result.error or "").startswith("cannot configure the Kubernetes API: ")
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "clusters": [{"name": "s", "cluster": {"server": sandbox.url}}],
                    "users": [{"name": "u", "user": {}}],
                    "contexts": [{"name": "s", "context": {"cluster": "s", "user": "u"}}],
                    "current-context": "s",
                }
            )
        )
        assert (await get_deployment.call(ctx, args)).status == "ok"


async def test_client_from_a_kubeconfig(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "sandbox", "cluster": {"server": sandbox.url}}],
                "users": [{"name": "reader", "user": {"token": "read-only"}}],
                "contexts": [
                    {"name": "sandbox", "context": {"cluster": "sandbox", "user": "reader"}}
                ],
                "current-context": "sandbox",
            }
        )
    )
    async with KubernetesApi(None, kubeconfig) as client:
        ctx = ToolContext(http=http, prometheus_url=None, kubernetes=client)
        args = get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
        result = await get_deployment.call(ctx, args)
    assert result.status == "ok"


@pytest.fixture
async def forbidding_api() -> AsyncIterator[str]:
    """A Kubernetes API that refuses every read with 403, as RBAC would."""

    async def forbidden(request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": 'deployments.apps "checkout" is forbidden: User "bot" cannot get',
            "reason": "Forbidden",
            "code": 403,
        }
        return web.json_response(body, status=403)

    app = web.Application()
    app.router.add_get("/{tail:.*}", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_refusal_reports_status_and_message(
    forbidding_api: str, http: aiohttp.ClientSession
) -> None:
    async with KubernetesApi(forbidding_api, None) as client:
        ctx = ToolContext(http=http, prometheus_url=None, kubernetes=client)
        args = get_deployment.validate_input({"namespace": "shop", "name": "checkout"})
        result = await get_deployment.call(ctx, args)
    assert result.status == "error"
    assert result.error == (
        "Kubernetes API answered 403 Forbidden for deployment shop/checkout: "
        'deployments.apps "checkout" is forbidden: User "bot" cannot get'
    )
