"""The kill switch on one process (real Redis, the local Slack): who may pause and resume,
the setting that holds it, `incident-bot pause|resume`, `/readyz` and the gauge, the
root messages' pause line, and that no action is claimed while paused."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.deps import Deps
from bot.errors import IncidentBotError
from bot.models import Decision, Proposal, Run, RunStatus, utcnow
from bot.pause import Paused, PauseState
from bot.pausing import pause, resume
from bot.queue import WorkQueue
from bot.run_permissions import why_not_allowed_to_pause
from bot.slack import blocks
from bot.slack.app import SLACK
from bot.store import RunStore
from bot.sweeper import Sweeper
from policies.schema import Policy
from tests.factories import run as queued_run
from tests.processes import eventually
from tests.slack_helpers import (
    APPROVER,
    DEFAULT_CHANNEL,
    OUTSIDER,
    SHOP_CHANNEL,
    SRE_MEMBER,
    SlackBot,
    bot_app,
    bot_env,
)
from tests.slack_server import SlackServer

pytest_plugins = ("tests.slack_fixtures",)

RUNBOOKS = Path(__file__).resolve().parent.parent / "policies" / "runbooks"
OPERATOR = "UOPERATOR1"
POLICY = f"""
approval_timeout_seconds: 3600
operators: {{users: [{OPERATOR}]}}
actions:
  - action: kubernetes.rollback
    match: {{namespace: shop}}
    approvers: {{users: [{APPROVER}], groups: ["@sre"]}}
routing:
  default: {DEFAULT_CHANNEL}
  routes:
    - match: {{namespace: shop}}
      channel: {SHOP_CHANNEL}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """Rollbacks in `shop` need APPROVER or @sre; OPERATOR is the operator."""
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY)
    shutil.copytree(RUNBOOKS, directory / "runbooks")
    return directory


@pytest.fixture
async def bot(redis_url: str, slack: SlackServer, policy_dir: Path) -> AsyncIterator[SlackBot]:
    """The bot's app (no workers) with the local Slack."""
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as app:
        yield app


async def _say(bot: SlackBot, slack: SlackServer, text: str, user: str) -> str:
    """`/incident <text>` by `user`; returns the ephemeral answer."""
    slack.ephemeral.clear()
    status, _ = await bot.command(slack, text, user=user)
    assert status == 200
    [answer] = await slack.until(lambda: slack.ephemeral or None)
    assert answer["response_type"] == "ephemeral"
    said: str = answer["text"]
    return said


async def _ready(bot: SlackBot) -> dict[str, Any]:
    async with bot.client.get("/readyz") as response:
        assert response.status == 200  # a paused bot is healthy
        body: dict[str, Any] = await response.json()
        return body


async def _gauge(bot: SlackBot) -> str:
    async with bot.client.get("/metrics") as response:
        text = await response.text()
    return next(line for line in text.splitlines() if line.startswith("incident_bot_paused "))


async def test_only_operators_and_approvers_may_pause_and_resume(
    bot: SlackBot, slack: SlackServer
) -> None:
    switch = bot.deps.pause
    refusal = await _say(bot, slack, "pause just because", OUTSIDER)
    assert refusal.startswith("You may not pause incident-bot") and "Nothing was changed" in refusal
    assert APPROVER in refusal and "@sre" in refusal and OPERATOR in refusal
    assert await switch.current() is None

    answer = await _say(bot, slack, "pause cache <flush>", SRE_MEMBER)  # a member of @sre
    assert f"incident-bot is paused by {SRE_MEMBER}" in answer and "/incident resume" in answer
    state = await switch.current()
    assert state is not None
    assert (state.who, state.reason, state.source) == (SRE_MEMBER, "cache <flush>", "slack")
    assert "already paused" in await _say(bot, slack, "pause again", APPROVER)
    assert await switch.current() == state

    assert "You may not resume" in await _say(bot, slack, "resume", OUTSIDER)
    assert await switch.current() == state
    assert "incident-bot is resumed" in await _say(bot, slack, "resume", OPERATOR)
    assert await switch.current() is None
    assert "not paused" in await _say(bot, slack, "resume", APPROVER)
    _, helped = await bot.command(slack, "help", user=OUTSIDER)  # answered in the ack
    assert "/incident pause [reason]" in helped and "/incident resume" in helped


def test_a_rule_without_approvers_lets_anyone_pause_and_no_rule_nobody() -> None:
    anyone = Policy.model_validate({"actions": [{"action": "kubernetes.restart"}]})
    assert why_not_allowed_to_pause(anyone, OUTSIDER, frozenset()) is None
    nobody = why_not_allowed_to_pause(Policy(), APPROVER, frozenset())
    assert nobody is not None and "names no operators or approvers" in nobody


async def test_the_setting_keeps_the_bot_paused(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    async with bot_app(env, INCIDENT_BOT_PAUSED="true") as bot:
        paused = (await _ready(bot))["paused"]
        assert paused["source"] == "setting" and "INCIDENT_BOT_PAUSED" in paused["reason"]
        assert await _gauge(bot) == "incident_bot_paused 1.0"
        refusal = await _say(bot, slack, "resume", OPERATOR)
        assert "stays paused while INCIDENT_BOT_PAUSED is set" in refusal
        assert (await _ready(bot))["paused"]["since"] == paused["since"]
        # Lifted elsewhere (a process without the setting): this one sets it again.
        await bot.deps.store.redis.delete(bot.deps.pause.key)
        assert (await _ready(bot))["paused"]["source"] == "setting"


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`incident-bot ARGS` in this process with its environment; returns its exit code
    and what it printed."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # the CLI configures logging
    capsys.readouterr()
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        root.handlers[:], root.level = handlers, level
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_commands_pause_and_resume_and_readyz_and_the_gauge_show_it(
    bot: SlackBot,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert (await _ready(bot))["paused"] is None
    assert await _gauge(bot) == "incident_bot_paused 0.0"

    code, out, _ = await asyncio.to_thread(
        _cli, capsys, "pause", "deploy", "freeze", "--user", "ops@host"
    )
    assert code == 0 and "incident-bot is paused by ops@host" in out
    paused = (await _ready(bot))["paused"]
    assert (paused["who"], paused["reason"], paused["source"]) == (
        "ops@host",
        "deploy freeze",
        "cli",
    )
    assert await _gauge(bot) == "incident_bot_paused 1.0"

    monkeypatch.setenv("INCIDENT_BOT_PAUSED", "true")
    code, _, err = await asyncio.to_thread(_cli, capsys, "resume")
    assert code == 1 and "while INCIDENT_BOT_PAUSED is set" in err
    assert (await _ready(bot))["paused"] == paused
    monkeypatch.delenv("INCIDENT_BOT_PAUSED")

    code, out, _ = await asyncio.to_thread(_cli, capsys, "resume")
    assert code == 0 and "incident-bot is resumed" in out and '{"paused": null}' in out
    assert (await _ready(bot))["paused"] is None
    assert await _gauge(bot) == "incident_bot_paused 0.0"
    code, out, _ = await asyncio.to_thread(_cli, capsys, "resume")
    assert code == 0 and "incident-bot is not paused" in out


async def test_open_runs_root_messages_show_the_pause_until_resumed(
    bot: SlackBot, slack: SlackServer, store: RunStore
) -> None:
    run = await store.create(queued_run(namespace="shop"))
    await bot.client.server.app[SLACK].threads.show(run)
    [root] = slack.roots(SHOP_CHANNEL)
    line = f"Paused by <@{APPROVER}> since"
    assert line not in root.all_text()

    await _say(bot, slack, "pause rollout of v2 under way", APPROVER)
    await slack.until(lambda: line in root.all_text())
    [context] = [b for b in root.blocks if line in str(b)]
    assert context["type"] == "context" and "rollout of v2 under way" in str(context)
    assert "paused" in [e.event for e in await store.read_audit(run.id)]

    await _say(bot, slack, "resume", APPROVER)
    await slack.until(lambda: line not in root.all_text())
    assert "resumed" in [e.event for e in await store.read_audit(run.id)]
    assert len(slack.roots(SHOP_CHANNEL)) == 1  # updated in place

    state = PauseState(who=APPROVER, source="slack")
    ended = run.model_copy(update={"status": RunStatus.CONCLUDED})
    assert line not in str(blocks.root_message(ended, paused=state).payload())


def _executing(run: Run) -> Run:
    proposal = Proposal(
        action="kubernetes.rollback",
        arguments={"namespace": "shop", "deployment": "checkout", "to_revision": 1},
        target="shop/checkout",
        rationale="the last deploy broke checkout",
        risk="low",
        expected_effect="5xx ratio back under 1%",
    )
    return run.model_copy(update={"status": RunStatus.EXECUTING, "proposal": proposal})


async def test_no_action_is_claimed_while_paused_and_resume_queues_the_stopped_run(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    env = bot_env(redis_url, slack, policy_dir, None)
    async with bot_app(env, INCIDENT_BOT_SWEEP_INTERVAL="0.05") as bot:
        await _no_action_while_paused(bot.deps, store)


async def _no_action_while_paused(deps: Deps, store: RunStore) -> None:
    run = await store.create(_executing(queued_run(namespace="shop")))
    assert run.proposal is not None
    approval = Decision(
        run_id=run.id, proposal_id=run.proposal.id, user=APPROVER, verdict="approve", via="slack"
    )
    assert await store.record_decision(approval)
    waiting = await store.create(queued_run(namespace="shop", service="cart"))  # no entry
    await pause(deps, who=OPERATOR, reason="stop everything", source="slack")

    with pytest.raises(Paused) as stopped:
        await deps.driver().drive(run.id)
    assert isinstance(stopped.value, IncidentBotError)
    assert "stopped before its action was claimed" in str(stopped.value)
    assert await store.action_record(run.id, run.proposal.id) is None
    assert (await store.load(run.id)).status is RunStatus.EXECUTING
    assert await store.lease_holder(run.id) is None
    assert await deps.pause.touched() == {run.id: "stopped", waiting.id: "open"}
    events = {e.event: e.data for e in await store.read_audit(run.id)}
    assert events["pause_stopped"]["paused_by"] == OPERATOR

    # The sweeper's repairs queue nothing while paused; the resume queues the stopped
    # run, and then a repair the run that had no entry.
    queue = WorkQueue(store.redis, prefix="incident-bot:")
    await eventually(lambda: _swept(Sweeper(deps, interval_seconds=0.05), waiting))
    assert await queue.queued_runs() == set()
    done = await resume(deps, who=OPERATOR)
    assert done.requeued == 1 and run.id in await queue.queued_runs()
    resumed = {e.event: e.data for e in await store.read_audit(run.id)}["resumed"]
    assert resumed["requeued"] is True and resumed["paused_by"] == OPERATOR
    await eventually(lambda: _queued(queue, {run.id, waiting.id}))
    assert await deps.pause.touched() == {}


async def _queued(queue: WorkQueue, runs: set[str]) -> bool | None:
    return True if await queue.queued_runs() == runs else None


async def _swept(sweeper: Sweeper, still: Run) -> bool | None:
    """A pass that ran the repairs once `still` was still long enough to be repaired
    (True), or None."""
    if utcnow() - still.updated_at <= timedelta(seconds=4 * sweeper.interval):
        return None
    return True if (await sweeper.sweep()).repaired else None


async def test_an_investigation_stops_before_its_next_step_at_its_checkpoint(
    bot: SlackBot, store: RunStore
) -> None:
    run = await store.create(queued_run(namespace="shop"))
    await pause(bot.deps, who=OPERATOR, reason="", source="cli")
    with pytest.raises(Paused, match="before its next model call or planner step"):
        await bot.deps.driver().drive(run.id)
    stopped = await store.load(run.id)
    # Stopped at the checkpoint that started the investigation: the alert's step only.
    assert stopped.status is RunStatus.INVESTIGATING
    assert [s.author for s in await store.transcript(run.id)] == ["alert"]
    assert await store.lease_holder(run.id) is None
    assert await bot.deps.pause.touched() == {run.id: "stopped"}
