"""`/incident cancel <run>` is for the people the policy lets approve the run's actions and
for the policy's operators; anyone else is told so ephemerally and the run is unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.models import Proposal, Run, RunStatus
from bot.store import RunStore
from tests.factories import run as queued_run
from tests.slack_fixtures import RUNBOOKS
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

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

OPERATOR = "UOPERATOR1"
LEAD = "ULEAD00001"

POLICY = f"""
approval_timeout_seconds: 3600
operators: {{users: [{OPERATOR}], groups: ["@incident-leads"]}}
actions:
  - action: kubernetes.rollback
    match: {{namespace: shop}}
    approvers: {{users: [{APPROVER}], groups: ["@sre"]}}
  - action: kubernetes.restart
    match: {{namespace: sandbox}}
routing:
  default: {DEFAULT_CHANNEL}
  routes:
    - match: {{namespace: shop}}
      channel: {SHOP_CHANNEL}
"""


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    """Rollbacks in `shop` need APPROVER or @sre; restarts in `sandbox` anyone; the
    operators are OPERATOR and @incident-leads."""
    directory = tmp_path / "policy"
    directory.mkdir()
    (directory / "policy.yaml").write_text(POLICY)
    shutil.copytree(RUNBOOKS, directory / "runbooks")
    return directory


@pytest.fixture
def leads(slack: SlackServer) -> SlackServer:
    slack.usergroups["S0LEADS01"] = ("incident-leads", [LEAD])
    return slack


async def _run(store: RunStore, *, proposal: bool = False, **labels: str) -> Run:
    run = queued_run(**labels)
    if proposal:
        run = run.model_copy(
            update={
                "status": RunStatus.AWAITING_APPROVAL,
                "proposal": Proposal(
                    action="kubernetes.rollback",
                    arguments={"namespace": "shop", "deployment": "checkout", "to_revision": 1},
                    target="shop/checkout",
                    rationale="the last deploy broke checkout",
                    risk="medium",
                    expected_effect="5xx ratio back under 1%",
                ),
            }
        )
    return await store.create(run)


async def _cancel(bot: SlackBot, slack: SlackServer, run: Run, user: str) -> str:
    """`/incident cancel <run>` by `user`; returns the ephemeral answer."""
    slack.ephemeral.clear()
    status, _ = await bot.command(slack, f"cancel {run.id}", user=user)
    assert status == 200
    [answer] = await slack.until(lambda: slack.ephemeral or None)
    assert answer["response_type"] == "ephemeral"
    text: str = answer["text"]
    return text


async def test_a_non_approver_is_refused_and_an_approver_or_group_member_cancels(
    redis_url: str, leads: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    queued = await _run(store, namespace="shop")
    awaiting = await _run(store, proposal=True, namespace="shop")
    async with bot_app(bot_env(redis_url, leads, policy_dir, None)) as bot:
        await _approvers_cancel(bot, leads, store, queued, awaiting)


async def _approvers_cancel(
    bot: SlackBot, leads: SlackServer, store: RunStore, queued: Run, awaiting: Run
) -> None:
    refusal = await _cancel(bot, leads, queued, OUTSIDER)
    assert "You may not cancel" in refusal and "Nothing was changed" in refusal
    assert APPROVER in refusal and "@sre" in refusal and OPERATOR in refusal
    unchanged = await store.load(queued.id)
    assert (unchanged.status, unchanged.version) == (RunStatus.QUEUED, queued.version)

    assert "is cancelled" in await _cancel(bot, leads, queued, SRE_MEMBER)
    cancelled = await store.load(queued.id)
    assert cancelled.status is RunStatus.CANCELLED
    assert SRE_MEMBER in cancelled.outcome

    assert "You may not cancel" in await _cancel(bot, leads, awaiting, OUTSIDER)
    assert (await store.load(awaiting.id)).status is RunStatus.AWAITING_APPROVAL
    assert "is cancelled" in await _cancel(bot, leads, awaiting, APPROVER)
    assert (await store.load(awaiting.id)).status is RunStatus.CANCELLED


async def test_operators_cancel_any_run_and_a_rule_without_approvers_lets_anyone(
    redis_url: str, leads: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    # No rule allows anything in `payments`: only the operators may change its runs.
    payments = await _run(store, namespace="payments")
    awaiting = await _run(store, proposal=True, namespace="shop")
    # Restarts in `sandbox` need no named approver: anyone may cancel its runs.
    sandbox = await _run(store, namespace="sandbox")
    async with bot_app(bot_env(redis_url, leads, policy_dir, None)) as bot:
        refusal = await _cancel(bot, leads, payments, APPROVER)
        assert "only the operators" in refusal, refusal
        assert (await store.load(payments.id)).status is RunStatus.QUEUED
        assert "is cancelled" in await _cancel(bot, leads, payments, LEAD)  # @incident-leads
        assert "is cancelled" in await _cancel(bot, leads, awaiting, OPERATOR)
        assert "is cancelled" in await _cancel(bot, leads, sandbox, OUTSIDER)


async def test_cancelling_an_unknown_run_says_so(
    redis_url: str, leads: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    ghost = queued_run(namespace="shop").model_copy(update={"id": "run-<!channel>"})
    async with bot_app(bot_env(redis_url, leads, policy_dir, None)) as bot:
        answer = await _cancel(bot, leads, ghost, OPERATOR)
    assert answer == "No run `run-&lt;!channel&gt;`."
