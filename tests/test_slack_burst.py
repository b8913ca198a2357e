"""A burst: 300 signed Approve clicks from 300 approvers at once, over two `serve`
processes on one Redis. Every click is answered 2xx within 3 s, one decision is
recorded and the rollback runs once; the others are told, ephemerally, that it was
decided. The Redis pools wait for a free connection instead of failing the click."""

from __future__ import annotations

import asyncio
import itertools
import signal
import statistics
import time
from pathlib import Path

import aiohttp
import pytest

from bot.models import RunStatus
from bot.store import RunStore
from tests.replica_helpers import Replica, alert_body, post_alert, start_replica
from tests.slack_helpers import bot_env, proposal_in, run_in, sandbox_patches
from tests.slack_server import SlackServer, block_action, signed
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

# Members of @sre, whom the test policy lets approve a rollback in `shop`.
CLICKERS = [f"UBURST{n:04d}" for n in range(300)]


async def _click(http: aiohttp.ClientSession, replica: Replica, body: str) -> tuple[int, float]:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    started = time.monotonic()
    async with http.post(f"{replica.url}/slack/events", data=body, headers=headers) as r:
        await r.read()
        return r.status, time.monotonic() - started


@pytest.mark.slow
async def test_three_hundred_clicks_at_once_are_all_answered_and_act_once(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    slack.usergroups["S0SRE0001"] = ("sre", CLICKERS)
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    env.pop("INCIDENT_BOT_WEBHOOK_TOKEN")  # the replicas get their own
    env["INCIDENT_BOT_WORKERS"] = "2"
    replicas = await asyncio.gather(start_replica(tmp_path, **env), start_replica(tmp_path, **env))
    try:
        # No client-side cap on connections: all 300 requests leave at once.
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            assert await post_alert(http, replicas[0], alert_body(7)) == 202
            proposal = await slack.until(lambda: proposal_in(slack), within=30)
            [run] = await store.list_runs()
            await run_in(store, run.id, RunStatus.AWAITING_APPROVAL)

            order = itertools.cycle(replicas)
            bodies = [
                block_action(proposal, "approve", user=user, response_url=slack.response_url())
                for user in CLICKERS
            ]
            answers = await asyncio.gather(*(_click(http, next(order), body) for body in bodies))
            seconds = sorted(s for _, s in answers)
            p50 = statistics.median(seconds)
            p99 = seconds[int(len(seconds) * 0.99) - 1]
            print(
                f"\n{len(answers)} clicks: ack p50 {p50 * 1000:.0f} ms, "
                f"p99 {p99 * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms"
            )
            statuses = [status for status, _ in answers]
            assert all(200 <= s < 300 for s in statuses), sorted(set(statuses))
            assert seconds[-1] < 3.0, seconds[-5:]

            run = await run_in(store, run.id, RunStatus.RESOLVED, within=60)
            # Everyone whose click did not count was told, ephemerally.
            await slack.until(lambda: len(slack.ephemeral) == len(CLICKERS) - 1, within=60)
    finally:
        for replica in replicas:
            replica.process.send_signal(signal.SIGTERM)
        for replica in replicas:
            assert await asyncio.wait_for(replica.process.wait(), 30) == 0

    assert run.proposal is not None
    [decision] = await store.decisions(run.id, run.proposal.id)
    assert decision.user in CLICKERS
    assert await sandbox_patches(sandbox) == 1
    texts = [e["text"] for e in slack.ephemeral]
    assert all("already decided" in t for t in texts), {t for t in texts}
