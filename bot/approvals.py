"""The policy's verdict on a run's proposal: one function, `assess`, for every caller.

The loop, the driver, the executor, Slack, the CLI and `policy explain` all ask
`assess` (the CLI's `explain` builds the same facts without a run). It derives the
action's target from the proposal's arguments, gathers the facts the pure policy reads
(`policies.approval.evaluate`), and, only when Alertmanager's answer is all that stands
between a silence and its auto-approval, asks Alertmanager which firing alerts the
silence would affect. The caller passes its clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from bot.models import Alert, Decision, Proposal, Run
from bot.store import RunStore
from policies.approval import ProposalFacts, Requirement, evaluate, may_approve
from policies.schema import AUTO_APPROVER, Policy
from policies.target import Target
from tools.actions import ACTIONS, SILENCE, Action, ActionContext, ActionError, SilenceInput
from tools.actions.alertmanager import firing_alerts

log = logging.getLogger(__name__)

CATALOGUE: Mapping[str, Action] = {a.name: a for a in ACTIONS}
KNOWN_ACTIONS = tuple(CATALOGUE)
REVERSIBLE_ACTIONS = tuple(a.name for a in ACTIONS if a.reversible)


def target_of(action: str, arguments: Mapping[str, Any]) -> Target:
    """What the action would change with these arguments (from the arguments alone)."""
    known = CATALOGUE.get(action)
    if known is None:
        return Target.invalid(f"unknown action {action!r}")
    return known.target_of(arguments)


def facts_of(run: Run, proposal: Proposal) -> ProposalFacts:
    """What the policy reads about the run's proposal."""
    known = CATALOGUE.get(proposal.action)
    return ProposalFacts(
        action=proposal.action,
        arguments=proposal.arguments,
        target=target_of(proposal.action, proposal.arguments),
        alert_labels=run.alert.labels,
        group_labels=run.alert.group_labels,
        reversible=known is not None and known.reversible,
        flagged=bool(run.flags),
    )


async def assess(
    policy: Policy,
    run: Run,
    proposal: Proposal,
    *,
    now: datetime,
    alertmanager: ActionContext | None = None,
) -> Requirement:
    """What the policy asks of the proposal at `now`.

    With `alertmanager`, a silence that would otherwise be approved by the policy is
    checked against Alertmanager's firing alerts first; without it (or when Alertmanager
    cannot answer) it needs a human like any other proposal.
    """
    facts = facts_of(run, proposal)
    requirement = evaluate(policy, facts, now)
    if not requirement.awaits_alert_check or alertmanager is None:
        return requirement
    others = await _others_affected(alertmanager, run, proposal)
    return evaluate(policy, replace(facts, others_affected=others), now)


async def _others_affected(ctx: ActionContext, run: Run, proposal: Proposal) -> int | None:
    """How many firing alerts outside the run's group the silence matches (None: unknown)."""
    if proposal.action != SILENCE.name:
        return None
    args = SilenceInput.model_validate(proposal.arguments)
    try:
        alerts = await firing_alerts(ctx.for_proposal(run.id, proposal.id), args)
    except ActionError as exc:
        log.warning("cannot check the silence's alerts: %s", exc, extra={"run_id": run.id})
        return None
    return sum(1 for a in alerts if not _in_group(run.alert, a))


def _in_group(alert: Alert, found: Mapping[str, Any]) -> bool:
    labels = found.get("labels")
    if not isinstance(labels, dict):
        return False
    if found.get("fingerprint") == alert.fingerprint:
        return True
    group = alert.group_labels
    return bool(group) and all(labels.get(k) == v for k, v in group.items())


async def approve_by_policy(
    store: RunStore,
    run: Run,
    proposal: Proposal,
    requirement: Requirement,
    recorded: list[Decision] | None = None,
) -> list[Decision]:
    """Record the policy's own approval of an auto-approved proposal (once: a proposal it
    already approved keeps that decision); returns the proposal's decisions.

    `recorded`: the proposal's decisions as the caller read them with the run's lease
    (`Taken.decisions_on`); read here when not given."""
    decisions = recorded if recorded is not None else await store.decisions(run.id, proposal.id)
    if not requirement.auto_approved or any(d.user == AUTO_APPROVER for d in decisions):
        return decisions
    decision = Decision(
        run_id=run.id,
        proposal_id=proposal.id,
        user=AUTO_APPROVER,
        verdict="approve",
        reason=requirement.reason,
        via="policy",
    )
    await store.record_decision(decision)
    return [*decisions, decision]


def refusal(requirement: Requirement, proposal: Proposal, decision: Decision) -> str | None:
    """Why this person's decision on the proposal cannot count; None when it can."""
    if not requirement.allowed:
        return f"the policy forbids {proposal.action} here: {requirement.reason}"
    if may_approve(requirement, decision.user, frozenset(decision.groups)):
        return None
    return (
        f"{decision.user} may not decide on {proposal.action} here; "
        f"the policy asks for {requirement.approvers()} ({requirement.rule})"
    )


def describe_target(proposal: Proposal) -> str:
    """The target from the arguments, as every channel shows it."""
    return target_of(proposal.action, proposal.arguments).describe()
