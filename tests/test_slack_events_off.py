"""`INCIDENT_BOT_SLACK_EVENTS=false`, as on the chart's intake replicas: the process takes
no Slack events (`POST /slack/events` answers 404 saying so and stores nothing; Socket
Mode is not connected), needs neither the signing secret nor the app token, and still
takes the webhooks and posts through the Web API. True, the default, is as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.errors import ConfigError
from bot.settings import Settings
from bot.slack.app import NO_EVENTS, SLACK, events_mode
from bot.store import RunStore
from tests.factories import run as queued_run
from tests.slack_helpers import SHOP_CHANNEL, SlackBot, bot_app, bot_env
from tests.slack_server import APP_TOKEN, SlackServer, app_mention, signed

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

INVESTIGATE = "investigate why does checkout fail? namespace=shop service=checkout"


async def slack_marks(store: RunStore) -> list[str]:
    """The Redis marks of Slack deliveries acted on (triggers, events)."""
    return [key async for key in store.redis.scan_iter(match="incident-bot:slack:*")]


@pytest.mark.parametrize("events", ["true", "false"])
async def test_a_signed_command_is_taken_only_where_slack_events_are_on(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore, events: str
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    async with bot_app(env, INCIDENT_BOT_SLACK_EVENTS=events) as bot:
        status, body = await bot.command(slack, INVESTIGATE, user="U1")
        if events == "true":  # as before: acked, and the run started
            assert status == 200
            assert "Investigating" in json.loads(body)["text"]
            await slack.until(lambda: slack.roots(SHOP_CHANNEL))
            assert len(await store.list_runs()) == 1
            assert await slack_marks(store)
            return
        assert (status, json.loads(body)) == (404, {"error": NO_EVENTS})
        mention = app_mention(
            "<@UBOT> investigate checkout",
            event_id="Ev1",
            user="U1",
            channel=SHOP_CHANNEL,
            ts="1.0",
        )
        status, body, _ = await bot.send(mention, json_body=True)
        assert (status, json.loads(body)) == (404, {"error": NO_EVENTS})
        # Unsigned or forged makes no difference: nothing here reads Slack's requests.
        forged = signed(mention, secret="not-the-secret")
        status, _, _ = await bot.send(mention, json_body=True, headers=forged)
        assert status == 404
    assert await store.list_runs() == []
    assert await slack_marks(store) == []
    assert slack.ephemeral == [] and not slack.named("chat.postMessage")


@pytest.mark.parametrize("events", ["true", "false"])
async def test_socket_mode_connects_only_where_slack_events_are_on(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore, events: str
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    del env["SLACK_SIGNING_SECRET"]  # Socket Mode needs no signature
    socket_mode = {"SLACK_APP_TOKEN": APP_TOKEN, "INCIDENT_BOT_SLACK_SOCKET_MODE": "true"}
    async with bot_app(env | socket_mode, INCIDENT_BOT_SLACK_EVENTS=events) as bot:
        # The app starts once the connection is open: what it opened is known now.
        opened = slack.named("apps.connections.open")
        await bot.alert()  # the webhooks work either way
        if events == "true":
            assert len(opened) == 1
            await slack.until(lambda: slack.named("socket.hello"))
        else:
            assert opened == []
            assert not slack.named("socket.hello")
            status, body, _ = await bot.send("{}", json_body=True)
            assert (status, json.loads(body)) == (404, {"error": NO_EVENTS})
    assert len(await store.list_runs()) == 1


async def test_an_intake_replica_needs_no_slack_event_secrets_nor_kubernetes_and_still_posts(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    store: RunStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    del env["SLACK_SIGNING_SECRET"]
    # Taking events, it must have the signing secret (HTTP) or the app token (Socket Mode).
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        events_mode(Settings.model_validate(env))
    assert events_mode(Settings.model_validate(env | {"INCIDENT_BOT_SLACK_EVENTS": "0"})) is None
    # As the chart's intake pod: in a cluster, with no service account token mounted and
    # no kubeconfig.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    intake = {"INCIDENT_BOT_SLACK_EVENTS": "false", "INCIDENT_BOT_RESUME_WORKERS": "0"}
    async with bot_app(env | intake) as bot:
        assert await _ready(bot)
        run_id = (await bot.alert())["run_id"]
        assert [run.id for run in await store.list_runs()] == [run_id]
        # The Web API is there: threads are posted and updated (the sweeper's repairs,
        # resolved notes, pause lines).
        assert bot.client.app is not None
        await bot.client.app[SLACK].threads.show(await store.create(queued_run()))
        assert slack.roots(SHOP_CHANNEL)


async def _ready(bot: SlackBot) -> bool:
    async with bot.client.get("/readyz") as response:
        return response.status == 200


def test_the_setting_reads_as_a_boolean_and_defaults_to_true(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("INCIDENT_BOT_SLACK_EVENTS", raising=False)
    assert Settings().slack_events is True
    for off in ("false", "0", "no"):
        monkeypatch.setenv("INCIDENT_BOT_SLACK_EVENTS", off)
        assert Settings().slack_events is False
    monkeypatch.setenv("INCIDENT_BOT_SLACK_EVENTS", "sometimes")
    with pytest.raises(ValidationError, match="INCIDENT_BOT_SLACK_EVENTS"):
        Settings()
