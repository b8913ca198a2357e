"""The sweeper in real `serve` processes on one Redis, with the local Slack and the sandbox:
a proposal nobody decides expires once (two replicas) and releases its group; a queued
run whose entry was never written, a decision whose resume was never queued and a
proposal whose Slack post failed are repaired.

Faults are injected at the servers: Redis refuses `XADD` (an ACL rule) while a webhook
or a click is handled, and the local Slack fails `chat.postMessage`."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from bot.models import RunStatus
from bot.store import RunStore
from tests.processes import eventually
from tests.replica_helpers import Replica, alert_body, post_alert, start_replica
from tests.slack_helpers import (
    APPROVER,
    SHOP_CHANNEL,
    bot_env,
    proposal_in,
    run_in,
    sandbox_patches,
)
from tests.slack_server import SlackServer, block_action, signed
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

INTERVAL = 0.5  # INCIDENT_BOT_SWEEP_INTERVAL in these tests
TIMEOUT = 2.0  # INCIDENT_BOT_APPROVAL_TIMEOUT in the expiry test


def _env(
    redis_url: str, slack: SlackServer, policy_dir: Path, sandbox: RunningSandbox
) -> dict[str, str]:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    env.pop("INCIDENT_BOT_WEBHOOK_TOKEN")  # the replicas get their own
    return env | {"INCIDENT_BOT_WORKERS": "1", "INCIDENT_BOT_SWEEP_INTERVAL": str(INTERVAL)}


@asynccontextmanager
async def _replicas(n: int, tmp_path: Path, env: dict[str, str]) -> AsyncIterator[list[Replica]]:
    replicas = await asyncio.gather(*(start_replica(tmp_path, **env) for _ in range(n)))
    try:
        yield list(replicas)
    finally:
        for replica in replicas:
            replica.process.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                code = await asyncio.wait_for(replica.process.wait(), 30)
            except TimeoutError:
                replica.process.kill()
                code = await replica.process.wait()
            assert replica.process.stderr is not None
            errors = (await replica.process.stderr.read()).decode()
            assert code == 0, errors[-3000:]


@asynccontextmanager
async def _redis_refusing_xadd(redis_url: str) -> AsyncIterator[None]:
    """Redis answers every XADD (queue entries, audit events) with NOPERM meanwhile."""
    client = redis.from_url(redis_url)
    await client.execute_command("ACL", "SETUSER", "default", "-xadd")
    try:
        yield
    finally:
        await client.execute_command("ACL", "SETUSER", "default", "+xadd")
        await client.aclose()


async def _xadds_refused(store: RunStore) -> int:
    """How many XADDs Redis has refused (`rejected_calls`: the ACL refusal counts there)."""
    stats = await store.redis.info("commandstats")
    return int(stats.get("cmdstat_xadd", {}).get("rejected_calls", 0))


async def _click(http: aiohttp.ClientSession, replica: Replica, body: str) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    async with http.post(f"{replica.url}/slack/events", data=body, headers=headers) as r:
        await r.read()
        return r.status


async def _metric(http: aiohttp.ClientSession, replica: Replica, action: str) -> float:
    async with http.get(f"{replica.url}/metrics") as r:
        text = await r.text()
    found = re.search(
        rf'^incident_bot_sweeper_actions_total\{{action="{action}"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


async def _audit(store: RunStore, run_id: str, event: str) -> list[dict[str, object]]:
    return [e.data for e in await store.read_audit(run_id) if e.event == event]


@pytest.mark.slow
async def test_a_proposal_nobody_decides_expires_once_on_two_replicas_and_frees_its_group(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    env = _env(redis_url, slack, policy_dir, sandbox)
    env["INCIDENT_BOT_APPROVAL_TIMEOUT"] = str(TIMEOUT)
    async with _replicas(2, tmp_path, env) as replicas, aiohttp.ClientSession() as http:
        assert await post_alert(http, replicas[0], alert_body(5)) == 202
        proposal = await slack.until(lambda: proposal_in(slack), within=30)
        [run] = await store.list_runs()
        assert run.proposal is not None

        expired = await run_in(store, run.id, RunStatus.EXPIRED, within=30)
        late = (expired.updated_at - run.proposal.proposed_at).total_seconds() - TIMEOUT
        print(f"expired {late:.2f}s after the approval timeout (interval {INTERVAL}s)")
        assert late < 6 * INTERVAL + 2, late  # a few intervals, with room for a loaded VM

        # The proposal message lost its buttons and says whom it asked and that it expired.
        await slack.until(lambda: "approve" not in proposal.action_ids(), within=10)
        text = proposal.all_text()
        assert "Expired" in text and f"<@{APPROVER}>" in text and "@sre" in text
        assert f"Asked: <@{APPROVER}> or @sre; nothing was changed." in text

        async def audited() -> list[dict[str, object]] | None:
            return await _audit(store, run.id, "expired") or None

        expiries = await eventually(audited, within=10)
        assert len(expiries) == 1, expiries
        assert "UAPPROVER1" in str(expiries[0]["asked"])

        async def counted() -> list[float] | None:
            found = [await _metric(http, r, "expired") for r in replicas]
            return found if sum(found) else None

        assert sum(await eventually(counted, within=10)) == 1
        assert await store.action_record(run.id, run.proposal.id) is None

        # The group's next notification (same alerts, still firing) starts a new run.
        async with http.post(
            f"{replicas[1].url}/webhooks/alertmanager",
            json=alert_body(5),
            headers={"Authorization": "Bearer s3cret-webhook-token"},
        ) as answer:
            assert answer.status == 202
            admitted = await answer.json()
        assert admitted["outcome"] == "started" and admitted["run_id"] != run.id
        await run_in(store, admitted["run_id"], RunStatus.AWAITING_APPROVAL, within=30)

    assert await sandbox_patches(sandbox) == 0
    assert len(slack.roots(SHOP_CHANNEL)) == 2


@pytest.mark.slow
async def test_a_run_never_queued_and_a_decision_never_driven_are_repaired(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    async with (
        _replicas(1, tmp_path, _env(redis_url, slack, policy_dir, sandbox)) as [replica],
        aiohttp.ClientSession() as http,
    ):
        # The run is created, then its queue entry cannot be written: the webhook says
        # 503, and (Alertmanager not retrying) only the sweeper can get it driven.
        async with _redis_refusing_xadd(redis_url):
            assert await post_alert(http, replica, alert_body(8)) == 503
            [run] = await store.list_runs()
            assert run.status is RunStatus.QUEUED
        proposal = await slack.until(lambda: proposal_in(slack), within=30)
        await run_in(store, run.id, RunStatus.AWAITING_APPROVAL)
        [repair] = await _audit(store, run.id, "repaired")
        assert repair["why"] == "queued without a queue entry"

        async def nothing_queued() -> bool | None:  # the investigation's entry is acked
            return await store.redis.xlen("incident-bot:queue") == 0 or None

        # The investigation's drive has ended (it still writes audit events, XADDs, after
        # the proposal is posted): only the click's writes meet the refusal below.
        await eventually(nothing_queued, within=10)

        # The click's decision is recorded, then its resume cannot be queued.
        async with _redis_refusing_xadd(redis_url):
            refused_before = await _xadds_refused(store)
            body = block_action(
                proposal, "approve", user=APPROVER, response_url=slack.response_url()
            )
            assert await _click(http, replica, body) == 200

            async def recorded_and_refused() -> bool | None:
                current = await store.load(run.id)
                assert current.proposal is not None
                recorded = bool(await store.decisions(run.id, current.proposal.id))
                # The resume's XADD follows the decision: the refusal must have met it
                # before it is lifted, or the resume is queued and nothing needs repair.
                return (recorded and await _xadds_refused(store) > refused_before) or None

            await eventually(recorded_and_refused, within=10)
        assert await store.redis.xlen("incident-bot:queue:resume") == 0
        done = await run_in(store, run.id, RunStatus.RESOLVED, within=60)
        whys = [e["why"] for e in await _audit(store, run.id, "repaired")]
        assert whys == ["queued without a queue entry", "a decision its last drive did not see"]
        assert await _metric(http, replica, "requeued") == 2

    assert done.proposal is not None
    record = await store.action_record(run.id, done.proposal.id)
    assert record is not None and record.state == "succeeded"
    assert await sandbox_patches(sandbox) == 1


@pytest.mark.slow
async def test_a_proposal_whose_slack_post_failed_is_posted_by_the_sweeper(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    # Slack fails the proposal's post once (and nothing else); the listener gives up.
    slack.fail("chat.postMessage", "internal_error", times=1, text="Approval needed")
    async with (
        _replicas(1, tmp_path, _env(redis_url, slack, policy_dir, sandbox)) as [replica],
        aiohttp.ClientSession() as http,
    ):
        assert await post_alert(http, replica, alert_body(9)) == 202
        [root] = await slack.until(lambda: slack.roots(SHOP_CHANNEL), within=30)
        [run] = await store.list_runs()
        run = await run_in(store, run.id, RunStatus.AWAITING_APPROVAL)
        refused = await slack.until(
            lambda: [c for c in slack.named("chat.postMessage") if "Approval" in str(c.args)]
        )
        refused_at = refused[0].at

        proposal = await slack.until(lambda: proposal_in(slack), within=30)
        print(f"proposal posted {time.monotonic() - refused_at:.2f}s after its post failed")
        assert proposal.action_ids() == ["approve", "reject"]
        assert proposal.thread_ts == root.ts

        async def repaired() -> list[dict[str, object]] | None:
            return await _audit(store, run.id, "repaired") or None

        [repair] = await eventually(repaired, within=10)
        assert repair["why"] == "slack messages were never posted"
        assert run.proposal is not None
        assert repair["messages"] == [f"proposal:{run.proposal.id}"]
        assert await _metric(http, replica, "reposted") == 1
    assert len(slack.roots(SHOP_CHANNEL)) == 1
    assert len([m for m in slack.messages.values() if "approve" in m.action_ids()]) == 1
    assert (await store.load(run.id)).status is RunStatus.AWAITING_APPROVAL


@pytest.mark.slow
async def test_a_closing_message_whose_post_failed_is_posted_by_the_sweeper(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    # The run ends (approved, resolved), but Slack fails its closing reply once: the
    # thread would never say how it ended. The sweeper posts it.
    slack.fail("chat.postMessage", "internal_error", times=1, text="Resolved")
    async with (
        _replicas(1, tmp_path, _env(redis_url, slack, policy_dir, sandbox)) as [replica],
        aiohttp.ClientSession() as http,
    ):
        assert await post_alert(http, replica, alert_body(11)) == 202
        proposal = await slack.until(lambda: proposal_in(slack), within=30)
        [run] = await store.list_runs()
        body = block_action(proposal, "approve", user=APPROVER, response_url=slack.response_url())
        assert await _click(http, replica, body) == 200
        await run_in(store, run.id, RunStatus.RESOLVED, within=30)

        def closing() -> list[object]:
            return [m for m in slack.messages.values() if m.text.startswith("✅ Resolved")]

        [final] = await slack.until(closing, within=15)
        assert final.thread_ts == proposal.thread_ts

        async def repaired() -> list[dict[str, object]] | None:
            return await _audit(store, run.id, "repaired") or None

        [repair] = await eventually(repaired, within=10)
        assert repair["messages"] == ["final"]
