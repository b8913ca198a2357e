"""`incident-bot mcp`: the read-only tools served over stdio, answered to a client written
with the `mcp` SDK; the bot runs as a real subprocess against the sandbox."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import mcp_types
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from policies.documents import PolicyError
from policies.schema import read_policy
from tests.processes import ROOT, bot_env, run_bot
from tests.test_mcp_sources import LEAKY, mcp_policy_dir, stdio_server
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

SCOPE = {
    "name": "shop-reader",
    "match": {"team": "shop"},
    "toolsets": ["kubernetes", "fixture"],
    "namespaces": ["shop"],
}


def bot_policy(tmp_path: Path) -> Path:
    """The shipped policy, the fixture MCP server and a named scope."""
    directory = mcp_policy_dir(tmp_path, stdio_server())
    (directory / "scopes.yaml").write_text(yaml.safe_dump({"scopes": [SCOPE]}))
    return directory


@asynccontextmanager
async def bot_mcp(sandbox: RunningSandbox, tmp_path: Path, *args: str) -> AsyncIterator[Client]:
    """An MCP client talking to `python -m bot mcp ARGS` over stdio."""
    env = bot_env(
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=str(bot_policy(tmp_path)),
        INCIDENT_BOT_TOOL_TIMEOUT="10",
        FIXTURE_SECRET=LEAKY["text"],
    )
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "bot", "mcp", *args], env=env, cwd=ROOT
    )
    with (tmp_path / "bot.stderr").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            yield client


def text_of(result: mcp_types.CallToolResult) -> str:
    (block,) = result.content
    assert isinstance(block, mcp_types.TextContent)
    return block.text


async def test_lists_and_calls_the_read_only_tools(sandbox: RunningSandbox, tmp_path: Path) -> None:
    async with bot_mcp(sandbox, tmp_path) as client:
        listing = await client.list_tools()
        names = {t.name for t in listing.tools}
        assert {"prometheus_query", "kubernetes_pods", "fixture_deploy_history"} <= names
        assert not names & {"propose_remediation", "conclude", "fixture_delete_namespace"}
        assert not [n for n in names if n.startswith(("kubernetes_rollback", "webhook"))]
        assert all(t.annotations and t.annotations.read_only_hint for t in listing.tools)
        ratio = await client.call_tool(
            "prometheus_query", {"query": 'sum(rate(http_requests_total{code=~"5.."}[5m]))'}
        )
        assert not ratio.is_error
        assert json.loads(text_of(ratio))["status"] in ("ok", "no_data")
        history = await client.call_tool("fixture_deploy_history", {"service": "checkout"})
        text = text_of(history)
    assert not history.is_error
    assert "[REDACTED:" in text
    for secret in LEAKY["secrets"]:
        assert secret not in text
    body = json.loads(text)
    assert "truncated" in body and len(body["data"]["lines"]) < 401


async def test_a_named_scope_limits_toolsets_and_namespaces(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async with bot_mcp(sandbox, tmp_path, "--scope", "shop-reader") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert "kubernetes_get_deployment" in names and "fixture_deploy_history" in names
        assert not [n for n in names if n.startswith(("prometheus_", "logs_", "alertmanager"))]
        inside = await client.call_tool(
            "kubernetes_get_deployment", {"namespace": "shop", "name": "checkout"}
        )
        outside = await client.call_tool(
            "kubernetes_get_deployment", {"namespace": "kube-system", "name": "coredns"}
        )
        unknown = await client.call_tool("prometheus_query", {"query": "up"})
    assert not inside.is_error and "checkout" in text_of(inside)
    assert outside.is_error and "outside this run's scope" in text_of(outside)
    assert unknown.is_error and "unknown tool 'prometheus_query'" in text_of(unknown)


async def test_an_unknown_scope_is_refused_by_name(tmp_path: Path) -> None:
    env = bot_env(INCIDENT_BOT_POLICY_DIR=str(bot_policy(tmp_path)))
    code, out, err = await run_bot("mcp", "--scope", "nope", env=env, cwd=ROOT)
    assert code == 1
    assert out == ""
    assert "no scope 'nope'; named scopes: shop-reader" in err


def test_scope_names_are_unique() -> None:
    text = yaml.safe_dump({"scopes": [SCOPE, SCOPE]})
    with pytest.raises(PolicyError, match="scope names must be unique: shop-reader"):
        read_policy([("scopes.yaml", text)])
