"""Model budgets per run (steps, tokens, dollars, minutes) and per day, from settings and policy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.models import RunStatus, Usage
from bot.spend import DailySpend
from policies.budgets import ModelLimits, Spend, model_limits, over_budget
from policies.schema import Budget, Budgets
from tests.anthropic_server import RATIO_QUERY, Exchange, call, tool_use, usage
from tests.test_investigation_model import harness

ROOT = Path(__file__).resolve().parent.parent

SPENT_NOTHING = Spend(steps=0, tokens=0, dollars=0, minutes=0, day_tokens=0, day_dollars=0)


def test_the_stricter_of_settings_and_policy_applies() -> None:
    budgets = Budgets(
        per_run=Budget(steps=30, tokens=1000, dollars=2.5, minutes=10),
        per_day=Budget(tokens=10**6, dollars=50),
    )
    assert model_limits(budgets, max_steps=20, token_budget=5000) == ModelLimits(
        steps=20, tokens=1000, dollars=2.5, minutes=10, day_tokens=10**6, day_dollars=50
    )
    assert model_limits(Budgets(), max_steps=20, token_budget=5000) == ModelLimits(
        steps=20, tokens=5000
    )


def test_each_limit_stops_the_model_with_its_reason() -> None:
    limits = ModelLimits(
        steps=5, tokens=100, dollars=1, minutes=10, day_tokens=1000, day_dollars=20
    )
    assert over_budget(limits, SPENT_NOTHING) is None
    cases = {
        "step limit reached (5 model calls)": {"steps": 5},
        "token budget spent (100 of 100)": {"tokens": 100},
        "dollar budget spent ($1.20 of $1.00)": {"dollars": 1.2},
        "time budget spent (10.5 of 10 minutes)": {"minutes": 10.5},
        "today's token budget spent (1000 of 1000)": {"day_tokens": 1000},
        "today's dollar budget spent ($20.00 of $20.00)": {"day_dollars": 20},
    }
    for reason, spent in cases.items():
        assert over_budget(limits, Spend(**(vars(SPENT_NOTHING) | spent))) == reason


def _policy(tmp_path: Path, budgets: str) -> Path:
    directory = tmp_path / "policy"
    (directory / "runbooks").mkdir(parents=True)
    shutil.copy(ROOT / "policies" / "runbooks" / "high-error-rate.yaml", directory / "runbooks")
    (directory / "policy.yaml").write_text(
        f"actions:\n  - action: kubernetes.rollback\nbudgets:\n{budgets}"
    )
    return directory


async def test_a_run_over_its_dollar_budget_is_finished_by_the_planner(
    redis_url: str, tmp_path: Path
) -> None:
    # 100k input tokens cost $0.30 on Sonnet: over a $0.25 budget, within the token one.
    expensive = tool_use(
        call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
        usage=usage(input=100_000, output=100),
    )
    policy = _policy(tmp_path, "  per_run: {dollars: 0.25}\n")
    async with harness(redis_url, [Exchange(expensive)], INCIDENT_BOT_POLICY_DIR=str(policy)) as h:
        run = await h.investigate()
        audit = await h.audit(run, "planner_fallback")
        spent_today = await DailySpend(h.deps.store.redis, prefix="incident-bot:").today()

    assert len(h.claude.requests) == 1
    assert run.status is RunStatus.AWAITING_APPROVAL  # the planner proposed the rollback
    assert audit[0].data["reason"] == "dollar budget spent ($0.30 of $0.25)"
    assert spent_today[0] == 100_100
    assert spent_today[1] == pytest.approx(0.3015)


async def test_when_todays_budget_is_spent_the_model_is_not_called(
    redis_url: str, tmp_path: Path
) -> None:
    policy = _policy(tmp_path, "  per_day: {tokens: 50000}\n")
    async with harness(redis_url, [], INCIDENT_BOT_POLICY_DIR=str(policy)) as h:
        # Other runs spent it earlier today, possibly on another replica.
        await DailySpend(h.deps.store.redis, prefix="incident-bot:").add(
            Usage(input_tokens=60_000), 0.18
        )
        run = await h.investigate()
        audit = await h.audit(run, "planner_fallback")

    assert h.claude.requests == []
    assert run.status is RunStatus.AWAITING_APPROVAL
    assert audit[0].data["reason"] == "today's token budget spent (60000 of 50000)"
