"""Grounded proposals: findings must quote what a named tool call returned, and a
verification check must measure the problem before a human is asked.

The unit tests read numbers the way findings write them; the runs go end to end (real SDK
against the scripted Messages API, real tools against the bad-deploy sandbox, real Redis)
and show the result where people read it: Slack's messages and the terminal.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import quote_plus

import pytest

from bot.grounding import Source, quotes, why_ungrounded
from bot.models import Alert, Check, Finding, Run, RunStatus, ToolCallPart
from bot.remediation import check_now
from bot.runs import start_run
from bot.slack import blocks
from bot.terminal import TerminalView
from tests.anthropic_server import (
    RATIO_QUERY,
    Exchange,
    call,
    propose_input,
    tool_result,
    tool_use,
)
from tests.servers import free_port
from tests.slack_server import validate_message
from tests.test_investigation_model import ALERT, HISTORY_ARGS, Harness, harness

# -- reading numbers -----------------------------------------------------------------------
RATIO_RESULT = (
    '{"status":"ok","data":[{"labels":{"namespace":"shop","service":"checkout"},"value":0.1203}]}'
)
LOGS_RESULT = (
    '{"status":"ok","data":{"lines":219,"matched":1234,"top":"upstream timeout to '
    'payments.shop:8443","sample":"2026-12-01T11:38:07Z level=error"}}'
)
RATIO = Source(
    call=ToolCallPart(id="toolu_ratio", name="prometheus_query", input={"query": RATIO_QUERY}),
    result=RATIO_RESULT,
)
LOGS = Source(
    call=ToolCallPart(
        id="toolu_logs", name="logs_query", input={"query": '{app="checkout"}', "minutes": 15}
    ),
    result=LOGS_RESULT,
)


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("12.0 %", [(12.0, 1, True)]),
        ("12%", [(12.0, 0, True)]),
        ("12 percent of requests", [(12.0, 0, True)]),
        ("a ratio of 0.12.", [(0.12, 2, False)]),
        ("1,234 matching lines", [(1234.0, 0, False)]),
        ("219 error lines in 15 min", [(219.0, 0, False), (15.0, 0, False)]),
        ("the 5xx ratio of v2.4.0 over [5m], 4xx too", []),
        ("toolu_01 and p99 and 2.4.0 and abc-123", []),
    ],
)
def test_numbers_are_read_as_findings_write_them(
    text: str, read: list[tuple[float, int, bool]]
) -> None:
    assert [(q.value, q.decimals, q.percent) for q in quotes(text)] == read


GROUNDED = [
    "The 5xx ratio is 12.0 %.",
    "The 5xx ratio is 12%.",
    "The 5xx ratio is 0.12.",
    "The 5xx ratio is 0.1203.",
    "The 5xx ratio is 12.03 %.",
]


@pytest.mark.parametrize("summary", GROUNDED)
def test_a_number_the_named_call_returned_is_grounded(summary: str) -> None:
    """Equal at the precision quoted, or a percentage of the ratio."""
    finding = Finding(summary=summary, evidence="prometheus_query: the 5xx ratio")
    assert why_ungrounded(finding, [RATIO, LOGS]) == ""


@pytest.mark.parametrize("summary", ["The 5xx ratio is 37%.", "13 %", "0.2", "0.13", "12.1%"])
def test_a_number_no_named_call_returned_is_not(summary: str) -> None:
    finding = Finding(summary=summary, evidence="prometheus_query")
    why = why_ungrounded(finding, [RATIO, LOGS])
    assert why.startswith("it quotes ") and "prometheus_query does not show" in why


def test_counts_windows_and_ports_are_grounded_in_their_call() -> None:
    """`219`, `1,234` from the result, `15` from the call's arguments, `8443` from a line;
    the same numbers are not grounded in a call that did not return them."""
    finding = Finding(
        summary="219 error lines (1,234 matched) in 15 min: upstream timeout to payments.shop:8443",
        evidence="logs.query",
    )
    assert why_ungrounded(finding, [RATIO, LOGS]) == ""
    elsewhere = finding.model_copy(update={"evidence": "prometheus.query"})
    assert "219, 1,234, 15" in why_ungrounded(elsewhere, [RATIO, LOGS])


@pytest.mark.parametrize(
    ("evidence", "tool"),
    [
        ("prometheus_query: 0.12", None),
        ("prometheus.query error ratio = 0.12", None),
        ("toolu_ratio returned 0.12", None),
        ("the ratio query", "toolu_ratio"),
        ("the ratio query", "prometheus_query"),
    ],
)
def test_evidence_names_its_call_by_id_or_tool(evidence: str, tool: str | None) -> None:
    finding = Finding(summary="The 5xx ratio is 12%.", evidence=evidence, tool=tool)
    assert why_ungrounded(finding, [RATIO]) == ""


@pytest.mark.parametrize(
    "evidence", ["the ratio query", "prometheus_query_range: 0.12", "kubernetes_pods: 0.12"]
)
def test_evidence_that_names_no_call_of_the_run_is_not_grounded(evidence: str) -> None:
    finding = Finding(summary="The 5xx ratio is 12%.", evidence=evidence)
    assert why_ungrounded(finding, [RATIO]) == "its evidence names no tool call of this run"


# -- findings in a run ---------------------------------------------------------------------
INVENTED = {"summary": "The 5xx ratio is 37%.", "evidence": "prometheus_query: 0.37"}
TRUE = {"summary": "The 5xx ratio is 12.0 %.", "evidence": "prometheus_query: 0.12"}
RATIO_ARGS = {"query": RATIO_QUERY}


def investigate() -> Exchange:
    """The ratio and the rollout history, in one turn."""
    return Exchange(
        tool_use(
            call("toolu_ratio", "prometheus_query", RATIO_ARGS),
            call("toolu_history", "kubernetes_rollout_history", HISTORY_ARGS),
        )
    )


def propose(id: str, findings: list[dict[str, Any]], **kw: Any) -> Exchange:
    """A rollback proposal with these findings."""
    return Exchange(
        tool_use(call(id, "propose_remediation", propose_input(findings=findings))), **kw
    )


def asked_to_ground(id: str, *contains: str) -> list[Any]:
    """The expectations of the request after finishing call `id` was not accepted."""
    return [tool_result(id, is_error=True, contains=c) for c in ("not accepted", *contains)]


async def test_a_finding_quoting_a_number_no_tool_returned_is_marked_unverified(
    redis_url: str,
) -> None:
    """Asked once to ground it, the model proposes the same: the finding is kept, marked
    unverified in the run, in Slack and on the terminal; the grounded one is not."""
    script = [
        investigate(),
        propose("toolu_propose", [INVENTED, TRUE]),
        propose(
            "toolu_again",
            [INVENTED, TRUE],
            expect=asked_to_ground("toolu_propose", "finding 1", "37%", "prometheus_query"),
        ),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert "finding 2" not in h.claude.requests[2].tool_results()["toolu_propose"]["content"]
        assert run.status is RunStatus.AWAITING_APPROVAL and run.engine == "model"
        invented, true = run.findings
        why = "it quotes 37%, 0.37, which the result of prometheus_query does not show"
        assert invented.unverified == why
        assert true.unverified == ""
        events = await h.audit(run, "findings_unverified")
        assert [e.data["outcome"] for e in events] == ["asked", "marked"]
        assert events[1].data["reasons"] == [invented.unverified]

        [findings] = blocks.findings_messages(run.findings)
        assert validate_message(**findings.payload()) is None
        shown = json.dumps(findings.payload(), ensure_ascii=False)
        assert shown.count("⚠ unverified") == 1 and "it quotes 37%" in shown
        proposal = blocks.proposal_message(
            run, dry_run="", gate=blocks.Gate(buttons=True, note="one approval")
        )
        assert "⚠ unverified: it quotes 37%" in json.dumps(proposal.payload(), ensure_ascii=False)
        assert f"      ⚠ unverified: {invented.unverified}" in await terminal_lines(h, run)


async def test_a_model_that_grounds_its_findings_when_asked_keeps_them_verified(
    redis_url: str,
) -> None:
    """The model drops the invented number and names its call in `tool_call`."""
    fixed = {"summary": "The 5xx ratio is 12%.", "evidence": "0.12", "tool_call": "toolu_ratio"}
    script = [
        investigate(),
        propose("toolu_propose", [INVENTED, TRUE]),
        propose("toolu_again", [fixed, TRUE], expect=asked_to_ground("toolu_propose", "37%")),
    ]
    async with harness(redis_url, script) as h:
        run = await h.investigate()
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert [f.unverified for f in run.findings] == ["", ""]
        assert run.findings[0].tool == "toolu_ratio"
        events = await h.audit(run, "findings_unverified")
        assert [e.data["outcome"] for e in events] == ["asked"]


async def terminal_lines(h: Harness, run: Run) -> list[str]:
    """What the terminal shows of the run's proposal."""
    out = io.StringIO()
    await TerminalView(h.deps.actions, h.deps.action_context, out=out).show_proposal(run)
    return out.getvalue().splitlines()


# -- the verification check ----------------------------------------------------------------
ALERT_EXPRESSION = f"{RATIO_QUERY} > 0.05"
NEVER_EXISTED = 'up{job="checkout-canary"}'


def alert_with_expression(h: Harness) -> Alert:
    """The test alert with Prometheus's generator URL of its rule's expression."""
    url = f"{h.sandbox.url}/graph?g0.expr={quote_plus(ALERT_EXPRESSION)}&g0.tab=1"
    return ALERT.model_copy(update={"generator_url": url})


def proposing(verify: dict[str, Any], **overrides: Any) -> list[Exchange]:
    """Investigate, then propose (the rollback unless overridden) verified by `verify`."""
    proposal = propose_input(findings=[TRUE], verify=verify, **overrides)
    return [
        investigate(),
        Exchange(tool_use(call("toolu_propose", "propose_remediation", proposal))),
    ]


async def propose_for(h: Harness, alert: Alert) -> Run:
    run = await start_run(h.deps, alert)
    return await h.deps.driver().drive(run.id)


async def test_an_already_healthy_check_falls_back_to_the_alerts_expression(
    redis_url: str,
) -> None:
    """`ratio < 0.5` holds before any action: the alert's expression verifies instead, the
    proposal says so (Slack, terminal, audit), and the rollback resolves the run by it."""
    healthy = {"query": RATIO_QUERY, "op": "<", "threshold": 0.5}
    async with harness(redis_url, proposing(healthy)) as h:
        run = await propose_for(h, alert_with_expression(h))
        assert run.status is RunStatus.AWAITING_APPROVAL
        assert run.proposal is not None
        assert run.proposal.verify == Check(query=ALERT_EXPRESSION, op="absent")
        note = run.proposal.verify_note
        assert note.startswith(f"the proposed check `{RATIO_QUERY}` < 0.5 is already healthy")
        assert "(value 0.12)" in note and "verifying with the alert's expression" in note
        [replaced] = await h.audit(run, "verify_check_replaced")
        assert replaced.data["replacement"] == f"`{ALERT_EXPRESSION}` returns no series"

        message = blocks.proposal_message(
            run, dry_run="", gate=blocks.Gate(buttons=True, note="one approval")
        )
        assert validate_message(**message.payload()) is None
        assert "is already healthy" in json.dumps(message.payload(), ensure_ascii=False)
        assert f"  ⚠ {note}" in await terminal_lines(h, run)

        done = await h.approve(run)
        assert done.status is RunStatus.RESOLVED, done.outcome
        assert f"verified: `{ALERT_EXPRESSION}` returns no series" in done.outcome


async def test_absent_on_a_series_that_never_existed_is_not_reported_resolved(
    redis_url: str,
) -> None:
    """A restart does not fix a bad image. `absent` on a series that never existed would
    have called it resolved; the alert's expression shows it is not."""
    never = {"query": NEVER_EXISTED, "op": "absent"}
    restart = {"action": "kubernetes.restart", "arguments": HISTORY_ARGS}
    script = proposing(never, **restart)
    async with harness(redis_url, script, INCIDENT_BOT_VERIFY_TIMEOUT=1) as h:
        run = await propose_for(h, alert_with_expression(h))
        assert run.proposal is not None and run.proposal.action == "kubernetes.restart"
        assert run.proposal.verify == Check(query=ALERT_EXPRESSION, op="absent")
        assert "returns no series is already healthy (value none)" in run.proposal.verify_note

        done = await h.approve(run)
        assert done.status is RunStatus.NEEDS_ATTENTION, done.outcome
        assert done.outcome.startswith("not recovered after 1s")
        assert ALERT_EXPRESSION in done.outcome
        # The check the model chose would still pass: the series never existed.
        original = Check(query=NEVER_EXISTED, op="absent")
        assert await check_now(h.deps.tool_context, original) == (True, None)


async def test_without_an_alert_expression_a_healthy_check_is_dropped(redis_url: str) -> None:
    """No expression to fall back to: no check at all, and the proposal says so."""
    async with harness(redis_url, proposing({"query": NEVER_EXISTED, "op": "absent"})) as h:
        run = await h.investigate()
        assert run.proposal is not None and run.proposal.verify is None
        assert run.proposal.verify_note.endswith(
            "the alert has no expression to verify with instead, so nothing will"
        )
        [replaced] = await h.audit(run, "verify_check_replaced")
        assert replaced.data["replacement"] is None


async def test_an_unhealthy_check_is_kept_as_proposed(redis_url: str) -> None:
    """`ratio < 0.05` is false now: it measures the problem and stays, without a note."""
    unhealthy = {"query": RATIO_QUERY, "op": "<", "threshold": 0.05}
    async with harness(redis_url, proposing(unhealthy)) as h:
        run = await propose_for(h, alert_with_expression(h))
        assert run.proposal is not None
        assert run.proposal.verify == Check(query=RATIO_QUERY, op="<", threshold=0.05)
        assert run.proposal.verify_note == ""
        assert await h.audit(run, "verify_check_replaced") == []


async def test_a_check_prometheus_cannot_evaluate_is_kept_with_a_note(redis_url: str) -> None:
    """Prometheus unreachable: the check stays as proposed, and the note says it was not
    evaluated."""
    unhealthy = {"query": RATIO_QUERY, "op": "<", "threshold": 0.05}
    proposal = propose_input(findings=[], verify=unhealthy)
    script = [Exchange(tool_use(call("toolu_propose", "propose_remediation", proposal)))]
    down = f"http://127.0.0.1:{free_port()}"
    async with harness(redis_url, script, PROMETHEUS_URL=down, INCIDENT_BOT_TOOL_TIMEOUT=2) as h:
        run = await h.investigate()
        assert run.proposal is not None
        assert run.proposal.verify == Check(query=RATIO_QUERY, op="<", threshold=0.05)
        assert "could not be evaluated beforehand" in run.proposal.verify_note
