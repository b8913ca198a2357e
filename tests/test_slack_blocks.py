"""Every message the bot posts stays within Slack's Block Kit limits, with huge inputs:
a 50 KB tool output, 40 findings, 50 KB arguments and dry run; long text is cut cleanly."""

from __future__ import annotations

import json
from pathlib import Path

from bot.models import (
    Check,
    Decision,
    Finding,
    Proposal,
    Run,
    RunStatus,
    Step,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    utcnow,
)
from bot.slack import blocks
from bot.slack.app import SLACK
from bot.slack.listing import run_list
from tests.factories import alert
from tests.slack_helpers import APPROVER, SHOP_CHANNEL, bot_app, bot_env
from tests.slack_server import SlackServer, validate_message

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

BIG = ("error <svc> & retry " * 2600)[:50_000]  # 50 KB, with characters to escape


def _huge_run(status: RunStatus) -> Run:
    findings = [
        Finding(summary=f"finding {n}: " + "x" * 700, evidence=BIG, tool="prometheus_query")
        for n in range(40)
    ]
    proposal = Proposal(
        action="kubernetes.rollback",
        # Valid arguments (else the policy forbids it and no buttons are shown); the
        # model's own texts around them are huge.
        arguments={"namespace": "shop", "deployment": "checkout", "to_revision": 1},
        target="shop/checkout " + "y" * 3000,
        rationale=BIG,
        risk="medium",
        expected_effect=BIG,
        verify=Check(query="sum(rate(x[5m]))" * 300, op="<", threshold=0.05),
    )
    return Run(
        alert=alert(namespace="shop", service="checkout").model_copy(update={"title": BIG}),
        status=status,
        deadline="2030-01-01T00:00:00Z",  # type: ignore[arg-type]
        findings=findings,
        proposal=proposal,
        summary=BIG,
        outcome=BIG,
    )


def _valid(message: blocks.SlackMessage) -> None:
    payload = message.payload()
    assert validate_message(payload["text"], payload["blocks"]) is None
    assert len(json.dumps(payload)) < 60_000


def test_every_builder_stays_within_the_limits_with_huge_inputs() -> None:
    decisions = [
        Decision(run_id="r", proposal_id="p", user=f"U{n:08d}", verdict="approve", reason=BIG)
        for n in range(12)
    ]
    gate = blocks.Gate(buttons=True, note=BIG)
    for status in RunStatus:
        run = _huge_run(status)
        _valid(blocks.root_message(run))
        _valid(blocks.proposal_message(run, dry_run=BIG, gate=gate, decisions=decisions))
        _valid(blocks.outcome_message(run))
        paged = blocks.Escalation(target="@oncall", mention="<!subteam^S0ONCALL1>")
        _valid(blocks.outcome_message(run, paged))
        _valid(blocks.run_status(run))
    messages = blocks.findings_messages(_huge_run(RunStatus.CONCLUDED).findings)
    assert len(messages) == 4
    for message in messages:
        _valid(message)
    lines = [blocks.progress_line("✓", BIG)] * 40
    _valid(blocks.progress_message(lines, done=True, run_id="run-1"))
    listed = [_huge_run(status) for status in RunStatus for _ in range(8)]
    _valid(run_list(listed, now=utcnow()))
    modal = blocks.reject_modal("run-1", "prop-1", BIG, {"channel": "C1"})
    assert modal.to_dict()["callback_id"] == "reject_reason"


def test_long_text_is_cut_at_a_word_with_a_note_and_never_inside_an_escape() -> None:
    text = blocks.escape("a < b & c " * 1000)
    cut = blocks.cut(text, 3000)
    assert len(cut) <= 3000
    assert cut.endswith("more characters)")
    head = cut.rsplit(" … (", 1)[0]
    assert text.startswith(head)
    assert not head.endswith(("&", "&l", "&lt", "&am", "&amp"))
    fenced = blocks.code("```" + BIG, 1000)
    assert len(fenced) <= 1000 and fenced.startswith("```") and fenced.endswith("```")
    assert fenced.count("```") == 2
    assert blocks.cut("short", 10) == "short"


async def test_a_run_with_a_50kb_tool_output_and_40_findings_posts_only_valid_messages(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        threads = bot.client.server.app[SLACK].threads
        run = _huge_run(RunStatus.INVESTIGATING).model_copy(
            update={"proposal": None, "outcome": ""}
        )
        created = await bot.deps.store.create(run)
        call = ToolCallPart(id="t1", name="logs_query", input={"query": BIG})
        steps = [
            Step(index=1, role="assistant", author="model", content=[TextPart(text=BIG), call]),
            Step(
                index=2,
                role="user",
                author="tools",
                content=[ToolResultPart(tool_use_id="t1", content=json.dumps({"data": BIG}))],
            ),
        ]
        await threads.show(created, steps)
        awaiting = _huge_run(RunStatus.AWAITING_APPROVAL).model_copy(update={"id": created.id})
        await threads.show(awaiting)
        await bot.deps.store.record_decision(
            Decision(
                run_id=created.id,
                proposal_id=awaiting.proposal.id if awaiting.proposal else "",
                user=APPROVER,
                verdict="approve",
            )
        )
        await threads.show(awaiting.model_copy(update={"status": RunStatus.RESOLVED}))

    [root] = slack.roots(SHOP_CHANNEL)
    replies = slack.thread(root.ts)
    kinds = [m.text.split(":")[0].split(" ")[0] for m in replies]
    assert kinds.count("Findings") == 4
    assert any("approve" in m.history[0]["blocks"].__str__() for m in replies if m.history)
    assert len(slack.named("chat.postMessage")) == 1 + 1 + 4 + 1 + 1  # root, progress, ...
    assert "Resolved" in root.all_text()
    assert slack.problems == []
