"""A run's report as Markdown, to paste into a post-mortem (or read as a file in Slack)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from bot.models import ESCALATED_STATES, RunStatus
from bot.report import Report, settled_decision
from bot.report_timeline import Entry


def duration(seconds: float) -> str:
    """`850 ms`, `4.2 s`, `2 min 14 s`, `1 h 3 min`, `2 d 4 h`."""
    sign, seconds = ("-" if seconds < 0 else ""), abs(seconds)
    if seconds < 1:
        return f"{sign}{seconds * 1000:.0f} ms"
    if seconds < 10:
        return f"{sign}{seconds:.1f} s"
    whole = round(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [(days, "d"), (hours, "h")]
    elif hours:
        parts = [(hours, "h"), (minutes, "min")]
    else:
        parts = [(minutes, "min"), (secs, "s")]
    shown = " ".join(f"{n} {unit}" for n, unit in parts if n) or "0 s"
    return sign + shown


def render_markdown(report: Report) -> str:
    """The whole report: header, timeline, findings, proposal, decisions, action,
    verification, escalation, cost, flags and the raw tool calls."""
    sections = [
        _header(report),
        _timeline(report),
        _findings(report),
        _proposal(report),
        _decisions(report),
        _action(report),
        _escalation(report),
        _cost(report),
        _flags(report),
        _tool_calls(report),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def _header(report: Report) -> str:
    h = report.header
    where = "/".join(v for v in (h.namespace, h.service) if v)
    lines = [f"# Incident report: {_inline(h.title)}", ""]
    lines.append(f"**{_status(h.status)}** · severity `{h.severity}` · run `{h.run_id}`")
    said = h.headline or h.summary
    if said:
        lines += ["", f"> {_inline(said)}"]
    rows: list[tuple[str, str]] = []
    if h.alertname:
        rows.append(("Alert", f"`{h.alertname}`"))
    if where:
        rows.append(("Service", where))
    if h.alert_started:
        rows.append(("Alert started firing", _when(h.alert_started)))
    rows.append(("Run started", _when(h.started)))
    if h.ended:
        rows.append(("Run ended", _when(h.ended)))
    ends = "Time to resolve" if h.status == RunStatus.RESOLVED else "Time to end"
    for label, seconds in (
        ("Time to proposal", h.to_proposal_seconds),
        ("Time to decision (from the proposal)", h.to_decision_seconds),
        ("Time to action done", h.to_action_seconds),
        (ends, h.to_end_seconds),
    ):
        if seconds is not None:
            rows.append((label, duration(seconds)))
    if h.outcome:
        rows.append(("Outcome", h.outcome))
    decided = settled_decision(report.decisions)
    if decided is not None:
        verdict = "Approved" if decided.verdict == "approve" else "Rejected"
        rows.append(
            ("Decision", f"{verdict} by {decided.user} via {decided.via}, {_when(decided.at)}")
        )
    if report.action is not None:
        rows.append(
            ("Action", f"`{report.action.action}` on {report.target}: {report.action.state}")
        )
    rows.append(("Engine", h.engine))
    c = report.cost
    rows.append(
        (
            "Cost",
            f"${c.dollars:.4f} for {c.total_tokens:,} tokens; {c.model_calls} model calls, "
            f"{c.tool_calls} tool calls",
        )
    )
    rows.append(("Slack thread", _thread(report)))
    lines += ["", "| | |", "| --- | --- |"]
    lines += [f"| {label} | {_cell(value)} |" for label, value in rows]
    if h.summary and h.summary != said:
        lines += ["", "## Summary", "", _inline(h.summary)]
    return "\n".join(lines)


def _thread(report: Report) -> str:
    thread = report.thread
    if thread is None:
        return "none (the run was not posted to Slack)"
    if thread.permalink:
        return thread.permalink
    return f"channel {thread.channel}, thread ts {thread.thread_ts}"


def _timeline(report: Report) -> str:
    if not report.timeline:
        return ""
    days = {e.at.date() for e in report.timeline}
    same_day = len(days) == 1
    heading = f"## Timeline ({next(iter(days))}, UTC)" if same_day else "## Timeline (UTC)"
    lines = [
        heading,
        "",
        "| Time | Since start | Stage | What happened | Took |",
        "| --- | ---: | --- | --- | ---: |",
    ]
    call = 0
    for entry in report.timeline:
        what = entry.title
        if entry.stage == "tool":
            call += 1
            what += f" (tool call {call})"
        elif entry.stage == "findings":
            what += " (see Findings)"
        elif entry.detail:
            what += f" — {entry.detail}"
        took = duration(entry.seconds) if entry.seconds is not None else ""
        at = f"{entry.at:%H:%M:%S}" if same_day else f"{entry.at:%Y-%m-%d %H:%M:%S}"
        since = _offset(entry)
        lines.append(f"| {at} | {since} | {entry.stage} | {_cell(what)} | {took} |")
    return "\n".join(lines)


def _offset(entry: Entry) -> str:
    shown = duration(entry.offset_seconds)
    return shown if shown.startswith("-") else f"+{shown}"


def _findings(report: Report) -> str:
    if not report.findings:
        return ""
    lines = ["## Findings", ""]
    for n, finding in enumerate(report.findings, 1):
        line = f"{n}. {_inline(finding.summary)}"
        if finding.evidence:
            source = f" ({finding.tool})" if finding.tool else ""
            line += f" — evidence{source}: {_inline(finding.evidence)}"
        if finding.unverified:
            line += f" **⚠ unverified:** {_inline(finding.unverified)}"
        lines.append(line)
    return "\n".join(lines)


def _proposal(report: Report) -> str:
    p = report.proposal
    if p is None:
        return ""
    check = p.verify.describe() if p.verify else "the alert's own expression"
    items = [
        ("Action", f"`{p.action}` on {report.target}"),
        ("Risk", p.risk),
        ("Rationale", _inline(p.rationale)),
        ("Expected effect", _inline(p.expected_effect)),
        ("Verification check", check + (f" ({_inline(p.verify_note)})" if p.verify_note else "")),
        ("Proposed at", _when(p.proposed_at)),
    ]
    return "\n".join(["## Proposal", "", *(f"- **{k}:** {v}" for k, v in items)])


def _decisions(report: Report) -> str:
    if not report.decisions:
        return ""
    lines = ["## Decisions", ""]
    for d in report.decisions:
        verdict = "Approved" if d.verdict == "approve" else "Rejected"
        reason = f": {_inline(d.reason)}" if d.reason else ""
        lines.append(f"- {_when(d.at)} — {verdict} by {d.user} via {d.via}{reason}")
    return "\n".join(lines)


def _action(report: Report) -> str:
    record = report.action
    lines = []
    if record is not None:
        span = _when(record.started_at)
        if record.finished_at is not None:
            took = duration((record.finished_at - record.started_at).total_seconds())
            span += f" → {record.finished_at:%H:%M:%S} UTC ({took})"
        lines += [
            f"- `{record.action}`: **{record.state}**, by {record.owner}, {span}",
            *([f"- {_inline(record.detail)}"] if record.detail else []),
        ]
    if report.verification:
        lines.append(f"- {_inline(report.verification)}")
    return "\n".join(["## Action and verification", "", *lines]) if lines else ""


def _escalation(report: Report) -> str:
    if report.page is not None:
        line = f"Paged {report.page.target} at {_when(report.page.at)}."
    elif RunStatus(report.header.status) in ESCALATED_STATES:
        line = (
            f"Nobody was paged: the policy routes it to {report.escalation_target}, but no page "
            "was recorded (the run was not posted to Slack)."
            if report.escalation_target
            else "Nobody was paged: the policy's `routing` names no `escalate`."
        )
    else:
        return ""
    return f"## Escalation\n\n{line}"


def _cost(report: Report) -> str:
    c = report.cost
    lines = [
        "## Cost and tokens",
        "",
        "| Model | Calls | Input | Output | Cache read | Cache write | Cost |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model, used in sorted(c.per_model.items()):
        u = used.usage
        lines.append(
            f"| `{model}` | {used.calls} | {u.input_tokens:,} | {u.output_tokens:,} | "
            f"{u.cache_read_tokens:,} | {u.cache_write_tokens:,} | ${used.cost_dollars:.4f} |"
        )
    lines.append(
        f"| **all** | {c.model_calls} | {c.input_tokens:,} | {c.output_tokens:,} | "
        f"{c.cache_read_tokens:,} | {c.cache_write_tokens:,} | ${c.dollars:.4f} |"
    )
    return "\n".join(lines)


def _flags(report: Report) -> str:
    if not report.flags:
        return ""
    lines = ["## Possible prompt injections", "", *(f"- {_inline(f)}" for f in report.flags)]
    lines.append("")
    lines.append("Runs with flags are never approved by the policy alone.")
    return "\n".join(lines)


def _tool_calls(report: Report) -> str:
    if not report.tool_calls:
        return ""
    lines = ["## Tool calls (raw)", ""]
    for n, call in enumerate(report.tool_calls, 1):
        took = f", {duration(call.seconds)}" if call.seconds is not None else ""
        lines.append(
            f"{n}. {call.at:%H:%M:%S} `{call.tool}` — {call.status}{took}: {_inline(call.summary)}"
        )
        lines += _fenced(call.arguments)
    return "\n".join(lines)


def _fenced(text: str) -> Iterable[str]:
    fence = "```"
    while fence in text:
        fence += "`"
    return [f"   {fence}json", f"   {text}", f"   {fence}"]


def _status(status: str) -> str:
    return status.replace("_", " ").capitalize()


def _when(at: datetime) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _inline(text: str) -> str:
    """Stored text on one line."""
    return " ".join(text.split())


def _cell(text: str) -> str:
    """Text for a table cell: one line, its pipes escaped."""
    return _inline(text).replace("|", "\\|")
