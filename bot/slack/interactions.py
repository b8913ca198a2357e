"""Approve and Reject: ack at once, check the policy, record the decision, queue the resume.

Nothing waits in memory for a person: a click is checked against the policy (who may
approve this action for this alert), recorded idempotently in Redis, and a resume entry
goes on the work queue for any replica's workers. Refusals (not an approver, already
decided, expired) are answered ephemerally to the person who clicked.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import requirement_for
from bot.deps import Deps
from bot.errors import ProposalError, RunNotFound
from bot.models import Decision, RunStatus, utcnow
from bot.runs import record_decision
from bot.slack import blocks
from bot.slack.approvers import GroupMembers, approvers
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads
from policies.approval import may_approve

log = logging.getLogger(__name__)

Verdict = Literal["approve", "reject"]


@dataclass(frozen=True, kw_only=True)
class Target:
    """The proposal a button or modal is about."""

    run_id: str
    proposal_id: str

    @classmethod
    def from_json(cls, text: str) -> Target:
        """Read the `{"run": ..., "proposal": ...}` a button or modal carries."""
        value = json.loads(text)
        return cls(run_id=str(value["run"]), proposal_id=str(value["proposal"]))


class Interactions:
    """The listeners of the proposal message's buttons and of the reject modal."""

    def __init__(
        self, deps: Deps, threads: SlackThreads, members: GroupMembers, refs: MessageRefs
    ) -> None:
        self._deps = deps
        self._threads = threads
        self._members = members
        self._refs = refs

    async def approve(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """The Approve button."""
        await ack()
        target = Target.from_json(body["actions"][0]["value"])
        refusal = await self.decide(target, body["user"]["id"], "approve")
        if refusal is not None:
            await respond(text=refusal, response_type="ephemeral", replace_original=False)

    async def reject(
        self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        """The Reject button: ask for an optional reason (a modal) before recording."""
        await ack()
        target = Target.from_json(body["actions"][0]["value"])
        try:
            run = await self._deps.store.load(target.run_id)
        except RunNotFound:
            await respond(text="This run no longer exists.", response_type="ephemeral")
            return
        what = f"{run.proposal.action} on {run.proposal.target}" if run.proposal else "this"
        channel = (body.get("channel") or body.get("container") or {}).get("id") or ""
        view = blocks.reject_modal(target.run_id, target.proposal_id, what, {"channel": channel})
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    async def reject_submitted(
        self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The reject modal was submitted: record the rejection with its reason."""
        await ack()
        metadata = json.loads(view["private_metadata"])
        target = Target.from_json(view["private_metadata"])
        state = view.get("state", {}).get("values", {})
        reason = str(state.get("reason", {}).get("reason", {}).get("value") or "")
        user = body["user"]["id"]
        refusal = await self.decide(target, user, "reject", reason)
        channel = metadata.get("channel") or (await self._refs.load(target.run_id)).get("channel")
        if refusal is not None and channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=refusal)

    async def decide(
        self, target: Target, user: str, verdict: Verdict, reason: str = ""
    ) -> str | None:
        """Check and record one person's decision; returns why it was refused, or None."""
        deps = self._deps
        try:
            run = await deps.store.load(target.run_id)
        except RunNotFound:
            return "This run no longer exists."
        proposal = run.proposal
        if (
            proposal is None
            or proposal.id != target.proposal_id
            or run.status is not RunStatus.AWAITING_APPROVAL
        ):
            return (
                f"This proposal was already decided: the run is {blocks.status_label(run.status)}."
            )
        if utcnow() - proposal.proposed_at > timedelta(seconds=deps.approval_timeout_seconds):
            return "This proposal expired: it waited longer than the approval timeout."
        requirement = requirement_for(deps.policy, run, proposal)
        if not requirement.allowed:
            return f"The policy does not allow this action here: {requirement.reason}."
        groups = await self._members.groups_of(user, requirement.approver_groups)
        if not may_approve(requirement, user, groups):
            return (
                f"You may not decide on {proposal.action} here: the policy asks for "
                f"{approvers(requirement)}. Nothing was recorded."
            )
        decision = Decision(
            run_id=run.id,
            proposal_id=proposal.id,
            user=user,
            verdict=verdict,
            reason=reason,
            via="slack",
            groups=sorted(groups),
        )
        try:
            recorded = await record_decision(
                deps, decision, settles_at=requirement.required_approvals
            )
        except ProposalError:
            return "This proposal was already decided."
        if not recorded:
            return "You already decided on this proposal; one person's decision counts once."
        log.info(
            "decision recorded",
            extra={"run_id": run.id, "proposal": proposal.id, "verdict": verdict},
        )
        await self._threads.update_proposal(run)
        return None
