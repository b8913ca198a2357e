"""Block Kit messages of a run, built with `slack_sdk.models.blocks` so Slack's limits hold.

Every builder returns a `SlackMessage`; `payload()` validates each block (slack_sdk raises
`SlackObjectFormationError` past a limit) and the message's block count. Text that can
be long (evidence, tool output, arguments) is escaped and cut cleanly before it is put
into a block, with a note of how much was cut.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.approvals import describe_target
from bot.models import Decision, Finding, Run, RunStatus
from bot.pause import PauseState, pause_line

MAX_BLOCKS = 50
SECTION_CHARS = 3000
FIELD_CHARS = 2000
HEADER_CHARS = 150
FALLBACK_CHARS = 3000
FINDINGS_PER_MESSAGE = 10
FINDINGS_IN_PROPOSAL = 5
FLAGS_SHOWN = 5
_NOTE_CHARS = 40  # room for " … (123,456 more characters)"

APPROVE = "approve"
REJECT = "reject"
REJECT_MODAL = "reject_reason"
DECISION_BLOCK = "decision"

STATUS: dict[RunStatus, tuple[str, str]] = {
    RunStatus.QUEUED: ("⏳", "Queued"),
    RunStatus.INVESTIGATING: ("🔎", "Investigating"),
    RunStatus.AWAITING_APPROVAL: ("✋", "Awaiting approval"),
    RunStatus.EXECUTING: ("⚙️", "Executing"),
    RunStatus.VERIFYING: ("🔁", "Verifying"),
    RunStatus.RESOLVED: ("✅", "Resolved"),
    RunStatus.CONCLUDED: ("✔️", "Concluded: no action needed"),
    RunStatus.REJECTED: ("🚫", "Rejected"),
    RunStatus.EXPIRED: ("⌛", "Expired: no decision in time"),
    RunStatus.CANCELLED: ("✖️", "Cancelled"),
    RunStatus.FAILED: ("❌", "Failed"),
    RunStatus.NEEDS_ATTENTION: ("🚨", "Needs attention"),
}

# Runs that need a person, and why in words (`/incident list`, the outcome message).
NEEDS_SOMEONE: dict[RunStatus, str] = {
    RunStatus.AWAITING_APPROVAL: "its proposal waits for a decision",
    RunStatus.NEEDS_ATTENTION: "the bot could not finish it on its own; a person must take over",
    RunStatus.FAILED: "the approved action failed, so the problem is not fixed",
    RunStatus.EXPIRED: "nobody decided on its proposal in time; nothing was changed",
}


@dataclass(frozen=True)
class SlackMessage:
    """A message: notification text and its blocks."""

    text: str
    blocks: tuple[Block, ...]

    def payload(self) -> dict[str, Any]:
        """`text` and `blocks` for `chat.postMessage`/`chat.update`, validated."""
        if len(self.blocks) > MAX_BLOCKS:
            raise ValueError(f"{len(self.blocks)} blocks; Slack takes at most {MAX_BLOCKS}")
        return {
            "text": cut(self.text, FALLBACK_CHARS),
            "blocks": [b.to_dict() for b in self.blocks],
        }


@dataclass(frozen=True, kw_only=True)
class Escalation:
    """Whom a run that ended needing someone pages in its outcome message."""

    target: str | None  # as the policy's routing names it (None: nobody)
    mention: str | None  # the Slack mention that pages it now (None: nobody, or paged before)


@dataclass(frozen=True, kw_only=True)
class Gate:
    """What the policy says about a proposal, as its message shows it."""

    buttons: bool  # whether people may decide here (allowed, not auto-approved)
    note: str  # who must approve, a freeze, or why it is forbidden
    asked: str = ""  # the approvers as Slack mentions (said again once it expired)


# -- text --------------------------------------------------------------------------
def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, cut at a line or word end with a note of the rest."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - _NOTE_CHARS, 0)]
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at > len(head) * 0.8:
            head = head[:at]
            break
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]  # never half an escape such as `&am`
    head = head.rstrip()
    return f"{head} … ({len(text) - len(head):,} more characters)"


def code(text: str, limit: int) -> str:
    """A code block holding `text`, cut so the fences stay whole."""
    inner = cut(escape(text.replace("```", "'''")), limit - 6)
    return f"```{inner}```"


def _md(text: str, limit: int = SECTION_CHARS) -> MarkdownTextObject:
    return MarkdownTextObject(text=cut(text, limit))


def section(text: str, block_id: str | None = None) -> SectionBlock:
    """A section of mrkdwn text, cut to Slack's limit."""
    return SectionBlock(text=_md(text), block_id=block_id)


def _fields(pairs: Sequence[tuple[str, str]]) -> SectionBlock:
    return SectionBlock(fields=[_md(f"*{k}*\n{v}", FIELD_CHARS) for k, v in pairs[:10]])


def _context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[_md(t) for t in texts[:10]])


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=cut(text, HEADER_CHARS), emoji=True))


def status_label(status: RunStatus) -> str:
    """`✅ Resolved`."""
    emoji, label = STATUS[status]
    return f"{emoji} {label}"


# -- the run's messages --------------------------------------------------------------
def root_message(run: Run, paused: PauseState | None = None) -> SlackMessage:
    """The run's status message: the alert, where it stands, the outcome, and (while the
    bot is `paused` and the run open) who paused it, since when and why."""
    labels = run.alert.labels
    where = "/".join(v for v in (labels.get("namespace"), labels.get("service")) if v)
    fields = [("Status", status_label(run.status)), ("Severity", escape(run.alert.severity))]
    if where:
        fields.append(("Service", escape(where)))
    if "alertname" in labels:
        fields.append(("Alert", escape(labels["alertname"])))
    blocks: list[Block] = [_header(f"{STATUS[run.status][0]} {run.alert.title}"), _fields(fields)]
    about = run.headline or run.summary or run.alert.annotations.get("summary") or ""
    if about:
        blocks.append(section(escape(about)))
    if run.outcome and run.status.terminal:
        blocks.append(section(f"*Outcome:* {escape(run.outcome)}"))
    engine = "Claude" if run.engine == "model" else "runbook planner"
    blocks.append(_context(f"Run `{run.id}` · {engine} · {run.steps} steps"))
    line = None if run.status.terminal else pause_line(paused)
    if line is not None:
        blocks.append(_context(cut(line, SECTION_CHARS)))
    return SlackMessage(f"{STATUS[run.status][1]}: {run.alert.title}", tuple(blocks))


def progress_message(lines: Sequence[str], *, done: bool, run_id: str) -> SlackMessage:
    """The investigation's progress: one message, edited in place, one line per tool
    call; where to see every call with its arguments is one command away."""
    body = "\n".join(lines) or "Starting…"
    if len(body) > SECTION_CHARS:  # keep the newest lines
        body = "…\n" + body[-(SECTION_CHARS - 10) :].split("\n", 1)[-1]
    state = "Investigation finished." if done else "Investigating… (this message is updated)"
    raw = f"Every call with its arguments: `incident-bot runs report {escape(run_id)}`"
    return SlackMessage(
        f"Progress: {lines[-1] if lines else 'starting'}",
        (section(body), _context(state, raw)),
    )


def progress_line(mark: str, line: str) -> str:
    """One finished tool call as people read it: `✓ Queried …: 0.12`."""
    return cut(f"{mark} {escape(' '.join(line.split()))}", 300)


def _finding(index: int, finding: Finding, evidence_chars: int) -> SectionBlock:
    text = f"*{index}. {escape(finding.summary)}*"
    if finding.unverified:
        text = cut(text, 600) + f"\n⚠ unverified: {escape(cut(finding.unverified, 300))}"
    if finding.evidence:
        text = cut(text, 900) + "\n" + code(finding.evidence, evidence_chars)
    return section(text)


def findings_messages(findings: Sequence[Finding]) -> list[SlackMessage]:
    """The findings with their evidence, a few per message (a thread reply each)."""
    messages = []
    for start in range(0, len(findings), FINDINGS_PER_MESSAGE):
        chunk = findings[start : start + FINDINGS_PER_MESSAGE]
        title = "*Findings*" if start == 0 else f"*Findings (continued from {start})*"
        blocks: list[Block] = [section(title)]
        blocks += [_finding(start + i + 1, f, 1200) for i, f in enumerate(chunk)]
        text = f"Findings {start + 1} to {start + len(chunk)}"
        messages.append(SlackMessage(text, tuple(blocks)))
    return messages


def outcome_message(run: Run, escalation: Escalation | None = None) -> SlackMessage:
    """The closing thread reply; for a run that needs someone, why, paging `escalation`."""
    text = f"{status_label(run.status)}"
    if run.outcome:
        text += f": {escape(run.outcome)}"
    blocks: list[Block] = [section(text)]
    why = NEEDS_SOMEONE.get(run.status)
    if why is not None and run.status.terminal:
        page = escalation.mention if escalation is not None else None
        line = f"This run needs someone: {why}."
        blocks.append(section(f"{page} {line}" if page else line))
        if escalation is None or escalation.target is None:
            blocks.append(_context("Nobody was paged: the policy's `routing` names no `escalate`."))
        text = f"{page} {text}" if page else text
    return SlackMessage(cut(text, FALLBACK_CHARS), tuple(blocks))


def decision_line(decision: Decision) -> str:
    """`✅ Approved by <@U1>` or `🚫 Rejected by <@U2>: reason`."""
    if decision.verdict == "approve":
        return f"✅ Approved by {mention(decision.user)}"
    reason = f": {escape(decision.reason)}" if decision.reason else ""
    return f"🚫 Rejected by {mention(decision.user)}{reason}"


def mention(user: str) -> str:
    """A Slack user ID as a mention; anything else (a CLI user) as it is."""
    return f"<@{user}>" if user[:1] in ("U", "W") and user.isalnum() else escape(user)


def proposal_message(
    run: Run, *, dry_run: str, gate: Gate, decisions: Sequence[Decision] = ()
) -> SlackMessage:
    """The findings, the proposed action exactly, and the Approve/Reject buttons."""
    assert run.proposal is not None  # noqa: S101 - only called with a proposal
    p = run.proposal
    target = describe_target(p)
    blocks: list[Block] = [_header(f"✋ Proposed: {p.action} on {target}")]
    blocks += [section(f"⚠️ {escape(flag.describe())}") for flag in run.flags[:FLAGS_SHOWN]]
    if run.summary:
        blocks.append(section(f"*Summary*\n{escape(run.summary)}"))
    shown = run.findings[:FINDINGS_IN_PROPOSAL]
    blocks += [_finding(i + 1, f, 500) for i, f in enumerate(shown)]
    if len(run.findings) > len(shown):
        blocks.append(_context(f"…and {len(run.findings) - len(shown)} more findings above."))
    blocks.append(DividerBlock())
    risk = {"low": "🟢 low", "medium": "🟠 medium", "high": "🔴 high"}[p.risk]
    blocks.append(
        _fields(
            [
                ("Action", f"`{escape(p.action)}`"),
                ("Target", escape(target)),
                ("Risk", risk),
                ("Run", f"`{run.id}`"),
            ]
        )
    )
    blocks.append(_context(f"The investigation described the target as: {escape(p.target)}"))
    blocks.append(section("*Arguments*\n" + code(json.dumps(p.arguments, indent=2), 2900)))
    blocks.append(section("*Dry run*\n" + code(dry_run, 2900)))
    blocks.append(section(f"*Why*\n{escape(p.rationale)}"))
    blocks.append(section(f"*Expected effect*\n{escape(p.expected_effect)}"))
    if p.verify is not None:
        blocks.append(section(f"*Verified by*\n{escape(p.verify.describe())}"))
    if p.verify_note:
        blocks.append(_context(f"⚠ {escape(cut(p.verify_note, 600))}"))
    blocks.append(_context(gate.note))
    if decisions:
        blocks.append(_context(*(decision_line(d) for d in decisions[-10:])))
    if gate.buttons and run.status is RunStatus.AWAITING_APPROVAL:
        blocks.append(_buttons(run))
    elif run.status is not RunStatus.AWAITING_APPROVAL:
        line = status_label(run.status)
        if run.status is RunStatus.EXPIRED:
            asked = gate.asked or "nobody the policy names"
            line += f". Asked: {asked}; nothing was changed."
        elif run.outcome and run.status.terminal:
            line += f": {escape(run.outcome)}"
        blocks.append(section(line))
    return SlackMessage(f"Approval needed: {p.action} on {target}", tuple(blocks))


def _buttons(run: Run) -> ActionsBlock:
    assert run.proposal is not None  # noqa: S101
    value = json.dumps({"run": run.id, "proposal": run.proposal.id})
    confirm = ConfirmObject(
        title="Run this action?",
        text=cut(f"{run.proposal.action} on {describe_target(run.proposal)}", 300),
        confirm="Approve",
        deny="Back",
    )
    return ActionsBlock(
        block_id=DECISION_BLOCK,
        elements=[
            ButtonElement(
                text="Approve", action_id=APPROVE, value=value, style="primary", confirm=confirm
            ),
            ButtonElement(text="Reject", action_id=REJECT, value=value, style="danger"),
        ],
    )


def reject_modal(run_id: str, proposal_id: str, what: str, reply_to: dict[str, str]) -> View:
    """The modal asking for an optional reason for a rejection."""
    metadata = json.dumps({"run": run_id, "proposal": proposal_id, **reply_to})
    return View(
        type="modal",
        callback_id=REJECT_MODAL,
        title=PlainTextObject(text="Reject proposal"),
        submit=PlainTextObject(text="Reject"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=metadata,
        blocks=[
            section(f"Reject *{escape(what)}*?"),
            InputBlock(
                block_id="reason",
                label=PlainTextObject(text="Reason (optional)"),
                optional=True,
                element=PlainTextInputElement(action_id="reason", multiline=True, max_length=2000),
            ),
        ],
    )


# -- answers to commands -------------------------------------------------------------
HELP = (
    "*/incident* commands:\n"
    "• `/incident investigate <question>`: investigate in a new thread here\n"
    "• `/incident list`: the runs that need someone, then the other open runs\n"
    "• `/incident status <run>`: where a run stands\n"
    "• `/incident cancel <run>`: stop a run\n"
    "• `/incident pause [reason]`: pause the bot at once: no investigation or action "
    "starts until `/incident resume` (operators and approvers only)\n"
    "• `/incident resume`: go on where the pause stopped\n"
    "• `/incident help`: this help\n"
    "Mention me in a thread to investigate with the thread as context."
)


def run_status(run: Run) -> SlackMessage:
    """A run's status, summary, proposal and outcome (an ephemeral answer)."""
    blocks: list[Block] = [
        section(f"`{run.id}` {status_label(run.status)} · *{escape(run.alert.title)}*")
    ]
    if run.summary:
        blocks.append(section(escape(run.summary)))
    if run.proposal is not None:
        p = run.proposal
        blocks.append(section(f"Proposal: `{escape(p.action)}` on {escape(describe_target(p))}"))
    if run.outcome:
        blocks.append(section(f"Outcome: {escape(run.outcome)}"))
    return SlackMessage(f"{run.id}: {run.status.value}", tuple(blocks))
