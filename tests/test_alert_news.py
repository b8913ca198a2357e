"""Alerts that join a run's group reach the model at its next turn."""

from __future__ import annotations

from bot.dedup import AlertGroups
from bot.models import Alert, RunStatus
from tests.anthropic_server import RATIO_QUERY, Exchange, call, tool_use, user_text
from tests.test_investigation_model import ALERT, conclude, harness


def _member(pod: str) -> Alert:
    return ALERT.model_copy(
        update={
            "group_key": "group:checkout-5xx",
            "fingerprint": f"fp-{pod}",
            "labels": {**ALERT.labels, "pod": pod},
        }
    )


async def test_alerts_that_joined_the_group_are_shown_to_the_model_once(redis_url: str) -> None:
    script = [
        Exchange(
            tool_use(call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY})),
            expect=[user_text("Alert group update"), user_text("pod=checkout-2")],
        ),
        # The next turn carries the tool result, not the same news again.
        conclude(expect=[lambda request: _no_news(request.blocks())]),
    ]
    async with harness(redis_url, script) as h:
        groups = AlertGroups(h.deps, h.deps.queue)
        started = await groups.admit([_member("checkout-1")])
        # Before a worker picks the run up, Alertmanager adds a second pod to the group.
        joined = await groups.admit([_member("checkout-1"), _member("checkout-2")])
        assert started.run_id is not None
        assert (joined.run_id, joined.outcome) == (started.run_id, "updated")
        run = await h.deps.driver().drive(started.run_id)
        transcript = await h.deps.store.transcript(run.id)

    assert run.status is RunStatus.CONCLUDED
    # The briefing (the matching runbook) follows the news, before the first model turn.
    authors = [s.author for s in transcript]
    assert authors == ["alert", "alert", "briefing", "model", "tools", "model"]


def _no_news(blocks: list[dict[str, object]]) -> str | None:
    texts = [str(b.get("text", "")) for b in blocks if b.get("type") == "text"]
    return "the news was sent twice" if any("Alert group update" in t for t in texts) else None
