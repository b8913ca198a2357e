"""`incident-bot tools list|run`: backends' health within the tool timeout, and one tool run
as the model would see it."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli_tools import tools_list, tools_run
from bot.settings import Settings
from tests.processes import bot_env, run_bot
from tests.servers import free_port
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers: a hung backend."""
    writers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_list_shows_an_unreachable_prometheus_with_the_reason_in_time(
    silent_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(PROMETHEUS_URL=silent_server, INCIDENT_BOT_TOOL_TIMEOUT=1)
    started = time.monotonic()
    code = await tools_list(argparse.Namespace(json=True), settings)
    elapsed = time.monotonic() - started
    assert code == 1
    assert elapsed < 1.8  # the tool timeout, plus closing the session
    rows = {r["tool"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["prometheus.query"]["state"] == "unreachable"
    assert rows["prometheus.query"]["reason"] == "Prometheus did not answer within 1s"
    assert rows["logs.query"] == {
        "tool": "logs.query",
        "toolset": "logs",
        "state": "not configured",
        "reason": "LOKI_URL is unset",
    }

    refused = Settings(
        PROMETHEUS_URL=f"http://127.0.0.1:{free_port()}", INCIDENT_BOT_TOOL_TIMEOUT=1
    )
    started = time.monotonic()
    await tools_list(argparse.Namespace(json=False), refused)
    assert time.monotonic() - started < 1.8
    line = next(
        x for x in capsys.readouterr().out.splitlines() if x.startswith("prometheus.query ")
    )
    assert "unreachable" in line and "cannot reach Prometheus at http://127.0.0.1:" in line


async def test_list_and_run_against_the_sandbox_as_a_user_does(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = bot_env(
        PROMETHEUS_URL=sandbox.url,
        ALERTMANAGER_URL=sandbox.url,
        LOKI_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
    )
    code, out, err = await run_bot("tools", "list", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "kubernetes.pods" in out and "Kubernetes v1.30.0-sandbox" in out
    assert "unreachable" not in out and "not configured" not in out
    code, out, err = await run_bot(
        "tools", "run", "kubernetes.pods", "--input", '{"namespace": "shop"}', env=env, cwd=tmp_path
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "ok" and len(result["data"]) == 3


async def test_run_reports_bad_input_and_errors(
    sandbox: RunningSandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(PROMETHEUS_URL=sandbox.url)
    bad = argparse.Namespace(name="prometheus_query", input='{"minutes": 5}')
    assert await tools_run(bad, settings) == 1
    assert "query: Field required" in capsys.readouterr().err
    syntax = argparse.Namespace(name="prometheus.query", input='{"query": "sum(up"}')
    assert await tools_run(syntax, settings) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "error"
    unknown = argparse.Namespace(name="kubectl.exec", input="{}")
    assert await tools_run(unknown, settings) == 1
    assert "no tool 'kubectl.exec'" in capsys.readouterr().err
