"""The post-incident report of one run: what happened, when, at what cost, and where.

Built only from what the bot stored (the run, its transcript, audit stream, decisions,
action record and Slack references), all of it redacted where it entered: the report
adds no source of its own. `build_report` is pure; `load_report` reads the sources.
Renderers: `bot.report_markdown` (people) and `Report.model_dump_json` (machines).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
from pydantic import BaseModel
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import describe_target
from bot.models import ActionRecord, Decision, Finding, ModelUsage, Proposal, Run, Step
from bot.report_timeline import (
    Entry,
    Page,
    ToolCall,
    in_utc,
    timeline,
    tool_calls,
    verification,
)
from bot.slack.escalation import PAGED
from bot.slack.refs import MessageRefs
from bot.store import AuditEvent, RunStore
from policies.routing import escalation_for
from policies.schema import Policy

log = logging.getLogger(__name__)


class Thread(BaseModel):
    """Where the run's Slack thread is."""

    channel: str
    thread_ts: str
    permalink: str | None = None


class Header(BaseModel):
    """The facts a post-mortem starts with."""

    run_id: str
    title: str
    alertname: str
    service: str
    namespace: str
    severity: str
    status: str
    outcome: str
    headline: str
    summary: str
    engine: str
    trigger: str
    alert_started: datetime | None
    started: datetime
    ended: datetime | None
    to_proposal_seconds: float | None
    to_decision_seconds: float | None
    to_action_seconds: float | None
    to_end_seconds: float | None


class Cost(BaseModel):
    """Tokens and dollars, in all and per model."""

    model_calls: int
    tool_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    dollars: float
    per_model: dict[str, ModelUsage]


class Report(BaseModel):
    """The post-incident report of one run."""

    header: Header
    timeline: list[Entry]
    findings: list[Finding]
    proposal: Proposal | None
    target: str | None
    decisions: list[Decision]
    action: ActionRecord | None
    verification: str | None
    cost: Cost
    tool_calls: list[ToolCall]
    flags: list[str]
    page: Page | None
    escalation_target: str | None
    thread: Thread | None


@dataclass(frozen=True, kw_only=True)
class Sources:
    """Everything the bot stored about one run."""

    run: Run
    transcript: Sequence[Step]
    audit: Sequence[AuditEvent]
    decisions: Sequence[Decision]
    action: ActionRecord | None
    thread: Thread | None
    page: Page | None
    escalation_target: str | None


async def load_report(
    store: RunStore,
    refs: MessageRefs,
    run_id: str,
    *,
    policy: Policy,
    slack: AsyncWebClient | None = None,
) -> Report:
    """The run's report from Redis; with `slack`, the thread's link is its permalink.
    Raises `RunNotFound` for an unknown run."""
    run = await store.load(run_id)
    proposal = run.proposal
    refs_now = await refs.load(run_id)
    sources = Sources(
        run=run,
        transcript=await store.transcript(run_id),
        audit=await store.read_audit(run_id),
        decisions=await store.decisions(run_id, proposal.id) if proposal else [],
        action=await store.action_record(run_id, proposal.id) if proposal else None,
        thread=await _thread(refs_now, slack, run_id),
        page=_page(refs_now, policy, run),
        escalation_target=escalation_for(policy, run.alert.labels),
    )
    return build_report(sources)


async def _thread(refs: dict[str, str], slack: AsyncWebClient | None, run_id: str) -> Thread | None:
    channel, ts = refs.get("channel"), refs.get("thread_ts") or refs.get("root.ts")
    if not channel or not ts:
        return None
    permalink = None
    if slack is not None:
        try:
            answer = await slack.chat_getPermalink(channel=channel, message_ts=ts)
            permalink = str(answer["permalink"])
        except (SlackApiError, aiohttp.ClientError, KeyError, OSError) as exc:
            log.warning("slack: no permalink for the thread: %s", exc, extra={"run_id": run_id})
    return Thread(channel=channel, thread_ts=ts, permalink=permalink)


def _page(refs: dict[str, str], policy: Policy, run: Run) -> Page | None:
    """The page recorded in the run's Slack references (`claimant|unix time`)."""
    claimed = refs.get(PAGED)
    target = escalation_for(policy, run.alert.labels)
    if not claimed or target is None:
        return None
    _, _, at = claimed.rpartition("|")
    try:
        return Page(target=target, at=datetime.fromtimestamp(float(at), UTC))
    except ValueError:
        return None


def build_report(sources: Sources) -> Report:
    """The report of the run in `sources`."""
    run = sources.run
    calls = tool_calls(sources.transcript, sources.audit)
    return Report(
        header=_header(sources),
        timeline=timeline(run, sources.audit, calls, action=sources.action, page=sources.page),
        findings=run.findings,
        proposal=run.proposal,
        target=describe_target(run.proposal) if run.proposal else None,
        decisions=list(sources.decisions),
        action=sources.action,
        verification=verification(sources.audit),
        cost=_cost(run),
        tool_calls=calls,
        flags=[flag.describe() for flag in run.flags],
        page=sources.page,
        escalation_target=sources.escalation_target,
        thread=sources.thread,
    )


def _header(sources: Sources) -> Header:
    run, labels = sources.run, sources.run.alert.labels
    ended = run.updated_at if run.status.terminal else None
    proposed = run.proposal.proposed_at if run.proposal else None
    decided = settled_decision(sources.decisions)
    action_done = sources.action.finished_at if sources.action else None
    return Header(
        run_id=run.id,
        title=run.alert.title,
        alertname=labels.get("alertname", ""),
        service=labels.get("service") or labels.get("deployment") or labels.get("job", ""),
        namespace=labels.get("namespace", ""),
        severity=run.alert.severity,
        status=run.status.value,
        outcome=run.outcome,
        headline=run.headline,
        summary=run.summary,
        engine=f"{run.engine}: {run.engine_reason}" if run.engine_reason else run.engine,
        trigger=run.trigger,
        alert_started=in_utc(run.alert.starts_at) if run.alert.starts_at else None,
        started=run.created_at,
        ended=ended,
        to_proposal_seconds=_between(run.created_at, proposed),
        to_decision_seconds=_between(proposed, decided.at if decided else None),
        to_action_seconds=_between(run.created_at, action_done),
        to_end_seconds=_between(run.created_at, ended),
    )


def settled_decision(decisions: Sequence[Decision]) -> Decision | None:
    """The decision that ended the proposal's wait: the first rejection, else the last
    approval."""
    rejection = next((d for d in decisions if d.verdict == "reject"), None)
    return rejection or (decisions[-1] if decisions else None)


def _between(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def _cost(run: Run) -> Cost:
    usage = run.usage
    return Cost(
        model_calls=run.api_calls,
        tool_calls=run.tool_calls,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        total_tokens=usage.total,
        dollars=run.cost_dollars,
        per_model=run.model_usage,
    )
