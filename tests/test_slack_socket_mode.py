"""`incident-bot serve --socket-mode` against a local Socket Mode server: it opens a
connection with the app token and answers `/incident` envelopes over the WebSocket."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import aiohttp
import pytest

from bot.models import Run
from bot.store import RunStore
from tests.processes import bot_env as process_env
from tests.processes import eventually, start_bot
from tests.servers import free_port
from tests.slack_helpers import SHOP_CHANNEL, bot_env
from tests.slack_server import APP_TOKEN, SlackServer, slash_command

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")


@pytest.mark.slow
async def test_socket_mode_connects_and_handles_commands(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore, tmp_path: Path
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    del env["SLACK_SIGNING_SECRET"]  # Socket Mode needs no public URL and no signature
    port = free_port()
    process = await start_bot(
        "serve",
        "--socket-mode",
        env=process_env(
            **env,
            SLACK_APP_TOKEN=APP_TOKEN,
            INCIDENT_BOT_HOST="127.0.0.1",
            INCIDENT_BOT_PORT=str(port),
            INCIDENT_BOT_WORKERS="0",
        ),
        cwd=tmp_path,
    )
    try:
        await slack.until(lambda: slack.named("socket.hello"), within=30)
        [opened] = slack.named("apps.connections.open")
        assert opened.status == 200

        help_id = await slack.send_envelope(
            "slash_commands",
            slash_command("help", user="U1", channel=SHOP_CHANNEL, response_url="unused"),
        )
        ack = await slack.envelope_ack(help_id)
        assert "/incident investigate" in ack["payload"]["text"]
        assert ack["payload"]["response_type"] == "ephemeral"

        investigate_id = await slack.send_envelope(
            "slash_commands",
            slash_command(
                "investigate is checkout ok? namespace=shop",
                user="U1",
                channel=SHOP_CHANNEL,
                response_url="unused",
            ),
        )
        assert "Investigating" in (await slack.envelope_ack(investigate_id))["payload"]["text"]
        runs = await eventually(lambda: _runs(store), within=10)
        assert runs[0].alert.labels == {"namespace": "shop"}
        await slack.until(lambda: slack.roots(SHOP_CHANNEL))

        # The HTTP endpoint is not open in Socket Mode.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/slack/events", data="{}") as r,
        ):
            assert r.status == 404
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0


async def _runs(store: RunStore) -> list[Run] | None:
    runs = await store.list_runs()
    return runs or None
