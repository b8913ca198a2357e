"""The run's headline: one line for people, worded by the fast model when a run proposes
or ends.

The fast model reads the run's summary, findings and proposal fenced as untrusted data
(they quote tool output); its answer is untrusted too: redacted, made one line and cut to
`HEADLINE_CHARS`. Without a fast model, or when it fails, and for a run the planner
finished, the run has no headline and the Slack message shows the summary as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot import fencing
from bot.batching import Command
from bot.metrics import Metrics
from bot.models import Finding, Proposal, Run
from bot.spend import DailySpend
from bot.tiering import Audit, FastModel, audit_call, charge
from bot.untrusted import count
from tools.redaction import redact

HEADLINE_CHARS = 150
SYSTEM = (
    "You write the headline of an incident investigation for the on-call channel: one "
    "plain sentence of at most 140 characters saying what is wrong and, when an action "
    "is proposed, what it is. No markdown, no preamble, no quotes.\n\n" + fencing.RULES
)


def headline_request(summary: str, findings: Sequence[Finding], proposal: Proposal | None) -> str:
    """What the fast model is asked: the run's account, fenced."""
    lines = [f"Summary: {summary}"] + [f"Finding: {f.summary}" for f in findings]
    if proposal is not None:
        lines.append(f"Proposed action: {proposal.action} on {proposal.target}")
    return "Write the headline of this run.\n" + fencing.fence("run", "\n".join(lines))


def headline_of(answer: str) -> tuple[str, dict[str, int]]:
    """The model's answer as a headline (one line, redacted, cut), and the redactions."""
    found = redact(answer)
    line = " ".join(found.text.split()).strip("\"'` ")
    if len(line) > HEADLINE_CHARS:
        line = line[: HEADLINE_CHARS - 1].rstrip() + "…"
    return line, dict(found.counts)


async def with_headline(
    fast: FastModel | None,
    run: Run,
    *,
    summary: str,
    findings: Sequence[Finding],
    proposal: Proposal | None,
    audit: Audit,
    spend: DailySpend,
    metrics: Metrics,
) -> tuple[Run, list[Command]]:
    """The run with the fast model's headline and that call's cost (unchanged without a
    fast model, or when it fails), and the command that counts the call in today's spend,
    for the caller to send beside the run's next checkpoint (`DailySpend.adding`). Only
    the model's runs get one: a run the planner took over (the model was down, over
    budget, stopped) keeps the planner's written summary."""
    if fast is None or run.engine != "model" or not (summary.strip() or findings):
        return run, []
    answer = await fast.ask(
        system=SYSTEM,
        text=headline_request(summary, findings, proposal),
        purpose="headline",
        run_id=run.id,
        max_tokens=200,
    )
    if answer is None:
        return run, []
    text, call = answer
    await audit_call(audit, run.id, call)
    line, redactions = headline_of(text)
    count(metrics, "model", redactions)
    run = charge(run, call.model, call.usage, call.dollars, investigation=False)
    counting = spend.adding(call.usage, call.dollars)
    return (run.model_copy(update={"headline": line}) if line else run), counting
