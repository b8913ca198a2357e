"""Check proposals and decisions against the policy, for the loop, the driver and the CLI.

Thin glue between runs and `policies.approval` (pure): the requirement of a run's
proposal now, the policy's own decision for an auto-approved one, and why a person's
decision cannot be recorded.
"""

from __future__ import annotations

from datetime import datetime

from bot.models import Decision, Proposal, Run, utcnow
from policies.approval import Requirement, evaluate, may_approve
from policies.schema import AUTO_APPROVER, Policy


def requirement_for(
    policy: Policy, run: Run, proposal: Proposal, now: datetime | None = None
) -> Requirement:
    """What the policy asks of the proposal's action on the run's alert at `now`."""
    return evaluate(policy, proposal.action, proposal.arguments, run.alert.labels, now or utcnow())


def auto_decision(run: Run, proposal: Proposal, requirement: Requirement) -> Decision:
    """The approval the policy itself records for an auto-approved proposal."""
    return Decision(
        run_id=run.id,
        proposal_id=proposal.id,
        user=AUTO_APPROVER,
        verdict="approve",
        reason=requirement.reason,
        via="policy",
    )


def refusal(policy: Policy, run: Run, proposal: Proposal, decision: Decision) -> str | None:
    """Why this person's decision on the proposal cannot count; None when it can."""
    requirement = requirement_for(policy, run, proposal)
    if not requirement.allowed:
        return f"the policy forbids {proposal.action} here: {requirement.reason}"
    if may_approve(requirement, decision.user, frozenset(decision.groups)):
        return None
    return (
        f"{decision.user} may not decide on {proposal.action} here; "
        f"the policy asks for {requirement.approvers()} ({requirement.rule})"
    )
