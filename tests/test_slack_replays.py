"""Each Slack delivery acts once: a signed request sent again unchanged (a replay within
the signature window) starts or changes nothing more, and an event whose handling failed
is answered 503 and handled on Slack's retry."""

from __future__ import annotations

import json
from pathlib import Path

from bot.models import Proposal, Run, RunStatus
from bot.store import RunStore
from tests.factories import run as queued_run
from tests.slack_helpers import APPROVER, SHOP_CHANNEL, SlackBot, bot_app, bot_env
from tests.slack_server import SlackServer, app_mention, form, signed, slash_command

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

QUEUE = "incident-bot:queue"


async def _replay(bot: SlackBot, body: str, *, json_body: bool = False) -> list[int]:
    """Send one signed request twice: the same body, timestamp and signature."""
    headers = signed(body)
    first = await bot.send(body, json_body=json_body, headers=headers)
    again = await bot.send(body, json_body=json_body, headers=headers)
    return [first[0], again[0]]


async def test_a_replayed_investigate_command_starts_one_run(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        fields = slash_command(
            "investigate is checkout down? namespace=shop",
            user=APPROVER,
            channel=SHOP_CHANNEL,
            response_url=slack.response_url(),
        )
        assert await _replay(bot, form(fields)) == [200, 200]
    # Leaving the app waited for the work both requests handed off.
    runs = await store.list_runs()
    assert len(runs) == 1, runs
    assert await store.redis.xlen(QUEUE) == 1
    assert len(slack.roots(SHOP_CHANNEL)) == 1


async def test_a_replayed_mention_starts_one_run(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        body = app_mention(
            "is checkout down? namespace=shop",
            event_id="Ev0REPLAY",
            user=APPROVER,
            channel=SHOP_CHANNEL,
            ts="1700000002.000001",
        )
        assert await _replay(bot, body, json_body=True) == [200, 200]
        assert len(await store.list_runs()) == 1  # answered once handled: no wait needed
    assert await store.redis.xlen(QUEUE) == 1


async def _awaiting_approval(store: RunStore) -> Run:
    proposal = Proposal(
        action="kubernetes.rollback",
        arguments={"namespace": "shop", "deployment": "checkout", "to_revision": 1},
        target="shop/checkout",
        rationale="the last deploy broke checkout",
        risk="medium",
        expected_effect="5xx ratio back under 1%",
    )
    run = queued_run(namespace="shop", service="checkout").model_copy(
        update={"status": RunStatus.AWAITING_APPROVAL, "proposal": proposal}
    )
    return await store.create(run)


def _click(run: Run, action_id: str, slack: SlackServer) -> str:
    assert run.proposal is not None
    value = json.dumps({"run": run.id, "proposal": run.proposal.id})
    payload = {
        "type": "block_actions",
        "user": {"id": APPROVER, "username": "approver"},
        "trigger_id": "trigger.click-0001",
        "channel": {"id": SHOP_CHANNEL},
        "response_url": slack.response_url(),
        "actions": [{"type": "button", "action_id": action_id, "value": value}],
    }
    return form({"payload": json.dumps(payload)})


async def test_a_replayed_approve_click_records_one_decision_and_answers_once(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    run = await _awaiting_approval(store)
    assert run.proposal is not None
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        assert await _replay(bot, _click(run, "approve", slack)) == [200, 200]
    [decision] = await store.decisions(run.id, run.proposal.id)
    assert (decision.user, decision.verdict) == (APPROVER, "approve")
    assert await store.redis.xlen(f"{QUEUE}:resume") == 1  # one resume
    # Acted on once: the replay was not even told "you already decided".
    assert slack.ephemeral == []


async def test_a_replayed_reject_click_opens_one_modal(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    run = await _awaiting_approval(store)
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        assert await _replay(bot, _click(run, "reject", slack)) == [200, 200]
    assert len(slack.named("views.open")) == 1


async def test_a_mention_whose_handling_failed_is_handled_on_slacks_retry(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        await bot.deps.slack.chat_postMessage(channel=SHOP_CHANNEL, text="checkout 500s again")
        [thread] = slack.roots(SHOP_CHANNEL)
        body = app_mention(
            "what broke checkout? namespace=shop",
            event_id="Ev0FAIL",
            user=APPROVER,
            channel=SHOP_CHANNEL,
            ts="1700000003.000001",
            thread_ts=thread.ts,
        )
        # Slack's Web API fails reading the thread: the event is not handled, and the
        # answer tells Slack to deliver it again.
        slack.fail("conversations.replies", "internal_error")
        status, answer, _ = await bot.send(body, json_body=True)
        assert status == 503, answer
        assert await store.list_runs() == []

        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_error"}
        status, _, _ = await bot.send(body, json_body=True, headers=retry)
        assert status == 200
        [run] = await store.list_runs()
        assert run.alert.annotations["thread"].endswith("checkout 500s again")

        # Its second retry (Slack did not see the 200 in time) is dropped.
        retry = {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "http_timeout"}
        status, _, _ = await bot.send(body, json_body=True, headers=retry)
        assert status == 200
        assert len(await store.list_runs()) == 1
    assert len(slack.named("conversations.replies")) == 2
    assert await store.redis.xlen(QUEUE) == 1


async def test_a_retry_after_the_done_mark_was_lost_continues_the_same_run(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        body = app_mention(
            "is checkout down? namespace=shop",
            event_id="Ev0LOST",
            user=APPROVER,
            channel=SHOP_CHANNEL,
            ts="1700000004.000001",
        )
        assert (await bot.send(body, json_body=True))[0] == 200
        [run] = await store.list_runs()
        # The replica handled it but died before marking it done (the mark is gone).
        assert await store.redis.delete("incident-bot:slack:event:Ev0LOST") == 1
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert (await bot.send(body, json_body=True, headers=retry))[0] == 200
        assert [r.id for r in await store.list_runs()] == [run.id]
    # One status message for the run, in the thread of the mention.
    [status] = slack.thread("1700000004.000001")
    assert run.id in status.all_text()
