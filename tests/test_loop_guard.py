"""Loop detection, end to end: the real loop, the real SDK against the scripted Messages
API, the real tools against the bad-deploy sandbox, real Redis.

A model that repeats one call is told once (its third call is not run), and handed to the
runbook planner when it repeats again; a model whose turns bring no new tool result is
treated the same way; a model that makes progress is never stopped. Whether the model was
told is read from the transcript, so a resumed run does not tell it twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.models import Run, RunStatus, TextPart, ToolResultPart
from bot.runs import start_run
from tests.anthropic_server import (
    RATIO_QUERY,
    Exchange,
    call,
    hang,
    propose_input,
    rollback_script,
    tool_result,
    tool_use,
    user_text,
)
from tests.test_investigation_model import ALERT, HISTORY_ARGS, ROLLBACK_ARGS, Harness, harness
from tools.toolset import compact_json

RATIO = {"query": RATIO_QUERY}
TOLD = "Use what you have: call a different tool, or finish with propose_remediation or conclude."


def ratio_call(i: int, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """The i-th call of the 5xx ratio query (`args`: other arguments, same answer)."""
    return call(f"toolu_ratio{i}", "prometheus_query", args or RATIO)


async def loops(h: Harness, run: Run) -> list[tuple[str, str]]:
    """The run's `loop_detected` audit events as (kind, outcome)."""
    return [(e.data["kind"], e.data["outcome"]) for e in await h.audit(run, "loop_detected")]


def counted(h: Harness, kind: str, outcome: str) -> float:
    """`incident_bot_loops_detected_total{kind, outcome}`."""
    value = h.deps.metrics.registry.get_sample_value(
        "incident_bot_loops_detected_total", {"kind": kind, "outcome": outcome}
    )
    return value or 0.0


async def warnings(h: Harness, run: Run) -> list[str]:
    """The texts of the loop warnings recorded in the run's transcript."""
    return [
        p.text
        for s in await h.deps.store.transcript(run.id)
        if s.author == "system"
        for p in s.content
        if isinstance(p, TextPart) and TOLD in p.text
    ]


def repeat_script() -> list[Exchange]:
    """The same 5xx ratio query four times: told at the third (the call asked with it
    waits too), stopped at the fourth."""
    history = call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS)
    return [
        Exchange(tool_use(ratio_call(0))),
        Exchange(tool_use(ratio_call(1)), expect=[tool_result("toolu_ratio0", contains="0.12")]),
        Exchange(
            tool_use(ratio_call(2), history),
            expect=[tool_result("toolu_ratio1", contains="0.12")],
        ),
        Exchange(
            tool_use(ratio_call(3)),
            expect=[
                tool_result("toolu_ratio2", is_error=True, contains="not run"),
                tool_result("toolu_history", is_error=True, contains="again on its own"),
                user_text(f"You called prometheus_query with {compact_json(RATIO)} three times"),
                user_text("three times; its result is above"),
            ],
            note="told",
        ),
    ]


async def test_a_repeated_call_is_told_once_then_stopped(redis_url: str) -> None:
    """The third call is not run and the model is told; the fourth stops the model's part:
    the runbook planner proposes, and the audit and the metric say why."""
    async with harness(redis_url, repeat_script()) as h:
        run = await h.investigate()
        assert len(h.claude.requests) == 4
        assert run.engine == "runbook"
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.proposal is not None and run.proposal.arguments == ROLLBACK_ARGS
        assert await loops(h, run) == [("repeated_call", "told"), ("repeated_call", "stopped")]
        [fallback] = await h.audit(run, "planner_fallback")
        reason = fallback.data["reason"]
        assert reason.startswith("the model repeated prometheus_query with")
        assert compact_json(RATIO) in reason and "after being told" in reason
        assert run.engine_reason == reason
        [stopped] = [
            e for e in await h.audit(run, "loop_detected") if e.data["outcome"] == "stopped"
        ]
        assert stopped.data["call"].startswith("prometheus_query with")
        # Only the first two of the model's four calls ran; the others were answered.
        events = await h.deps.store.read_audit(run.id)
        handed = next(i for i, e in enumerate(events) if e.event == "planner_fallback")
        ran = [e.data["tool"] for e in events[:handed] if e.event == "tool_call"]
        assert ran == ["prometheus_query"] * 2
        transcript = await h.deps.store.transcript(run.id)
        answers = {
            p.tool_use_id: p.content
            for s in transcript
            for p in s.content
            if isinstance(p, ToolResultPart)
        }
        assert answers["toolu_ratio2"].startswith("not run: asked for the third time")
        assert answers["toolu_ratio3"].startswith("not run: the run stopped: the model repeated")
        assert len(await warnings(h, run)) == 1
        assert counted(h, "repeated_call", "told") == 1
        assert counted(h, "repeated_call", "stopped") == 1


# The same answer to other arguments: the 5xx ratio, asked in five spellings.
SPELLINGS = [
    RATIO_QUERY,
    f"({RATIO_QUERY})",
    f" {RATIO_QUERY}",
    f"(({RATIO_QUERY}))",
    f"{RATIO_QUERY} ",
]


async def test_turns_without_a_new_result_are_told_once_then_stopped(redis_url: str) -> None:
    """Different calls with the same answer: after 2 turns without news the model is told;
    2 more and the planner takes over."""
    script = [
        Exchange(tool_use(ratio_call(0, {"query": SPELLINGS[0]}))),
        Exchange(tool_use(ratio_call(1, {"query": SPELLINGS[1]}))),
        Exchange(tool_use(ratio_call(2, {"query": SPELLINGS[2]}))),
        Exchange(
            tool_use(ratio_call(3, {"query": SPELLINGS[3]})),
            expect=[
                tool_result("toolu_ratio2", contains="0.12"),
                user_text("Your last 2 turns without a new tool result"),
                user_text(TOLD),
            ],
            note="told",
        ),
        Exchange(tool_use(ratio_call(4, {"query": SPELLINGS[4]}))),
    ]
    async with harness(redis_url, script, INCIDENT_BOT_LOOP_TURNS=2) as h:
        run = await h.investigate()
        assert len(h.claude.requests) == 5
        assert await loops(h, run) == [("no_progress", "told"), ("no_progress", "stopped")]
        assert run.engine == "runbook" and run.status is RunStatus.AWAITING_APPROVAL
        [fallback] = await h.audit(run, "planner_fallback")
        assert "2 turns without a new tool result after being told" in fallback.data["reason"]
        assert counted(h, "no_progress", "stopped") == 1


def progress_script() -> list[Exchange]:
    """Eight turns of an investigation that learns something new each time (one call asked
    twice on the way), then a proposal."""
    logs = {"query": '{namespace="shop", app="checkout"} |= "error"', "minutes": 15}
    turns: list[dict[str, Any]] = [
        ratio_call(0),
        call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS),
        call(
            "toolu_deploy", "kubernetes_get_deployment", {"namespace": "shop", "name": "checkout"}
        ),
        ratio_call(1),  # asked twice: allowed
        call(
            "toolu_pods", "kubernetes_pods", {"namespace": "shop", "label_selector": "app=checkout"}
        ),
        call("toolu_events", "kubernetes_events", {"namespace": "shop"}),
        call("toolu_logs", "logs_query", logs),
        call(
            "toolu_rate",
            "prometheus_query",
            {"query": 'sum(rate(http_requests_total{service="checkout"}[5m]))'},
        ),
    ]
    script = [Exchange(tool_use(c)) for c in turns]
    script.append(Exchange(tool_use(call("toolu_propose", "propose_remediation", propose_input()))))
    return script


@pytest.mark.parametrize("loop_turns", [2, 4])
async def test_a_run_making_progress_is_never_stopped(redis_url: str, loop_turns: int) -> None:
    """Many distinct calls (and one asked twice): no warning, no hand-over."""
    script = progress_script()
    async with harness(redis_url, script, INCIDENT_BOT_LOOP_TURNS=loop_turns) as h:
        run = await h.investigate()
        assert run.engine == "model", run.engine_reason
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert await loops(h, run) == []
        assert await warnings(h, run) == []
        assert len(h.claude.requests) == 9


@pytest.mark.parametrize("loop_turns", [1, 4])
async def test_the_rollback_script_is_never_stopped(redis_url: str, loop_turns: int) -> None:
    """The scripted rollback investigation ends with its own proposal."""
    async with harness(redis_url, rollback_script(), INCIDENT_BOT_LOOP_TURNS=loop_turns) as h:
        run = await h.investigate()
        assert run.engine == "model" and run.status is RunStatus.AWAITING_APPROVAL
        assert await loops(h, run) == []


async def test_being_told_survives_a_crash(redis_url: str) -> None:
    """The driver dies after the model was told; the resumed run stops at the next repeat
    (the warning is read from the transcript) and tells it nothing twice."""
    told, *_ = repeat_script()[3:]
    script = [*repeat_script()[:3], Exchange(hang(), expect=told.expect, note="hang"), told]
    async with harness(redis_url, script) as h:
        run = await start_run(h.deps, ALERT)
        first = asyncio.create_task(h.deps.driver().drive(run.id))
        await h.claude.received(4)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        resumed = await h.deps.driver().drive(run.id)
        assert resumed.engine == "runbook"
        assert await loops(h, resumed) == [("repeated_call", "told"), ("repeated_call", "stopped")]
        assert len(await warnings(h, resumed)) == 1
