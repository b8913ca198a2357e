"""MCP servers as tool sources: a local server written with the `mcp` SDK
(tests/mcp_fixture_server.py) over stdio and streamable HTTP, the real investigation loop
against the scripted Messages API, and `incident-bot tools list`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli_tools import tools_list
from bot.mcp_tools import open_mcp_tools
from bot.models import RunStatus
from bot.settings import Settings
from bot.store import RunStore
from bot.tool_context import open_tool_context
from policies.documents import PolicyConfigError, PolicyError
from policies.mcp import McpServer
from policies.schema import read_policy
from tests.anthropic_server import (
    API_KEY,
    ScriptedAnthropic,
    call,
    offers_tools,
    tool_result,
    tool_use,
)
from tests.processes import eventually
from tests.servers import free_port
from tests.slack_helpers import WEBHOOK_TOKEN, bot_app, run_in
from tests.slack_helpers import bot_env as slack_bot_env
from tests.slack_server import SlackServer
from tests.test_investigation_model import Exchange, conclude, harness
from tests.test_pause import _cli
from tools.mcp_source import McpSource
from tools.redaction import redact_text
from tools.sandbox import load_scenario, run_sandbox

pytest_plugins = ("tests.slack_fixtures",)

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_SERVER = str(ROOT / "tests" / "mcp_fixture_server.py")
DEFAULT_POLICY = (ROOT / "policies" / "default.yaml").read_text(encoding="utf-8")
SECRETS = yaml.safe_load((ROOT / "tests" / "fixtures" / "secrets" / "secrets.yaml").read_text())
# One line of a log with an AWS access key id in it, and the key itself.
(LEAKY,) = [s for s in SECRETS if s["id"] == "aws-key-id-log"]


def stdio_server(name: str = "fixture", **extra: Any) -> dict[str, Any]:
    """A policy entry starting the fixture server; `deploy_history` and `wait_forever`
    allowed, `delete_namespace` not."""
    return {
        "name": name,
        "command": [sys.executable, FIXTURE_SERVER],
        "env": ["FIXTURE_SECRET"],
        "tools": [
            {"name": "deploy_history", "read_only": True, "budget_chars": 2000},
            {"name": "wait_forever", "read_only": True},
        ],
        **extra,
    }


def mcp_policy_dir(tmp_path: Path, *servers: dict[str, Any]) -> Path:
    """The shipped policy plus a file listing `servers`."""
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "default.yaml").write_text(DEFAULT_POLICY, encoding="utf-8")
    (directory / "mcp.yaml").write_text(yaml.safe_dump({"mcp_servers": list(servers)}))
    return directory


@pytest.fixture
def leaky_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fixture server prints FIXTURE_SECRET, passed through by the policy's `env`."""
    monkeypatch.setenv("FIXTURE_SECRET", LEAKY["text"])


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    """The fixture server on streamable HTTP, requiring `X-Fixture-Token: let-me-in`."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        FIXTURE_SERVER,
        "--http",
        str(port),
        "--require-header",
        "X-Fixture-Token=let-me-in",
        stdin=asyncio.subprocess.DEVNULL,
    )

    async def listening() -> bool | None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        writer.close()
        await writer.wait_closed()
        return True

    try:
        await eventually(listening)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        await process.wait()


# -- the investigation -------------------------------------------------------------------------
async def test_the_model_gets_only_allowed_tools_budgeted_redacted_and_audited(
    redis_url: str, tmp_path: Path, leaky_env: None
) -> None:
    script = [
        Exchange(
            tool_use(
                call("toolu_history", "fixture_deploy_history", {"service": "checkout"}),
                call("toolu_wait", "fixture_wait_forever", {}),
                call("toolu_delete", "fixture_delete_namespace", {"namespace": "shop"}),
            ),
            expect=[offers_tools("fixture_deploy_history", "fixture_wait_forever")],
        ),
        conclude(
            expect=[
                tool_result("toolu_history", contains='"truncated":"showing the first'),
                tool_result("toolu_history", contains="[REDACTED:"),
                tool_result("toolu_wait", is_error=True, contains="timed out after 2s"),
                tool_result("toolu_delete", is_error=True, contains="unknown tool"),
            ]
        ),
    ]
    settings = {"INCIDENT_BOT_POLICY_DIR": str(mcp_policy_dir(tmp_path, stdio_server()))}
    async with harness(redis_url, script, INCIDENT_BOT_TOOL_TIMEOUT=2, **settings) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED
        offered = h.claude.requests[0].tool_names
        assert "fixture_delete_namespace" not in offered
        assert "prometheus_query" in offered  # offered beside the built-in tools
        content = h.claude.requests[1].tool_results()["toolu_history"]["content"]
        text = content if isinstance(content, str) else content[0]["text"]
        body = json.loads(text[text.index("{") : text.rindex("}") + 1])
        assert body["status"] == "ok"
        assert len(body["data"]["lines"]) < 401  # cut to the tool's budget, still JSON
        calls = {e.data["tool"]: e.data for e in await h.audit(run, "tool_call")}
        assert calls["fixture_deploy_history"]["status"] == "ok"
        assert calls["fixture_deploy_history"]["redactions"]
        assert calls["fixture_wait_forever"]["status"] == "error"
        assert calls["fixture_delete_namespace"]["status"] == "error"
        seen = [json.dumps(r.body) for r in h.claude.requests]
        seen += [json.dumps(e.data) for e in await h.deps.store.read_audit(run.id)]
        seen += [s.model_dump_json() for s in await h.deps.store.transcript(run.id)]
        for secret in LEAKY["secrets"]:
            assert not [s for s in seen if secret in s], f"{secret} reached the model or audit"


async def test_no_secret_of_a_tool_result_reaches_slack(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore, leaky_env: None
) -> None:
    """The Slack channel: the run's messages, thread and report carry the tool's redacted
    line, never the secret the MCP server printed."""
    (policy_dir / "mcp.yaml").write_text(yaml.safe_dump({"mcp_servers": [stdio_server()]}))
    script = [
        Exchange(tool_use(call("toolu_history", "fixture_deploy_history", {"service": "c"}))),
        conclude(expect=[tool_result("toolu_history", contains="[REDACTED:")]),
    ]
    body = json.loads((ROOT / "tests/fixtures/alertmanager/firing-single.json").read_text())
    async with (
        run_sandbox(load_scenario("bad-deploy")) as sandbox,
        ScriptedAnthropic(script) as claude,
    ):
        model = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": claude.url}
        env = slack_bot_env(redis_url, slack, policy_dir, sandbox) | model
        async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
            async with bot.client.post(
                "/webhooks/alertmanager",
                json=body,
                headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
            ) as response:
                assert response.status == 202
                run_id = (await response.json())["run_id"]
            await run_in(store, run_id, RunStatus.CONCLUDED, within=60)
            await slack.until(
                lambda: any("Nothing to roll back" in json.dumps(c.args) for c in slack.calls)
            )
    sent = json.dumps([[c.args for c in slack.calls], slack.ephemeral])
    sent += "".join(f.data.decode(errors="replace") for f in slack.uploads.files.values() if f.data)
    assert "fixture" in sent  # the tool call is shown
    for secret in LEAKY["secrets"]:
        assert secret not in sent


# -- tools list ----------------------------------------------------------------------------------
async def test_tools_list_shows_each_server_up_or_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    crashing = {
        "name": "crashing",
        "command": [sys.executable, "-c", "import sys; sys.exit(3)"],
        "tools": [{"name": "anything", "read_only": True}],
    }
    closed = {
        "name": "closed",
        "url": f"http://127.0.0.1:{free_port()}/mcp",
        "tools": [{"name": "anything", "read_only": True}],
    }
    fixture = stdio_server(
        tools=[
            {"name": "deploy_history", "read_only": True},
            {"name": "not_there", "read_only": True},
        ]
    )
    settings = Settings(
        INCIDENT_BOT_POLICY_DIR=mcp_policy_dir(tmp_path, fixture, crashing, closed),
        INCIDENT_BOT_TOOL_TIMEOUT=10,
    )
    code = await tools_list(argparse.Namespace(json=True), settings)
    assert code == 1
    rows = {r["tool"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fixture.deploy_history"] == {
        "tool": "fixture.deploy_history",
        "toolset": "fixture",
        "state": "reachable",
        "reason": "MCP server up",
    }
    assert rows["fixture.not_there"]["state"] == "not offered"
    assert "fixture.delete_namespace" not in rows
    for down in ("crashing.anything", "closed.anything"):
        assert rows[down]["state"] == "unreachable"
        assert rows[down]["reason"].startswith("MCP server down: ")


# -- streamable HTTP ---------------------------------------------------------------------------
async def test_http_headers_come_from_the_environment(
    http_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = {
        "name": "web",
        "url": http_server,
        "headers": {"X-Fixture-Token": "FIXTURE_TOKEN"},
        "tools": [{"name": "deploy_history", "read_only": True}],
    }
    policy = read_policy([("mcp.yaml", yaml.safe_dump({"mcp_servers": [entry]}))])
    async with open_mcp_tools(policy, reserved=()) as (sources, tools):
        assert tools == {}  # FIXTURE_TOKEN is unset: the server is down, nothing offered
        assert sources is not None
        assert sources.sources[0].state == "down: headers need unset variables: FIXTURE_TOKEN"
    monkeypatch.setenv("FIXTURE_TOKEN", "let-me-in")
    async with (
        open_mcp_tools(policy, reserved=()) as (_, tools),
        open_tool_context(Settings()) as ctx,
    ):
        tool = tools["web_deploy_history"]
        result = await tool.call(ctx, tool.validate_input({"service": "a", "lines": 2}))
    assert result.status == "ok"
    assert result.data == {
        "lines": ["a: deploy 0 rolled out", "a: config loaded no secret", "a: deploy 1 rolled out"]
    }


async def test_a_server_lost_after_discovery_is_started_again_on_the_next_call(
    tmp_path: Path,
) -> None:
    entry = stdio_server(
        tools=[
            {"name": "deploy_history", "read_only": True},
            {"name": "exit_server", "read_only": True},
        ]
    )
    policy = read_policy([("mcp.yaml", yaml.safe_dump({"mcp_servers": [entry]}))])
    async with (
        open_mcp_tools(policy, reserved=()) as (_, tools),
        open_tool_context(Settings(INCIDENT_BOT_TOOL_TIMEOUT=20)) as ctx,
    ):
        crash = tools["fixture_exit_server"]
        crashed = await crash.call(ctx, crash.validate_input({}))
        history = tools["fixture_deploy_history"]
        again = await history.call(ctx, history.validate_input({"service": "a", "lines": 1}))
    assert crashed.status == "error"
    assert again.status == "ok"


# -- the policy ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"name": "a", "command": ["x"], "tools": [{"name": "t"}]}, "read_only"),
        ({"name": "a", "command": ["x"], "tools": [{"name": "t", "read_only": False}]}, "True"),
        ({"name": "a", "command": ["x"], "url": "https://x/mcp"}, "either `command`"),
        ({"name": "a", "url": "https://x/mcp", "headers": {"Authorization": "Bearer x"}}, "env"),
        ({"name": "a_b", "command": ["x"]}, "name"),
        ({"name": "a", "command": ["x"], "env": ["lower"]}, "environment variable name"),
    ],
)
def test_bad_server_entries_are_refused_with_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        read_policy([("mcp.yaml", yaml.safe_dump({"mcp_servers": [entry]}))])


async def test_a_server_may_not_take_a_built_in_toolset_name() -> None:
    entry = {"name": "prometheus", "command": ["x"]}
    policy = read_policy([("mcp.yaml", yaml.safe_dump({"mcp_servers": [entry]}))])
    with pytest.raises(PolicyConfigError, match="prometheus is a built-in toolset"):
        async with open_mcp_tools(policy, reserved=["prometheus"]):
            pass


def test_the_kill_switch_and_state_reads_start_no_mcp_server(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`pause`, `resume` and `runs list` drive no investigation: they never start a
    server (one that hangs at start would hold the kill switch for `connect_seconds`);
    `tools list` does, which shows the marker would be written."""
    marker = tmp_path / "started"
    hanging = {
        "name": "hanging",
        "command": [
            sys.executable,
            "-c",
            f"open({str(marker)!r}, 'w'); import time; time.sleep(60)",
        ],
        "tools": [{"name": "anything", "read_only": True}],
        "connect_seconds": 2,
    }
    env = {
        "INCIDENT_BOT_POLICY_DIR": str(mcp_policy_dir(tmp_path, hanging)),
        "REDIS_URL": redis_url,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for command in (["pause", "drill"], ["resume"], ["runs", "list"]):
            code, out, err = _cli(capsys, *command)
            assert code == 0, (command, out, err)
            assert not marker.exists(), command
        code, out, err = _cli(capsys, "tools", "list", "--json")
        assert marker.exists(), (out, err)


# -- the servers' stderr -------------------------------------------------------------------------
def stderr_records(caplog: pytest.LogCaptureFixture, server: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "mcp_server", None) == server]


async def test_a_servers_stderr_is_logged_redacted_cut_and_rate_limited(
    leaky_env: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """A server that writes a secret, a very long line and a flood to stderr, then exits:
    its lines are log records, redacted and bounded; the flood is counted, not logged."""
    caplog.set_level(logging.INFO)
    script = (
        "import os, sys; err = sys.stderr; print(os.environ['FIXTURE_SECRET'], file=err); "
        "print('x' * 9000 + ' ' + os.environ['FIXTURE_SECRET'] * 3, file=err); "
        "err.write('chatter\\n' * 5000); sys.exit(3)"
    )
    entry = {
        "name": "leaky",
        "command": [sys.executable, "-c", script],
        "env": ["FIXTURE_SECRET"],
        "tools": [{"name": "anything", "read_only": True}],
    }
    policy = read_policy([("mcp.yaml", yaml.safe_dump({"mcp_servers": [entry]}))])
    async with open_mcp_tools(policy, reserved=()) as (_, tools):
        assert tools == {}
    records = stderr_records(caplog, "leaky")
    lines = [r.mcp_stderr for r in records if hasattr(r, "mcp_stderr")]
    assert lines[0] == redact_text(LEAKY["text"]) != LEAKY["text"]
    assert lines[1].endswith(" [cut]")
    assert all(len(line) <= 2_010 for line in lines)
    dropped = sum(r.mcp_stderr_dropped for r in records if hasattr(r, "mcp_stderr_dropped"))
    assert dropped > 0
    assert lines.count("chatter") + dropped == 5000
    err = capfd.readouterr().err
    for secret in LEAKY["secrets"]:
        assert secret not in caplog.text
        assert secret not in err


async def test_a_restarted_server_gets_a_fresh_stderr_pipe_and_no_descriptor_leaks(
    leaky_env: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO)
    server = McpServer.model_validate(
        stdio_server(
            command=[sys.executable, FIXTURE_SERVER, "--stderr"],
            tools=[
                {"name": "deploy_history", "read_only": True},
                {"name": "exit_server", "read_only": True},
            ],
        )
    )
    before = set(os.listdir("/proc/self/fd"))
    source = McpSource(server, environ=os.environ)
    assert len(await source.discover()) == 2
    crashed = await source.call("exit_server", {}, timeout_seconds=20)
    again = await source.call("deploy_history", {"service": "a", "lines": 1}, timeout_seconds=20)
    await source.aclose()
    assert (crashed.status, again.status) == ("error", "ok")
    assert set(os.listdir("/proc/self/fd")) <= before
    lines = [r.mcp_stderr for r in stderr_records(caplog, "fixture") if hasattr(r, "mcp_stderr")]
    assert lines.count(redact_text(LEAKY["text"])) >= 2  # one per session (and retry)
    err = capfd.readouterr().err
    for secret in LEAKY["secrets"]:
        assert secret not in caplog.text
        assert secret not in err
