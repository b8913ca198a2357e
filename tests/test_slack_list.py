"""`/incident list`: the runs that need someone first (awaiting approval; ended needing
attention, failed or expired within the last day), oldest first and each with why; then
the other open runs, newest first. Runs are read from a real Redis, the command is signed
and the answer (checked as valid Block Kit by the local Slack) goes to its response URL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from bot.models import Proposal, Run, RunStatus, utcnow
from bot.store import RunStore
from tests.factories import run as queued_run
from tests.slack_helpers import SRE_MEMBER, bot_app, bot_env
from tests.slack_server import SlackServer

pytest_plugins = ("tests.slack_fixtures",)


def _rollback(proposed_ago: timedelta) -> Proposal:
    return Proposal(
        action="kubernetes.rollback",
        arguments={"namespace": "shop", "deployment": "checkout", "to_revision": 1},
        target="shop/checkout",
        rationale="the 5xx ratio rose with revision 2",
        risk="medium",
        expected_effect="errors back under 1%",
        proposed_at=utcnow() - proposed_ago,
    )


def _run(name: str, status: RunStatus, ago: timedelta, outcome: str = "") -> Run:
    """A run called `name` that reached `status` `ago` (created an hour before that)."""
    at = utcnow() - ago
    return queued_run(service=name).model_copy(
        update={
            "id": f"run-{name}",
            "status": status,
            "created_at": at - timedelta(hours=1),
            "updated_at": at,
            "outcome": outcome,
            "proposal": _rollback(ago) if status is RunStatus.AWAITING_APPROVAL else None,
        }
    )


async def test_list_shows_the_runs_that_need_someone_oldest_first_then_the_open_ones(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    hour = timedelta(hours=1)
    runs = [
        _run("approval", RunStatus.AWAITING_APPROVAL, 2 * hour),
        _run("attention", RunStatus.NEEDS_ATTENTION, hour / 2, "not recovered after 120s"),
        _run("expired", RunStatus.EXPIRED, 5 * hour, "no decision within 3600s"),
        _run("failed", RunStatus.FAILED, 3 * hour, "kubernetes.rollback failed: 422"),
        _run("stale", RunStatus.FAILED, 72 * hour, "failed three days ago"),
        _run("resolved", RunStatus.RESOLVED, hour / 4, "verified"),
        _run("older", RunStatus.INVESTIGATING, hour / 6),
        _run("newer", RunStatus.QUEUED, hour / 60),
    ]
    for run in runs:
        await store.create(run)
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        assert (await bot.command(slack, "list", user=SRE_MEMBER))[0] == 200
        [answer] = await slack.until(lambda: slack.ephemeral)
    assert answer["response_type"] == "ephemeral"
    text = json.dumps(answer["blocks"], ensure_ascii=False)
    shown = sorted((text.index(f"`{r.id}`"), r.id) for r in runs if f"`{r.id}`" in text)
    assert [run_id for _, run_id in shown] == [
        "run-expired",
        "run-failed",
        "run-approval",
        "run-attention",
        "run-newer",
        "run-older",
    ]
    assert text.index("Need someone (4), oldest first") < text.index("`run-expired`")
    assert text.index("Other open runs (2), newest first") < text.index("`run-newer`")
    # Each with why: its outcome, or what its proposal waits for, and for how long.
    assert "Expired: no decision in time for 5h " in text
    assert "no decision within 3600s" in text
    assert "kubernetes.rollback failed: 422" in text
    assert "its proposal waits for a decision (`kubernetes.rollback` on" in text
    assert "not recovered after 120s" in text
