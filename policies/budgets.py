"""Is a run over its model budget? (pure functions)

A run may spend model steps, tokens, dollars and minutes up to the stricter of the
settings and the policy's `budgets.per_run`; all runs together may spend the policy's
`budgets.per_day`. Past any limit the model stops and the runbook planner finishes the run.
"""

from __future__ import annotations

from dataclasses import dataclass

from policies.schema import Budgets


@dataclass(frozen=True, kw_only=True)
class ModelLimits:
    """The limits in force for one run (None: no limit)."""

    steps: int
    tokens: int
    dollars: float | None = None
    minutes: float | None = None
    day_tokens: int | None = None
    day_dollars: float | None = None


@dataclass(frozen=True, kw_only=True)
class Spend:
    """What a run, and the whole bot today, have spent on the model."""

    steps: int
    tokens: int
    dollars: float
    minutes: float
    day_tokens: int
    day_dollars: float


def model_limits(budgets: Budgets, *, max_steps: int, token_budget: int) -> ModelLimits:
    """The stricter of the settings (`max_steps`, `token_budget`) and the policy."""
    run, day = budgets.per_run, budgets.per_day
    return ModelLimits(
        steps=min(max_steps, run.steps or max_steps),
        tokens=min(token_budget, run.tokens or token_budget),
        dollars=run.dollars,
        minutes=run.minutes,
        day_tokens=day.tokens,
        day_dollars=day.dollars,
    )


def over_budget(limits: ModelLimits, spend: Spend) -> str | None:
    """Why the model may not be called again, or None while it may."""
    if spend.steps >= limits.steps:
        return f"step limit reached ({limits.steps} model calls)"
    if spend.tokens >= limits.tokens:
        return f"token budget spent ({spend.tokens} of {limits.tokens})"
    if limits.dollars is not None and spend.dollars >= limits.dollars:
        return f"dollar budget spent (${spend.dollars:.2f} of ${limits.dollars:.2f})"
    if limits.minutes is not None and spend.minutes >= limits.minutes:
        return f"time budget spent ({spend.minutes:.1f} of {limits.minutes:g} minutes)"
    if limits.day_tokens is not None and spend.day_tokens >= limits.day_tokens:
        return f"today's token budget spent ({spend.day_tokens} of {limits.day_tokens})"
    if limits.day_dollars is not None and spend.day_dollars >= limits.day_dollars:
        return (
            f"today's dollar budget spent (${spend.day_dollars:.2f} of ${limits.day_dollars:.2f})"
        )
    return None
