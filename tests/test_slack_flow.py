"""The whole flow through Slack: an Alertmanager alert becomes a thread with a proposal;
a signed Approve click (acked at once, also while the action runs) resumes the run from
Redis in another replica's worker, which executes the action once and resolves the run."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bot.models import RunStatus
from bot.slack.blocks import status_label
from bot.store import RunStore
from tests.processes import eventually
from tests.slack_helpers import (
    APPROVER,
    OUTSIDER,
    SHOP_CHANNEL,
    SRE_MEMBER,
    bot_app,
    bot_env,
    proposed,
    run_in,
    sandbox_patches,
    shown_texts,
)
from tests.slack_server import SlackServer, view_submission
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")


async def test_alert_to_thread_to_approval_to_resolved_in_another_worker(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    # Replica one investigates the alert, posts the thread and lets go: nothing waits.
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as first:
        run_id, proposal = await proposed(first, slack, store)
        investigator = first.deps.owner

    [root] = slack.roots(SHOP_CHANNEL)
    assert "Awaiting approval" in root.all_text()
    assert "5xx ratio above 5% for checkout" in root.all_text()
    replies = slack.thread(root.ts)
    assert proposal in replies
    progress = next(m for m in replies if "Progress" in m.text)
    assert progress.history, "progress is one message edited in place"
    # Each tool call is one line a person reads, from the tool's own account; no JSON in
    # any version of the message; the raw calls are one command away.
    versions = [*progress.history, {"text": progress.text, "blocks": progress.blocks}]
    for version in versions:
        for text in shown_texts(version):
            assert '{"' not in text and "→" not in text, text
    [body, *_] = shown_texts(versions[-1])[1:]
    lines = body.splitlines()
    assert lines and all(line[:2] in ("✓ ", "✗ ") for line in lines), lines
    assert "✓ Queried the 5xx ratio of http_requests_total for shop/checkout: 0.12" in lines
    assert any(line.startswith("✓ Read 2 revisions of shop/checkout: latest 2") for line in lines)
    assert f"`incident-bot runs report {run_id}`" in progress.all_text()
    assert any(m.text.startswith("Findings") for m in replies)
    text = proposal.all_text()
    for expected in ("kubernetes.rollback", "shop/checkout", "Dry run", "Risk", APPROVER):
        assert expected in text, expected
    assert proposal.action_ids() == ["approve", "reject"]

    # Another on-call engineer still sees the buttons when the first approval is done.
    as_seen_before = copy.deepcopy(proposal)
    # Replica two takes the click; its worker resumes the run from Redis.
    sandbox.world.scenario = sandbox.world.scenario.model_copy(update={"latency_seconds": 0.3})
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as second:
        status, seconds = await second.click(slack, proposal, "approve", user=APPROVER)
        assert (status, seconds < 1.0) == (200, True), seconds

        await run_in(store, run_id, RunStatus.EXECUTING, RunStatus.VERIFYING)
        status, seconds = await second.click(slack, as_seen_before, "approve", user=SRE_MEMBER)
        assert (status, seconds < 1.0) == (200, True), seconds
        refusal = await slack.until(lambda: [e for e in slack.ephemeral if "already" in str(e)])
        assert refusal[0]["response_type"] == "ephemeral"

        run = await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        await slack.until(lambda: "Resolved" in root.all_text())
        await slack.until(lambda: "Resolved" in proposal.all_text())

    assert await sandbox_patches(sandbox) == 1
    record = await store.action_record(run_id, run.proposal.id if run.proposal else "")
    assert record is not None and record.state == "succeeded"
    assert record.owner.startswith(second.deps.owner) and investigator != second.deps.owner
    assert [d.user for d in await store.decisions(run_id, record.proposal_id)] == [APPROVER]
    assert f"Approved by <@{APPROVER}>" in proposal.all_text()
    assert "approve" not in proposal.action_ids()
    assert any("Resolved" in m.text for m in slack.thread(root.ts)[-2:])
    assert len(slack.roots(SHOP_CHANNEL)) == 1


async def test_an_approved_action_starts_while_slack_is_slow_to_show_it(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id, proposal = await proposed(bot, slack, store)
        [root] = slack.roots(SHOP_CHANNEL)
        edits = slack.hold("chat.update")  # Slack takes its time over every edit
        try:
            status, _ = await bot.click(slack, proposal, "approve", user=APPROVER)
            assert status == 200
            # The rollback runs while the edits that show the run executing still wait.
            await eventually(lambda: _patched(sandbox), within=10)
            assert status_label(RunStatus.EXECUTING) not in root.all_text()
            running = (RunStatus.EXECUTING, RunStatus.VERIFYING)
            assert (await store.load(run_id)).status in running
        finally:
            edits.set()
        await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        await slack.until(lambda: "Resolved" in root.all_text())
    # Shown in order: the root went through executing and verifying to resolved.
    versions = [*root.history, {"text": root.text, "blocks": root.blocks}]
    shown = [" ".join(shown_texts(v)) for v in versions]
    labels = [status_label(s) for s in (RunStatus.EXECUTING, RunStatus.VERIFYING)]
    labels.append(status_label(RunStatus.RESOLVED))
    first = [next(i for i, text in enumerate(shown) if label in text) for label in labels]
    assert first == sorted(first), shown
    assert labels[-1] in shown[-1]
    assert await sandbox_patches(sandbox) == 1


async def _patched(sandbox: RunningSandbox) -> bool | None:
    return True if await sandbox_patches(sandbox) >= 1 else None


async def test_an_approver_the_policy_does_not_name_is_refused_and_nothing_runs(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id, proposal = await proposed(bot, slack, store)

        status, seconds = await bot.click(slack, proposal, "approve", user=OUTSIDER)
        assert status == 200 and seconds < 1.0
        [answer] = await slack.until(lambda: slack.ephemeral)
        assert answer["response_type"] == "ephemeral"
        assert answer["replace_original"] is False
        assert "may not decide" in answer["text"] and "@sre" in answer["text"]

        run = await store.load(run_id)
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.proposal is not None
        assert await store.decisions(run_id, run.proposal.id) == []

        # Alertmanager then reports the group resolved: the thread says so.
        assert (await bot.alert("resolved-single.json"))["outcome"] == "resolved"
        note = await slack.until(
            lambda: [m for m in slack.thread(proposal.thread_ts or "") if "resolved" in m.text]
        )
        assert len(note) == 1
    assert await sandbox_patches(sandbox) == 0


async def test_a_member_of_an_approver_group_rejects_with_a_reason_from_the_modal(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = bot_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id, proposal = await proposed(bot, slack, store)

        status, _ = await bot.click(slack, proposal, "reject", user=SRE_MEMBER)
        assert status == 200
        [opened] = await slack.until(lambda: slack.views)
        view = opened["view"]
        assert view["callback_id"] == "reject_reason"
        values = {"reason": {"reason": {"type": "plain_text_input", "value": "deploy is fine"}}}
        status, _, _ = await bot.send(view_submission(view, user=SRE_MEMBER, values=values))
        assert status == 200

        run = await run_in(store, run_id, RunStatus.REJECTED)
        assert "deploy is fine" in run.outcome
        await slack.until(lambda: "Rejected" in proposal.all_text())
    assert f"Rejected by <@{SRE_MEMBER}>: deploy is fine" in proposal.all_text()
    assert await sandbox_patches(sandbox) == 0
    assert json.loads(view["private_metadata"])["run"] == run_id
