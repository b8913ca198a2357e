"""The timeline of a run's report: every stage in time order, told from the audit stream.

Each audit event becomes one entry (an event this module does not know becomes a note
with its data, so nothing the bot recorded is left out); tool calls carry their tool's
own summary from the transcript and the raw call; the run's end comes from the run.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel

from bot.approvals import describe_target
from bot.models import (
    ActionRecord,
    Finding,
    Run,
    RunStatus,
    Step,
    ToolCallPart,
    ToolResultPart,
)
from bot.store import AuditEvent
from tools.toolset import compact_json

Stage = Literal[
    "alert", "model", "tool", "findings", "proposal", "decision", "action", "verification",
    "escalation", "end", "note",
]  # fmt: skip

_TURNS = {
    "RunTools": "asked for tool calls",
    "AwaitApproval": "proposed an action",
    "Finish": "concluded",
    "HandOver": "handed over",
    "Continue": "continued",
}
# Audit events the report tells from the run itself (they are appended after the write
# that ended the run, so a report made at its end may not see them yet), or that tell a
# reader nothing (`admitted`: the alert's delivery joined the run it created).
_TOLD_BY_THE_RUN = {"finished", "expired", "admitted"}


class Entry(BaseModel):
    """One moment of the timeline."""

    at: datetime
    offset_seconds: float  # from the run's start (negative: before it, e.g. the alert)
    stage: Stage
    title: str
    seconds: float | None = None  # how long it took, when it took time
    detail: str = ""


class ToolCall(BaseModel):
    """One tool call as it ran: what a person reads, and the raw call."""

    at: datetime
    tool: str
    arguments: str
    status: str
    summary: str
    seconds: float | None = None
    error: str | None = None


class Page(BaseModel):
    """The escalation target paged when the run ended needing someone."""

    target: str
    at: datetime


def in_utc(at: datetime) -> datetime:
    """`at` in UTC (a time without a zone, as an alert may carry, is taken as UTC)."""
    return at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)


def verification(audit: Sequence[AuditEvent]) -> str | None:
    """The last verification of the run's action, as a sentence (None: never verified)."""
    for event in reversed(audit):
        if event.event in ("verified", "verification_failed"):
            return _verify_title(event.event, event.data)
    return None


def _verify_title(event: str, data: dict[str, Any]) -> str:
    value = data.get("value")
    shown = "no series" if value is None else f"value {value:.4g}"
    if event == "verified":
        return f"Verified: {data.get('check')} ({shown})"
    return f"Not recovered: {data.get('check')} still false ({shown})"


# -- tool calls ----------------------------------------------------------------------------
def tool_calls(transcript: Sequence[Step], audit: Sequence[AuditEvent]) -> list[ToolCall]:
    """Each audited tool call with the summary its tool gave the transcript's result (a
    call is matched by tool and arguments, in order)."""
    summaries: dict[tuple[str, str], deque[str]] = defaultdict(deque)
    calls = {p.id: p for s in transcript for p in s.content if isinstance(p, ToolCallPart)}
    for step in transcript:
        for part in step.content:
            if isinstance(part, ToolResultPart) and part.tool_use_id in calls:
                call = calls[part.tool_use_id]
                summaries[(call.name, compact_json(call.input))].append(part.summary)
    found = []
    for event in audit:
        if event.event != "tool_call":
            continue
        data = event.data
        tool, arguments, status = str(data.get("tool")), str(data.get("input")), data.get("status")
        waiting = summaries.get((tool, arguments))
        summary = waiting.popleft() if waiting else ""
        error = data.get("error")
        fallback = f"{tool}: {status}" + (f" ({error})" if error else "")
        found.append(
            ToolCall(
                at=event.at,
                tool=tool,
                arguments=arguments,
                status=str(status),
                summary=summary or fallback,
                seconds=data.get("seconds"),
                error=error,
            )
        )
    return found


# -- the timeline --------------------------------------------------------------------------
def timeline(
    run: Run,
    audit: Sequence[AuditEvent],
    calls: Sequence[ToolCall],
    *,
    action: ActionRecord | None,
    page: Page | None,
) -> list[Entry]:
    """Every stage of the run in time order."""
    start = run.created_at

    def entry(at: datetime, stage: Stage, title: str, **more: Any) -> Entry:
        at = in_utc(at)
        offset = (at - start).total_seconds()
        return Entry(at=at, offset_seconds=offset, stage=stage, title=title, **more)

    entries = []
    if run.alert.starts_at is not None:
        fired = f"Alert started firing: {run.alert.title}"
        entries.append(entry(run.alert.starts_at, "alert", fired))
    tools = iter(calls)
    findings = _findings_line(run.findings)
    for event in audit:
        if event.event == "tool_call":
            call = next(tools)
            raw = f"{call.tool} {call.arguments}"
            entries.append(entry(call.at, "tool", call.summary, seconds=call.seconds, detail=raw))
            continue
        if event.event == "proposal" and findings is not None:
            entries.append(entry(event.at, "findings", findings[0], detail=findings[1]))
            findings = None
        described = _describe(event, run, action)
        if described is not None:
            stage, title, seconds, detail = described
            entries.append(entry(event.at, stage, title, seconds=seconds, detail=detail))
    if page is not None:
        entries.append(entry(page.at, "escalation", f"Paged {page.target}"))
    if run.status.terminal:
        if findings is not None:  # a conclusion's findings come with the run's end
            entries.append(entry(run.updated_at, "findings", findings[0], detail=findings[1]))
        entries.append(entry(run.updated_at, "end", _end_title(run)))
    return sorted(entries, key=lambda e: e.at)


def _end_title(run: Run) -> str:
    """`Resolved` (the action and its verification are entries of their own), else the
    status with the outcome that says why."""
    title = run.status.value.replace("_", " ").capitalize()
    why = run.outcome or run.summary
    return title if run.status is RunStatus.RESOLVED or not why else f"{title}: {why}"


def _findings_line(findings: Sequence[Finding]) -> tuple[str, str] | None:
    """The findings as a timeline entry's title and detail (unverified ones marked)."""
    if not findings:
        return None
    unverified = sum(1 for f in findings if f.unverified)
    title = f"{len(findings)} finding{'s' if len(findings) > 1 else ''}"
    title += f" ({unverified} unverified)" if unverified else ""
    lines = [
        f.summary + (f" [unverified: {f.unverified}]" if f.unverified else "") for f in findings
    ]
    return title, " · ".join(lines)


Described = tuple[Stage, str, float | None, str]


def _describe(event: AuditEvent, run: Run, action: ActionRecord | None) -> Described | None:
    """What one audit event tells a reader (None: nothing, or the run tells it)."""
    if event.event in _TOLD_BY_THE_RUN:
        return None
    explain = _EXPLAINERS.get(event.event)
    if explain is not None:
        return explain(event.data, run, action)
    shown = {k: v for k, v in event.data.items() if k != "owner" and v is not None}
    return "note", event.event.replace("_", " "), None, json.dumps(shown, default=str)


def _created(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"Alert received: {data.get('alert')}; the run started (trigger: {data.get('trigger')})"
    return "alert", title, None, ""


def _model_call(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    stored = data.get("usage") or {}
    usage = {k: v for k, v in stored.items() if k.endswith("_tokens") and isinstance(v, int)}
    tokens = sum(usage.values())
    turn = data.get("turn")
    did = _TURNS.get(str(turn), str(turn)) if turn else str(data.get("purpose") or "a call")
    title = f"Model call ({data.get('model')}): {did}, {tokens:,} tokens"
    detail = ", ".join(f"{k.removesuffix('_tokens')} {v:,}" for k, v in usage.items() if v)
    return "model", title, data.get("seconds"), detail


def _proposal(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    proposal = run.proposal
    if proposal is None or proposal.id != data.get("proposal"):
        return "proposal", f"Proposed {data.get('action')}", None, str(data.get("policy") or "")
    title = f"Proposed {proposal.action} on {describe_target(proposal)} (risk {proposal.risk})"
    verify = proposal.verify.describe() if proposal.verify else "the alert's own expression"
    detail = f"verify: {verify}"
    if proposal.verify_note:
        detail += f" ({proposal.verify_note})"
    return "proposal", title, None, f"{detail}; policy: {data.get('policy')}"


def _decision(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    verdict = "Approved" if data.get("verdict") == "approve" else "Rejected"
    reason = f": {data['reason']}" if data.get("reason") else ""
    return "decision", f"{verdict} by {data.get('user')} via {data.get('via')}{reason}", None, ""


def _action_started(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    return "action", f"Started {data.get('action')}", None, f"by {data.get('owner')}"


def _action_succeeded(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"{data.get('action')} succeeded: {data.get('detail')}"
    return "action", title, _action_seconds(action), ""


def _action_failed(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"{data.get('action')} failed: {data.get('error')}"
    return "action", title, _action_seconds(action), ""


def _action_seconds(record: ActionRecord | None) -> float | None:
    if record is None or record.finished_at is None:
        return None
    return (record.finished_at - record.started_at).total_seconds()


def _verified(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    return "verification", _verify_title("verified", data), None, ""


def _not_verified(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    return "verification", _verify_title("verification_failed", data), None, ""


def _handed_over(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    return "note", f"The runbook planner took over: {data.get('reason')}", None, ""


def _flagged(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"Possible prompt injection in {data.get('source')} ({data.get('kind')})"
    return "note", title, None, str(data.get("text") or "")


def _cancelled(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    return "decision", f"Cancelled by {data.get('user')} via {data.get('via')}", None, ""


def _loop(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"Loop detected ({data.get('kind')}): {data.get('outcome')}"
    return "note", title, None, str(data.get("call") or "")


def _compacted(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    results = len(data.get("tool_use_ids") or [])
    before, after = data.get("characters_before") or 0, data.get("characters_after") or 0
    title = f"Compacted {results} old tool results ({before:,} → {after:,} characters)"
    return "note", title, None, ""


def _check_replaced(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    title = f"Verification check replaced: {data.get('proposed')} → {data.get('replacement')}"
    return "proposal", title, None, str(data.get("note") or "")


def _ungrounded(data: dict[str, Any], run: Run, action: ActionRecord | None) -> Described:
    done = "the model was asked to ground them" if data.get("outcome") == "asked" else "marked"
    detail = json.dumps(data.get("reasons"), default=str)
    return "findings", f"Findings not grounded in a tool result: {done}", None, detail


_EXPLAINERS: dict[str, Callable[[dict[str, Any], Run, ActionRecord | None], Described]] = {
    "created": _created,
    "model_call": _model_call,
    "proposal": _proposal,
    "decision": _decision,
    "action_started": _action_started,
    "action_succeeded": _action_succeeded,
    "action_failed": _action_failed,
    "verified": _verified,
    "verification_failed": _not_verified,
    "planner_fallback": _handed_over,
    "injection_flagged": _flagged,
    "cancelled": _cancelled,
    "loop_detected": _loop,
    "compacted": _compacted,
    "verify_check_replaced": _check_replaced,
    "findings_unverified": _ungrounded,
}
