"""A listener whose work fails after its ack tells the person, ephemerally, instead of
leaving Slack showing nothing: failures made for real, at the wire (the local Slack
answering an error) or by stopping Redis."""

from __future__ import annotations

from pathlib import Path

from bot.models import RunStatus
from bot.store import RunStore
from tests.slack_helpers import (
    SRE_MEMBER,
    bot_app,
    bot_env,
    proposed,
    run_in,
)
from tests.slack_server import SlackServer
from tests.test_redis_outage import RedisProcess
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

FAILED = "could not finish it"


async def test_an_approve_click_whose_group_lookup_fails_tells_the_clicker(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id, proposal = await proposed(bot, slack, store)

        slack.fail("usergroups.list")  # who is in @sre cannot be asked, once
        status, _ = await bot.click(slack, proposal, "approve", user=SRE_MEMBER)
        assert status == 200
        [told] = await slack.until(lambda: slack.ephemeral)
        assert told["response_type"] == "ephemeral" and told["replace_original"] is False
        assert FAILED in told["text"] and "approval" in told["text"]
        assert "SlackApiError" in told["text"]
        run = await store.load(run_id)
        assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
        assert await store.decisions(run_id, run.proposal.id) == []

        # As told, the person clicks again once Slack answers: the decision counts.
        status, _ = await bot.click(slack, proposal, "approve", user=SRE_MEMBER)
        assert status == 200
        await run_in(store, run_id, RunStatus.RESOLVED, within=60)
    [decision] = await store.decisions(run_id, run.proposal.id)
    assert decision.user == SRE_MEMBER
    assert len(slack.ephemeral) == 1


async def test_a_command_acked_before_redis_stopped_tells_the_person(
    slack: SlackServer, policy_dir: Path, tmp_path: Path
) -> None:
    redis_server = RedisProcess(tmp_path)
    redis_server.start()
    try:
        env = bot_env(redis_server.url, slack, policy_dir, None)
        async with bot_app(env) as bot:
            redis_server.stop()
            status, _ = await bot.command(slack, "status run-123", user=SRE_MEMBER)
            assert status == 200  # acked: nothing before the ack needs Redis
            [told] = await slack.until(lambda: slack.ephemeral)
            assert told["response_type"] == "ephemeral"
            assert FAILED in told["text"] and "/incident status" in told["text"]
            assert "ConnectionError" in told["text"]
            redis_server.start()  # the app closes its clients against a live server
    finally:
        if redis_server.running:
            redis_server.stop()
