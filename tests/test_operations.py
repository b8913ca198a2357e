"""Operating the service: `serve` logs at the level from its settings (INFO unless set,
as JSON lines on stderr; `--log-level` overrides it), and the `incident_bot_run_steps`
histogram counts each finished investigation's transcript steps on /metrics."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.models import RunStatus
from bot.store import RunStore
from tests.processes import bot_env, eventually, run_bot, start_bot
from tests.replica_helpers import TOKEN, alert_body
from tests.servers import free_port
from tests.slack_helpers import bot_app, run_in
from tests.slack_helpers import bot_env as slack_bot_env
from tests.slack_server import SlackServer
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")


async def _serve_one_alert(tmp_path: Path, redis_url: str, *flags: str, **env: str) -> list[Any]:
    """Start `serve` (with `flags` before the command), post one alert, stop it with
    SIGTERM; returns the JSON objects it wrote to stderr."""
    port = free_port()
    process_env = bot_env(
        REDIS_URL=redis_url,
        INCIDENT_BOT_HOST="127.0.0.1",
        INCIDENT_BOT_PORT=str(port),
        INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN,
        INCIDENT_BOT_WORKERS="0",  # the alert is admitted and queued; nothing drives it
    )
    del process_env["INCIDENT_BOT_LOG_LEVEL"]
    process = await start_bot(*flags, "serve", env=process_env | env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:

        async def answered() -> int | None:
            if process.returncode is not None:
                raise RuntimeError(f"serve exited with {process.returncode}")
            try:
                async with http.post(
                    f"{url}/webhooks/alertmanager",
                    json=alert_body(1),
                    headers={"Authorization": f"Bearer {TOKEN}"},
                ) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                return None

        assert await eventually(answered, within=30) == 202
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]


async def test_serve_logs_info_as_json_on_stderr_by_default(tmp_path: Path, redis_url: str) -> None:
    lines = await _serve_one_alert(tmp_path, redis_url)
    admitted = [e for e in lines if e["message"] == "alerts admitted"]
    assert [(e["level"], e["status"], e["source"]) for e in admitted] == [
        ("info", 202, "alertmanager")
    ]
    assert admitted[0]["run_id"].startswith("run-")
    assert any(e["message"] == "shutting down" and e["level"] == "info" for e in lines)


async def test_the_log_level_flag_overrides_the_setting(tmp_path: Path, redis_url: str) -> None:
    lines = await _serve_one_alert(
        tmp_path, redis_url, "--log-level", "warning", INCIDENT_BOT_LOG_LEVEL="debug"
    )
    assert [e for e in lines if e["level"] in ("info", "debug")] == []
    # The setting alone decides when no flag is given.
    lines = await _serve_one_alert(tmp_path, redis_url, INCIDENT_BOT_LOG_LEVEL="error")
    assert [e for e in lines if e["level"] != "error"] == []


@pytest.mark.slow
async def test_the_demo_prints_for_a_person_and_logs_only_warnings_unless_asked(
    tmp_path: Path,
) -> None:
    env = bot_env()
    del env["INCIDENT_BOT_LOG_LEVEL"]
    code, out, err = await run_bot("demo", "--yes", env=env, cwd=tmp_path)
    assert code == 0, err
    assert "[resolved]" in out
    assert err == ""  # the planner taking over is an INFO line, and not shown here
    code, out, err = await run_bot(
        "demo", "--yes", env=env | {"INCIDENT_BOT_LOG_LEVEL": "info"}, cwd=tmp_path
    )
    assert code == 0, err
    assert "the runbook planner takes over" in [
        json.loads(line)["message"] for line in err.splitlines()
    ]


def _samples(page: str, name: str) -> dict[str, float]:
    """The samples of metric `name` on a /metrics page, by sample name."""
    found = {}
    for family in text_string_to_metric_families(page):
        if family.name == name:
            found |= {s.name: s.value for s in family.samples if not s.labels.get("le")}
    return found


async def test_a_finished_investigation_is_observed_in_the_run_steps_histogram(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = slack_bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        async with bot.client.get("/metrics") as response:
            before = _samples(await response.text(), "incident_bot_run_steps")
        run_id = (await bot.alert())["run_id"]
        run = await run_in(store, run_id, RunStatus.AWAITING_APPROVAL)
        async with bot.client.get("/metrics") as response:
            after = _samples(await response.text(), "incident_bot_run_steps")
    assert before["incident_bot_run_steps_count"] == 0
    assert run.steps > 2
    assert after["incident_bot_run_steps_count"] == 1
    assert after["incident_bot_run_steps_sum"] == run.steps
