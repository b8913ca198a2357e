"""The kill switch across two `serve` processes on one Redis: `/incident pause` handled by
one replica stops the investigation the other is driving before its next step, and
refuses an Approve click; `/incident resume` lets the stopped run finish from its
checkpoint and the refused proposal be approved and executed once. (`incident-bot
pause|resume` are tested on their own in `test_pause.py`.)"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.models import RunStatus
from bot.queue import WorkQueue
from bot.store import RunStore
from tests.anthropic_server import (
    API_KEY,
    RATIO_QUERY,
    Exchange,
    ScriptedAnthropic,
    call,
    hold,
    rollback_script,
    tool_result,
    tool_use,
)
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
from tests.slack_server import SlackServer, block_action, form, signed, slash_command
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

PAUSE_LINE = f"Paused by <@{APPROVER}>"


def _script(held: asyncio.Event) -> list[Exchange]:
    """Run B investigates and proposes the rollback; run A's first call is held (A is
    mid-investigation), and after the resume A reads its tool result and concludes."""
    return [
        *rollback_script(),
        Exchange(
            hold(tool_use(call("toolu_a", "prometheus_query", {"query": RATIO_QUERY})), held),
            note="A: held while the bot is paused",
        ),
        Exchange(
            tool_use(call("toolu_a_done", "conclude", {"summary": "B's rollback covers it."})),
            expect=[tool_result("toolu_a", contains="0.12")],
            note="A: after the resume",
        ),
    ]


async def _post(http: aiohttp.ClientSession, replica: Replica, body: str) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **signed(body)}
    async with http.post(f"{replica.url}/slack/events", data=body, headers=headers) as r:
        await r.read()
        return r.status


async def _answer(slack: SlackServer, contains: str) -> dict[str, Any]:
    """The ephemeral answer that says `contains`."""
    found: dict[str, Any] = await slack.until(
        lambda: next((e for e in slack.ephemeral if contains in str(e.get("text"))), None)
    )
    return found


def _roots_show(slack: SlackServer, shown: bool) -> bool:
    roots = slack.roots(SHOP_CHANNEL)
    return len(roots) == 2 and all((PAUSE_LINE in m.all_text()) == shown for m in roots)


@pytest.mark.slow
async def test_pause_stops_a_run_on_the_other_replica_and_refuses_a_click_until_resumed(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    held = asyncio.Event()
    async with ScriptedAnthropic(_script(held)) as claude:
        env = bot_env(redis_url, slack, policy_dir, sandbox)
        env.pop("INCIDENT_BOT_WEBHOOK_TOKEN")  # the replicas get their own
        env |= {
            "INCIDENT_BOT_WORKERS": "2",
            "INCIDENT_BOT_SWEEP_INTERVAL": "0.5",
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
        }
        replicas = await asyncio.gather(
            start_replica(tmp_path, **env), start_replica(tmp_path, **env)
        )
        try:
            async with aiohttp.ClientSession() as http:
                await _pause_and_resume(http, replicas, claude, held, slack, store, sandbox)
        finally:
            for replica in replicas:
                replica.process.send_signal(signal.SIGTERM)
            for replica in replicas:
                assert await asyncio.wait_for(replica.process.wait(), 30) == 0


async def _pause_and_resume(
    http: aiohttp.ClientSession,
    replicas: list[Replica],
    claude: ScriptedAnthropic,
    held: asyncio.Event,
    slack: SlackServer,
    store: RunStore,
    sandbox: RunningSandbox,
) -> None:
    # Run B proposes the rollback; run A is mid-investigation (its model call is held).
    assert await post_alert(http, replicas[0], alert_body(1)) == 202
    proposal = await slack.until(lambda: proposal_in(slack), within=30)
    [b] = await store.list_runs()
    await run_in(store, b.id, RunStatus.AWAITING_APPROVAL)
    assert await post_alert(http, replicas[1], alert_body(2)) == 202
    await claude.received(3)
    [a] = [r for r in await store.list_runs() if r.id != b.id]
    holder = await eventually(lambda: store.lease_holder(a.id))
    driving = next(r for r in replicas if f":{r.process.pid}:" in holder)
    other = next(r for r in replicas if r is not driving)

    # `/incident pause` on the replica that is not driving A.
    fields = slash_command(
        "pause deploy freeze",
        user=APPROVER,
        channel=SHOP_CHANNEL,
        response_url=slack.response_url(),
    )
    assert await _post(http, other, form(fields)) == 200
    await _answer(slack, "incident-bot is paused by")
    held.set()  # A's model call returns: A stops before its next step (the tool round)

    async def stopped() -> bool | None:
        events = [e.event for e in await store.read_audit(a.id)]
        free = await store.lease_holder(a.id) is None
        return True if "pause_stopped" in events and free else None

    await eventually(stopped, within=20)
    audit = {e.event: e.data for e in await store.read_audit(a.id)}
    assert audit["paused"]["who"] == APPROVER and audit["paused"]["reason"] == "deploy freeze"
    assert audit["pause_stopped"]["where"] == "before its next tool round"
    assert "drive_failed" not in audit
    assert (await store.load(a.id)).status is RunStatus.INVESTIGATING
    queue = WorkQueue(store.redis, prefix="incident-bot:")
    assert await queue.dead_letters() == []
    assert a.id not in await queue.queued_runs()  # acknowledged, not left to be retried
    assert "paused" in {e.event for e in await store.read_audit(b.id)}
    await slack.until(lambda: _roots_show(slack, True))

    # An Approve click on B's proposal is refused, on either replica, and records nothing.
    click = block_action(proposal, "approve", user=APPROVER, response_url=slack.response_url())
    assert await _post(http, driving, click) == 200
    refusal = await _answer(slack, "no decision was recorded")
    assert PAUSE_LINE in refusal["text"] and "deploy freeze" in refusal["text"]
    assert "/incident resume" in refusal["text"]
    assert refusal["response_type"] == "ephemeral"
    waiting = await store.load(b.id)
    assert waiting.proposal is not None
    assert await store.decisions(b.id, waiting.proposal.id) == []
    assert len(claude.requests) == 3  # A asked the model nothing more while paused

    # `/incident resume` (on the other replica): A goes on from its checkpoint; the click
    # now counts.
    fields = slash_command(
        "resume", user=APPROVER, channel=SHOP_CHANNEL, response_url=slack.response_url()
    )
    assert await _post(http, driving, form(fields)) == 200
    resumed = await _answer(slack, "incident-bot is resumed")
    assert "1 stopped runs are queued again" in resumed["text"]
    finished = await run_in(store, a.id, RunStatus.CONCLUDED, within=30)
    assert finished.outcome == "B's rollback covers it."
    assert [e.event for e in await store.read_audit(a.id)].count("resumed") == 1
    await slack.until(lambda: _roots_show(slack, False) or None)

    again = block_action(proposal, "approve", user=APPROVER, response_url=slack.response_url())
    assert await _post(http, other, again) == 200
    resolved = await run_in(store, b.id, RunStatus.RESOLVED, within=60)
    assert resolved.proposal is not None
    [decision] = await store.decisions(b.id, resolved.proposal.id)
    assert decision.user == APPROVER
    assert await sandbox_patches(sandbox) == 1
    assert len(claude.requests) == 4
