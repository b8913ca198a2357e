"""The Bolt app in the bot's aiohttp app, against the local Slack, with signed requests:
signatures, `/incident`, `@mention` and its retries, and the 429 retry of Web API calls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.models import Run, RunStatus
from bot.slack.refs import MessageRefs
from bot.store import RunStore
from tests.slack_helpers import (
    APPROVER,
    OUTSIDER,
    SHOP_CHANNEL,
    bot_app,
    bot_env,
)
from tests.slack_server import SlackServer, app_mention, form, signed, slash_command

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

URL_VERIFICATION = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})


async def test_a_signed_request_passes_and_a_forged_or_old_one_gets_401(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        status, body, _ = await bot.send(URL_VERIFICATION, json_body=True)
        assert (status, json.loads(body)) == (200, {"challenge": "c-123"})

        forged = signed(URL_VERIFICATION, secret="not-the-secret")
        status, _, _ = await bot.send(URL_VERIFICATION, json_body=True, headers=forged)
        assert status == 401

        old = signed(URL_VERIFICATION, age=5 * 60 + 30)
        status, _, _ = await bot.send(URL_VERIFICATION, json_body=True, headers=old)
        assert status == 401

        other_body = signed(URL_VERIFICATION.replace("c-123", "c-999"))
        status, _, _ = await bot.send(URL_VERIFICATION, json_body=True, headers=other_body)
        assert status == 401

        async with bot.client.post(
            "/slack/events",
            data=URL_VERIFICATION,
            headers={"Content-Type": "application/json"},
        ) as unsigned:
            assert unsigned.status == 401
    assert not slack.named("chat.postMessage")


@pytest.mark.parametrize("text", ["help", "", "frobnicate now", "status", "investigate"])
async def test_help_and_anything_else_answer_with_help_ephemerally(
    redis_url: str, slack: SlackServer, policy_dir: Path, text: str
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        status, body = await bot.command(slack, text, user=OUTSIDER)

    assert status == 200
    answer = json.loads(body)
    assert "/incident investigate" in answer["text"]
    assert answer.get("response_type", "ephemeral") == "ephemeral"


async def test_investigate_list_status_and_cancel(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        status, body = await bot.command(
            slack, "investigate why does checkout fail? namespace=shop service=checkout", user="U1"
        )
        assert status == 200
        assert "Investigating" in json.loads(body)["text"]
        # The run is started after the ack; its root message is posted last.
        await slack.until(lambda: slack.roots(SHOP_CHANNEL))
        [run] = await store.list_runs()
        assert run.trigger == "slack"
        assert run.alert.source == "slack"
        assert run.alert.labels == {"namespace": "shop", "service": "checkout"}
        assert run.alert.annotations["requested_by"] == "U1"
        refs = await MessageRefs(store.redis, prefix="incident-bot:", retention_seconds=60).load(
            run.id
        )
        assert refs["channel"] == SHOP_CHANNEL
        assert await store.redis.xlen("incident-bot:queue") == 1

        await bot.command(slack, "list", user="U1")
        listed = await slack.until(lambda: [e for e in slack.ephemeral if run.id in json.dumps(e)])
        assert listed[0]["response_type"] == "ephemeral"

        await bot.command(slack, f"status {run.id}", user="U1")
        await slack.until(lambda: len(slack.ephemeral) == 2)
        assert "Queued" in json.dumps(slack.ephemeral[-1], ensure_ascii=False)

        # Only the policy's approvers of the run's actions (APPROVER, @sre) may cancel it.
        await bot.command(slack, f"cancel {run.id}", user=APPROVER)
        await slack.until(lambda: len(slack.ephemeral) == 3)
        assert "cancelled" in slack.ephemeral[-1]["text"]
        assert (await store.load(run.id)).status is RunStatus.CANCELLED
        # The run's thread shows it: its root message was posted in the shop channel.
        await slack.until(lambda: "Cancelled" in slack.roots(SHOP_CHANNEL)[0].all_text())
        assert len(slack.roots(SHOP_CHANNEL)) == 1

        await bot.command(slack, f"cancel {run.id}", user=APPROVER)
        await slack.until(lambda: len(slack.ephemeral) == 4)
        assert "cannot be cancelled" in slack.ephemeral[-1]["text"]


async def test_a_mention_delivered_three_times_starts_one_investigation_with_the_thread(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        # A thread with a message in it; the mention is a reply there.
        await bot.deps.slack.chat_postMessage(channel=SHOP_CHANNEL, text="checkout 500s again")
        [thread] = slack.roots(SHOP_CHANNEL)
        body = app_mention(
            "what broke checkout? namespace=shop",
            event_id="Ev0001",
            user="U2",
            channel=SHOP_CHANNEL,
            ts="1700000001.000001",
            thread_ts=thread.ts,
        )
        first = await bot.send(body, json_body=True)
        retries = await asyncio.gather(
            *(
                bot.send(
                    body,
                    json_body=True,
                    headers={"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_timeout"},
                )
                for n in (1, 2)
            )
        )
        assert [r[0] for r in (first, *retries)] == [200, 200, 200]

        run = await _single_run(store)
        assert run.alert.title.startswith("what broke checkout?")
        assert run.alert.annotations["thread"].endswith("checkout 500s again")
        # Its thread is the one it was asked in.
        [root] = await slack.until(lambda: slack.thread(thread.ts) or None)
        assert root.channel == SHOP_CHANNEL
    assert await store.redis.xlen("incident-bot:queue") == 1


async def _single_run(store: RunStore) -> Run:
    runs = await store.list_runs()
    assert len(runs) == 1, runs
    return runs[0]


async def test_a_429_is_retried_after_retry_after_and_counted(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        slack.rate_limit("chat.postMessage", times=1, retry_after=1)
        answer = await bot.deps.slack.chat_postMessage(channel=SHOP_CHANNEL, text="hello")
        assert answer["ok"]
        limited, posted = slack.named("chat.postMessage")
        assert (limited.status, posted.status) == (429, 200)
        assert posted.at - limited.at >= 1.0
        async with bot.client.get("/metrics") as r:
            metrics = await r.text()
    assert (
        'incident_bot_slack_api_calls_total{method="chat.postMessage",outcome="rate_limited"} 1.0'
        in metrics
    )
    assert 'incident_bot_slack_api_calls_total{method="chat.postMessage",outcome="ok"} 1.0' in (
        metrics
    )


async def test_a_wrong_bot_token_is_refused_by_slack(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None) | {"SLACK_BOT_TOKEN": "xoxb-wrong"}
    async with bot_app(env) as bot:
        fields = slash_command("list", user="U1", channel=SHOP_CHANNEL, response_url="x")
        status, _, _ = await bot.send(form(fields))
    # Bolt's authorization (auth.test) fails: the command is not run.
    assert status == 200
    assert [c.method for c in slack.calls] == ["auth.test"]
    assert not slack.ephemeral
