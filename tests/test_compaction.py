"""Context compaction, through the whole stack against the scripted Messages API.

A scripted investigation reads long pod logs turn after turn; once its next request
would pass `INCIDENT_BOT_CONTEXT_WINDOW` x `INCIDENT_BOT_COMPACT_AT`, the oldest results
are sent as summaries from then on, while the transcript in Redis keeps them whole.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from prometheus_client import generate_latest

from bot.compaction import CHARS_PER_TOKEN, Compactor, Request, TokenCounting
from bot.messages import to_messages
from bot.metrics import Metrics
from bot.models import Step, TextPart, ToolCallPart, ToolResultPart
from bot.pricing import Prices
from bot.tiering import FastModel
from tests.anthropic_server import (
    API_KEY,
    FAST_MODEL,
    RATIO_QUERY,
    Exchange,
    ScriptedAnthropic,
    ScriptRequest,
    call,
    count_of,
    message,
    strip_cache_control,
    text,
    tool_use,
    user_text,
)
from tests.test_investigation_model import MODEL, conclude, harness

POD = {"namespace": "shop", "pod": "checkout-vjn9vj2hr6-j7htq"}
SHARE = 0.7
# Counted (tests.anthropic_server.count_of), the requests grow from about 10 000 tokens
# (system prompt and tools) to about 20 500 before the fourth tool turn and 29 000 after
# it: 36 000 x 0.7 = 25 200 lies between.
WINDOW = 36_000
# Estimated (characters / 4), the same requests reach about 15 900 and 23 200 tokens.
WINDOW_ESTIMATED = 27_900


def growing_script() -> list[Exchange]:
    """Four tool turns, each adding results (three of them long pod logs), then one more
    tool turn and a conclusion."""
    logs = "kubernetes_pod_logs"
    return [
        Exchange(
            tool_use(
                call("toolu_logs", logs, {**POD, "tail_lines": 500}),
                call("toolu_events", "kubernetes_events", {"namespace": "shop"}),
            )
        ),
        Exchange(tool_use(call("toolu_logs2", logs, {**POD, "tail_lines": 400}))),
        Exchange(
            tool_use(
                call(
                    "toolu_deployment",
                    "kubernetes_get_deployment",
                    {"namespace": "shop", "name": "checkout"},
                ),
                call(
                    "toolu_history",
                    "kubernetes_rollout_history",
                    {"namespace": "shop", "deployment": "checkout"},
                ),
            )
        ),
        Exchange(
            tool_use(
                call("toolu_logs3", logs, {**POD, "tail_lines": 500, "since_minutes": 60}),
                call("toolu_logs4", logs, {**POD, "tail_lines": 450}),
            )
        ),
        Exchange(
            tool_use(call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY})),
            expect=[user_text("Context note: to stay within the context window")],
            note="the first request after compaction",
        ),
        conclude(),
    ]


def breakpoints(body: dict[str, Any]) -> list[str]:
    """Where a request's cache_control markers are: system block, tool, message block
    (`last` for the last tool and the last block of the last message)."""
    found = [f"system[{i}]" for i, b in enumerate(body["system"]) if "cache_control" in b]
    tools = body["tools"]
    found += [
        "tools[last]" if i == len(tools) - 1 else f"tools[{i}]"
        for i, tool in enumerate(tools)
        if "cache_control" in tool
    ]
    messages = body["messages"]
    for m, msg in enumerate(messages):
        blocks = msg["content"]
        for b, block in enumerate(blocks):
            if "cache_control" in block:
                last = m == len(messages) - 1 and b == len(blocks) - 1
                found.append("messages[last][last]" if last else f"messages[{m}][{b}]")
    return found


def results_sent(request: ScriptRequest) -> dict[str, str]:
    """Every tool_result the request sends, by tool_use id."""
    return {
        b["tool_use_id"]: b["content"]
        for msg in request.messages
        for b in msg["content"]
        if isinstance(b, dict) and b.get("type") == "tool_result"
    }


async def test_a_growing_conversation_is_compacted_once(redis_url: str) -> None:
    limit = int(WINDOW * SHARE)
    async with harness(
        redis_url,
        growing_script(),
        INCIDENT_BOT_CONTEXT_WINDOW=WINDOW,
        INCIDENT_BOT_COMPACT_AT=SHARE,
    ) as h:
        run = await h.investigate()
        before, after, later = h.claude.requests[3:6]
        # Counted by the API: the request without compaction would have passed the limit.
        uncompacted = next(
            c for c in h.claude.count_requests if len(c.messages) == len(after.messages)
        )
        assert count_of(before.body) < limit < count_of(uncompacted.body)
        assert count_of(after.body) < limit
        assert count_of(later.body) < limit

        # The oldest results are sent as summaries from then on; the newest two tool
        # steps, and the alert, are not.
        sent = results_sent(after)
        compacted = ["toolu_logs", "toolu_events", "toolu_logs2"]
        for tool_use_id in compacted:
            assert "[compacted: " in sent[tool_use_id]
            assert "characters; full result kept in the run's record]" in sent[tool_use_id]
        for tool_use_id in ("toolu_deployment", "toolu_logs3", "toolu_logs4"):
            assert "[compacted: " not in sent[tool_use_id]
        assert "[compacted" not in str(after.messages[0])

        # The cache points are where they were, and the next request repeats the
        # compacted prefix as it was sent.
        assert breakpoints(after.body) == breakpoints(before.body)
        assert breakpoints(after.body) == ["system[0]", "tools[last]", "messages[last][last]"]
        prefix = later.messages[: len(after.messages)]
        assert [strip_cache_control(m["content"]) for m in prefix] == [
            strip_cache_control(m["content"]) for m in after.messages
        ]

        # The transcript keeps every full result; the compaction step says what it did.
        transcript = await h.deps.store.transcript(run.id)
        full = {
            p.tool_use_id: p for s in transcript for p in s.content if isinstance(p, ToolResultPart)
        }
        [step] = [s for s in transcript if s.compacted]
        assert [e.tool_use_id for e in step.compacted] == compacted
        for entry in step.compacted:
            part = full[entry.tool_use_id]
            assert entry.characters == len(part.content) > 1000
            assert entry.summary in sent[entry.tool_use_id]
            assert entry.by == ("tool" if part.summary else "excerpt") or entry.by == FAST_MODEL
        [event] = await h.audit(run, "compacted")
        assert event.data["tool_use_ids"] == compacted
        assert event.data["characters_before"] > 10 * event.data["characters_after"]
        metrics = generate_latest(h.deps.metrics.registry).decode()
        assert 'incident_bot_compactions_total{reason="share"} 1.0' in metrics
        assert run.status.value == "concluded"


async def test_without_count_tokens_the_characters_decide(redis_url: str) -> None:
    """count_tokens failing: asked once, then the estimate (characters / 4) decides, and
    the conversation is compacted all the same."""
    limit = int(WINDOW_ESTIMATED * SHARE)
    async with harness(
        redis_url,
        growing_script(),
        INCIDENT_BOT_CONTEXT_WINDOW=WINDOW_ESTIMATED,
        INCIDENT_BOT_COMPACT_AT=SHARE,
    ) as h:
        h.claude.count_fails = True
        run = await h.investigate()
        assert run.status.value == "concluded"
        assert len(h.claude.count_requests) == 1
        before, after = h.claude.requests[3:5]
        assert len(json.dumps(before.body)) // CHARS_PER_TOKEN < limit
        assert len(json.dumps(after.body)) // CHARS_PER_TOKEN < limit
        assert "[compacted: " in results_sent(after)["toolu_logs"]
        [event] = await h.audit(run, "compacted")
        assert event.data["tool_use_ids"] == ["toolu_logs", "toolu_events", "toolu_logs2"]


def overflowing_script(overflows: int) -> list[Exchange]:
    """Three tool turns, then replies that run into the context window."""
    first, second, third = growing_script()[:3]
    overflow = message(
        [{"type": "text", "text": "Looking at the logs again, the"}],
        stop_reason="model_context_window_exceeded",
    )
    return [first, second, third, *[Exchange(overflow) for _ in range(overflows)]]


async def test_a_reply_that_overflows_is_retried_once_compacted(redis_url: str) -> None:
    script = [
        *overflowing_script(1),
        conclude(
            expect=[user_text("Context note: to stay within the context window")],
            note="retried after compaction",
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status.value == "concluded" and run.engine == "model"
        retried = h.claude.requests[4]
        texts = [b.get("text", "") for b in retried.blocks() if b.get("type") == "text"]
        assert any("ran into the model's context window" in t for t in texts)
        sent = results_sent(retried)
        # Every result but the newest two tool steps' is compacted, whatever the share.
        assert "[compacted: " in sent["toolu_logs"] and "[compacted: " in sent["toolu_events"]
        assert "[compacted: " not in sent["toolu_logs2"]
        metrics = generate_latest(h.deps.metrics.registry).decode()
        assert 'incident_bot_compactions_total{reason="overflow"} 1.0' in metrics


async def test_a_second_overflow_hands_the_run_over(redis_url: str) -> None:
    async with harness(redis_url, overflowing_script(2)) as h:
        run = await h.investigate()
        assert run.engine == "runbook"
        assert "context window" in run.engine_reason
        [fallback] = await h.audit(run, "planner_fallback")
        assert "context window" in fallback.data["reason"]


# -- the compactor on its own: summaries by the fast model, or without any API ----------------
def long_transcript(results: int = 4, chars: int = 8000) -> list[Step]:
    """An alert and `results` tool turns, each with one long result without a summary."""
    steps = [Step(index=0, role="user", author="alert", content=[TextPart(text="checkout 5xx")])]
    for n in range(results):
        steps.append(
            Step(
                index=len(steps),
                role="assistant",
                author="model",
                content=[ToolCallPart(id=f"toolu_{n}", name="kubernetes_pod_logs", input={})],
                stop_reason="tool_use",
            )
        )
        line = f"level=error msg=upstream timeout n={n} "
        content = (line * (chars // len(line) + 1))[:chars]
        steps.append(
            Step(
                index=len(steps),
                role="user",
                author="tools",
                content=[ToolResultPart(tool_use_id=f"toolu_{n}", content=content)],
            )
        )
    return steps


def build(transcript: list[Step] | Any) -> Request:
    return Request(model=MODEL, system=[], tools=[], messages=to_messages(transcript))


async def test_results_without_a_summary_are_summarised_by_the_fast_model() -> None:
    def asks_for_the_two_oldest(request: ScriptRequest) -> str | None:
        sent = json.dumps(request.body)
        if "toolu_0" not in sent or "toolu_1" not in sent or "toolu_2" in sent:
            return f"not the two oldest results: {sent[:300]}"
        return None

    answer = text(
        "toolu_0: 74 upstream timeouts to payments.shop in the last 500 lines\n"
        "toolu_1: the same timeouts; token ghp_0123456789abcdefghijklmnopqrstuvwxyz12 leaked"
    )
    fast_script = [Exchange(answer, expect=[asks_for_the_two_oldest])]
    async with ScriptedAnthropic([], fast=fast_script) as claude:
        client = anthropic.AsyncAnthropic(api_key=API_KEY, base_url=claude.url)
        metrics = Metrics()
        fast = FastModel(client, model=FAST_MODEL, metrics=metrics, prices=Prices())
        compactor = Compactor(
            window=10_000,
            share=0.7,
            client=client,
            counting=TokenCounting(),
            fast=fast,
            metrics=metrics,
        )
        transcript = long_transcript()
        fitted = await compactor.fit("run-test", transcript, build)
        await client.close()
    [step] = fitted.steps
    assert [e.tool_use_id for e in step.compacted] == ["toolu_0", "toolu_1"]
    assert {e.by for e in step.compacted} == {FAST_MODEL}
    assert step.compacted[0].summary.startswith("74 upstream timeouts")
    assert "ghp_" not in step.compacted[1].summary  # the fast model's text is redacted
    [fast_call] = fitted.calls
    assert fast_call.model == FAST_MODEL and fast_call.purpose == "compaction"
    assert claude.requests == [] and [r.body["model"] for r in claude.fast_requests] == [FAST_MODEL]
    assert len(claude.count_requests) == 1
    sent = to_messages(fitted.transcript)
    assert "[compacted: 8000 characters" in json.dumps(sent)


async def test_without_a_client_nothing_is_asked_and_excerpts_stand_in() -> None:
    """No model client (as `runs replay` builds it): the characters decide, and the
    results are shown as excerpts."""
    metrics = Metrics()
    compactor = Compactor(
        window=10_000, share=0.7, client=None, counting=TokenCounting(), fast=None, metrics=metrics
    )
    fitted = await compactor.fit("run-test", long_transcript(), build)
    [step] = fitted.steps
    assert [e.by for e in step.compacted] == ["excerpt", "excerpt"]
    assert step.compacted[0].summary.startswith("level=error msg=upstream timeout n=0")
    assert len(step.compacted[0].summary) <= 300
    assert fitted.calls == ()
    # A transcript within its share is left as it is.
    short = long_transcript(chars=700)
    assert (await compactor.fit("run-test", short, build)).transcript == short
