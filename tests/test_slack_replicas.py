"""20 concurrent Approve clicks, from approvers and others, spread over two `serve`
processes on one Redis: one decision recorded, one execution, an answer for everyone."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from bot.models import RunStatus
from bot.store import RunStore
from tests.replica_helpers import Replica, alert_body, post_alert, start_replica
from tests.slack_helpers import (
    APPROVER,
    OUTSIDER,
    SHOP_CHANNEL,
    SRE_MEMBER,
    bot_env,
    proposal_in,
    run_in,
    sandbox_patches,
)
from tests.slack_server import SlackServer, block_action, signed
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

CLICKERS = [APPROVER] * 6 + [SRE_MEMBER] * 6 + ["USRE00002"] * 4 + [OUTSIDER] * 4


async def _click(
    http: aiohttp.ClientSession, replica: Replica, slack: SlackServer, body: str
) -> tuple[int, float]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    started = time.monotonic()
    async with http.post(f"{replica.url}/slack/events", data=body, headers=headers) as r:
        await r.read()
        return r.status, time.monotonic() - started


@pytest.mark.slow
async def test_twenty_concurrent_clicks_on_two_replicas_record_one_decision_and_run_once(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    env.pop("INCIDENT_BOT_WEBHOOK_TOKEN")  # the replicas get their own
    env["INCIDENT_BOT_WORKERS"] = "2"
    replicas = await asyncio.gather(start_replica(tmp_path, **env), start_replica(tmp_path, **env))
    try:
        async with aiohttp.ClientSession() as http:
            assert await post_alert(http, replicas[0], alert_body(7)) == 202
            proposal = await slack.until(lambda: proposal_in(slack), within=30)
            [run] = await store.list_runs()
            await run_in(store, run.id, RunStatus.AWAITING_APPROVAL)

            order = itertools.cycle(replicas)
            bodies = [
                block_action(proposal, "approve", user=user, response_url=slack.response_url())
                for user in CLICKERS
            ]
            answers = await asyncio.gather(
                *(_click(http, next(order), slack, body) for body in bodies)
            )
            assert {status for status, _ in answers} == {200}
            assert max(seconds for _, seconds in answers) < 1.5, answers

            run = await run_in(store, run.id, RunStatus.RESOLVED, within=60)
            # Everyone whose click did not count was told why, ephemerally.
            await slack.until(lambda: len(slack.ephemeral) == len(CLICKERS) - 1)
            await slack.until(lambda: "Resolved" in slack.roots(SHOP_CHANNEL)[0].all_text())
    finally:
        for replica in replicas:
            replica.process.send_signal(signal.SIGTERM)
        for replica in replicas:
            assert await asyncio.wait_for(replica.process.wait(), 30) == 0

    assert run.proposal is not None
    [decision] = await store.decisions(run.id, run.proposal.id)
    assert decision.user in (APPROVER, SRE_MEMBER, "USRE00002")
    assert await sandbox_patches(sandbox) == 1
    texts = [e["text"] for e in slack.ephemeral]
    # An outsider is told the policy's approvers, or (once the run moved on) that the
    # proposal was decided; every approver but one, that it was decided.
    refused = sum("may not decide" in t for t in texts)
    assert refused <= CLICKERS.count(OUTSIDER)
    assert sum("already decided" in t for t in texts) == len(CLICKERS) - 1 - refused
    assert all(e["response_type"] == "ephemeral" for e in slack.ephemeral)
    assert len(slack.roots(SHOP_CHANNEL)) == 1
    assert "Resolved" in slack.roots(SHOP_CHANNEL)[0].all_text()
