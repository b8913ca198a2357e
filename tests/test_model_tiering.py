"""Model tiering through the whole stack: the investigation asks INCIDENT_BOT_MODEL, the
run's headline INCIDENT_BOT_FAST_MODEL, and each model's calls, tokens and dollars are in
the run, the daily spend, the audit and /metrics."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.models import RunStatus, Usage
from bot.slack.blocks import root_message
from tests.anthropic_server import (
    FAST_MODEL,
    Exchange,
    count_of,
    error,
    rollback_script,
    text,
)
from tests.test_investigation_model import MODEL, conclude, harness

# Prices of the operator's own (dollars per million tokens), unlike the default table's.
PRICES = {
    MODEL: {"input": 2.0, "output": 10.0, "cache_write": 2.5, "cache_read": 0.2},
    FAST_MODEL: {"input": 0.5, "output": 2.5, "cache_write": 0.625, "cache_read": 0.05},
}
SUMMARY = "checkout v2.4.0 fails 12% of requests. Roll back to v2.3.1."


def sample(metrics_text: str, name: str, labels: dict[str, str]) -> float:
    """One sample of the /metrics text."""
    for family in text_string_to_metric_families(metrics_text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels}")


def dollars(model: str, usage: Usage) -> float:
    price = PRICES[model]
    return (
        usage.input_tokens * price["input"]
        + usage.output_tokens * price["output"]
        + usage.cache_write_tokens * price["cache_write"]
        + usage.cache_read_tokens * price["cache_read"]
    ) / 1_000_000


async def test_the_headline_goes_to_the_fast_model_and_each_model_is_priced(
    redis_url: str,
) -> None:
    async with harness(redis_url, rollback_script(), INCIDENT_BOT_MODEL_PRICES=PRICES) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL

        # The investigation's requests went to the main model, the headline's to the fast.
        assert [r.body["model"] for r in h.claude.requests] == [MODEL, MODEL]
        [asked] = h.claude.fast_requests
        assert asked.body["model"] == FAST_MODEL and "tools" not in asked.body
        [block] = asked.blocks()
        assert '<untrusted source="run">' in block["text"] and SUMMARY in block["text"]
        # The scripted fast model answers `In short: ` and the first line it was given.
        assert run.headline == f"In short: Summary: {SUMMARY}"[:150]
        shown = json.dumps([b.to_dict() for b in root_message(run).blocks])
        assert "In short: Summary: checkout v2.4.0" in shown

        # Calls, tokens and dollars per model; the run's figures are their sums.
        main, fast = run.model_usage[MODEL], run.model_usage[FAST_MODEL]
        assert main.calls == 2 and run.model_calls == 2
        assert main.usage == Usage(input_tokens=200, output_tokens=40)
        assert fast.calls == 1
        assert fast.usage == Usage(input_tokens=count_of(asked.body), output_tokens=15)
        assert main.cost_dollars == pytest.approx(dollars(MODEL, main.usage))
        assert fast.cost_dollars == pytest.approx(dollars(FAST_MODEL, fast.usage))
        assert run.usage == main.usage.plus(fast.usage)
        assert run.cost_dollars == pytest.approx(main.cost_dollars + fast.cost_dollars)
        assert (await h.deps.store.load(run.id)).model_usage == run.model_usage

        # The daily spend counts both models; the audit names the model of each call.
        tokens, spent = await h.deps.driver().investigator.spend.today()
        assert tokens == run.usage.total and spent == pytest.approx(run.cost_dollars)
        calls = await h.audit(run, "model_call")
        assert [(e.data["model"], e.data.get("purpose")) for e in calls] == [
            (MODEL, None),
            (MODEL, None),
            (FAST_MODEL, "headline"),
        ]

        metrics = generate_latest(h.deps.metrics.registry).decode()
        for model, spent_by in ((MODEL, main), (FAST_MODEL, fast)):
            cost = sample(metrics, "incident_bot_model_cost_dollars_total", {"model": model})
            assert cost == pytest.approx(spent_by.cost_dollars)
            requests = sample(
                metrics, "incident_bot_model_requests_total", {"model": model, "outcome": "ok"}
            )
            assert requests == spent_by.calls
        out = sample(
            metrics, "incident_bot_model_tokens_total", {"model": FAST_MODEL, "kind": "output"}
        )
        assert out == 15


async def test_a_failing_fast_model_leaves_the_run_without_a_headline(redis_url: str) -> None:
    async with harness(redis_url, rollback_script()) as h:
        h.claude.fast_script = [Exchange(error(400, "invalid_request_error", "no such model"))]
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.headline == ""
        assert list(run.model_usage) == [MODEL]
        assert [e.data["model"] for e in await h.audit(run, "model_call")] == [MODEL, MODEL]
        metrics = generate_latest(h.deps.metrics.registry).decode()
        failed = sample(
            metrics,
            "incident_bot_model_requests_total",
            {"model": FAST_MODEL, "outcome": "http_4xx"},
        )
        assert failed == 1
        shown = json.dumps([b.to_dict() for b in root_message(run).blocks])
        assert "checkout v2.4.0 fails 12% of requests" in shown


async def test_the_headline_is_redacted_and_cut(redis_url: str) -> None:
    wordy = (
        "Checkout v2.4.0 fails 12% of requests after token ghp_0123456789abcdefghijklmnop"
        "qrstuvwxyz12 was rotated; " + "roll back now " * 30
    )
    async with harness(redis_url, rollback_script()) as h:
        h.claude.fast_script = [Exchange(text(f'"{wordy}"\n'))]
        run = await h.investigate()
    assert run.headline.startswith("Checkout v2.4.0 fails 12% of requests after token [REDACTED")
    assert "ghp_" not in run.headline and "\n" not in run.headline
    assert len(run.headline) <= 150 and run.headline.endswith("…")


async def test_without_a_fast_model_there_is_no_headline(redis_url: str) -> None:
    async with harness(redis_url, rollback_script(), INCIDENT_BOT_FAST_MODEL="") as h:
        run = await h.investigate()
        assert h.claude.fast_requests == []
    assert run.status is RunStatus.AWAITING_APPROVAL and run.headline == ""
    assert list(run.model_usage) == [MODEL]


async def test_a_concluded_runs_headline_is_in_todays_spend(redis_url: str) -> None:
    # The headline's spend rides the run's last checkpoint; a concluded run's too.
    async with harness(redis_url, [conclude()]) as h:
        run = await h.investigate()
        assert run.status is RunStatus.CONCLUDED and run.headline.startswith("In short: ")
        assert run.model_usage[FAST_MODEL].calls == 1
        tokens, spent = await h.deps.driver().investigator.spend.today()
        assert tokens == run.usage.total and spent == pytest.approx(run.cost_dollars)
