"""Approve and Reject: ack at once, check the policy, record the decision, queue the resume.

Nothing waits in memory for a person: a click is checked against the policy (who may
approve this action for this alert), recorded idempotently in Redis, and a resume entry
goes on the work queue for any replica's workers. The work runs after the ack, once per
`trigger_id` (a replayed signed click does nothing). Refusals (not an approver, already
decided, expired, the bot paused, a button or modal the bot did not make) are answered
ephemerally to the person who clicked, and so is work that failed after the ack
(`AfterAck`).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import assess
from bot.deps import Deps
from bot.errors import ProposalError, RunNotFound
from bot.models import Decision, RunStatus, utcnow
from bot.pause import PauseState, pause_line
from bot.runs import record_decision
from bot.slack import blocks
from bot.slack.approvers import GroupMembers, approvers
from bot.slack.deliveries import AfterAck, by_ephemeral_post, by_response_url
from bot.slack.payloads import BlockActions, ViewSubmission
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads
from policies.approval import may_approve
from tools.redaction import redact_text

log = logging.getLogger(__name__)

Verdict = Literal["approve", "reject"]


NOT_OURS = "This is not a button or form incident-bot made; nothing was recorded."


def paused_refusal(state: PauseState) -> str:
    """Why a decision is refused while the bot is paused, and how to resume."""
    resume = (
        "It stays paused while `INCIDENT_BOT_PAUSED` is set: unset it and restart, then resume."
        if state.source == "setting"
        else "An operator or approver resumes it with `/incident resume` "
        "(or `incident-bot resume`)."
    )
    return f"incident-bot is paused, so no decision was recorded. {pause_line(state)}. {resume}"


class Target(BaseModel):
    """The proposal a button or modal is about: the `{"run": ..., "proposal": ...}`
    the bot wrote into it."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    run_id: str = Field(alias="run", min_length=1, max_length=100)
    proposal_id: str = Field(alias="proposal", min_length=1, max_length=100)


class ModalMetadata(Target):
    """The reject modal's `private_metadata`: the target and where to answer."""

    channel: str = ""


T = TypeVar("T", bound=Target)


def read_value(model: type[T], text: str) -> T | None:
    """The target a button value or modal metadata names; None when the bot did not
    write it (not JSON, or not its fields)."""
    try:
        return model.model_validate_json(text)
    except ValidationError:
        return None


class Interactions:
    """The listeners of the proposal message's buttons and of the reject modal."""

    def __init__(
        self,
        deps: Deps,
        threads: SlackThreads,
        members: GroupMembers,
        refs: MessageRefs,
        after_ack: AfterAck,
    ) -> None:
        self._deps = deps
        self._threads = threads
        self._members = members
        self._refs = refs
        self._after_ack = after_ack

    async def approve(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """The Approve button."""
        await ack()
        click = BlockActions.model_validate(body)
        self._after_ack.run(
            click.trigger_id,
            "approval",
            lambda: self._approve(click, respond),
            tell=by_response_url(respond),
        )

    async def _approve(self, click: BlockActions, respond: AsyncRespond) -> None:
        target = read_value(Target, click.actions[0].value)
        refusal = (
            NOT_OURS if target is None else await self.decide(target, click.user.id, "approve")
        )
        if refusal is not None:
            await respond(text=refusal, response_type="ephemeral", replace_original=False)

    async def reject(
        self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        """The Reject button: ask for an optional reason (a modal) before recording."""
        await ack()
        click = BlockActions.model_validate(body)
        self._after_ack.run(
            click.trigger_id,
            "rejection",
            lambda: self._ask_reason(click, client, respond),
            tell=by_response_url(respond),
        )

    async def _ask_reason(
        self, click: BlockActions, client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        target = read_value(Target, click.actions[0].value)
        paused = await self._deps.pause.current()
        if target is None or paused is not None:
            refusal = NOT_OURS if paused is None else paused_refusal(paused)
            await respond(text=refusal, response_type="ephemeral", replace_original=False)
            return
        try:
            run = await self._deps.store.load(target.run_id)
        except RunNotFound:
            await respond(text="This run no longer exists.", response_type="ephemeral")
            return
        what = f"{run.proposal.action} on {run.proposal.target}" if run.proposal else "this"
        channel = click.channel.id if click.channel else ""
        view = blocks.reject_modal(target.run_id, target.proposal_id, what, {"channel": channel})
        await client.views_open(trigger_id=click.trigger_id, view=view)

    async def reject_submitted(
        self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient
    ) -> None:
        """The reject modal was submitted: record the rejection with its reason."""
        submitted = ViewSubmission.model_validate(body)
        metadata = read_value(ModalMetadata, submitted.view.private_metadata)
        if metadata is None:  # shown under the reason field; the modal stays open
            await ack(response_action="errors", errors={"reason": NOT_OURS})
            return
        await ack()
        typed = submitted.view.state.values.get("reason", {}).get("reason")
        reason = (typed.value if typed else None) or ""
        user = submitted.user.id
        self._after_ack.run(
            submitted.trigger_id,
            "rejection",
            lambda: self._rejected(metadata, user, reason, client),
            # The modal was opened from the proposal's channel; told there.
            tell=by_ephemeral_post(client, metadata.channel, user) if metadata.channel else None,
        )

    async def _rejected(
        self, metadata: ModalMetadata, user: str, reason: str, client: AsyncWebClient
    ) -> None:
        refusal = await self.decide(metadata, user, "reject", reason)
        channel = metadata.channel or (await self._refs.load(metadata.run_id)).get("channel")
        if refusal is not None and channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=refusal)

    async def decide(
        self, target: Target, user: str, verdict: Verdict, reason: str = ""
    ) -> str | None:
        """Check and record one person's decision; returns why it was refused, or None."""
        deps = self._deps
        raw, [pause] = await deps.store.read_beside(target.run_id, [deps.pause.reading()])
        paused = await deps.pause.state_of(pause)
        if paused is not None:
            return paused_refusal(paused)
        try:
            run = deps.store.parse_doc(target.run_id, raw)
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
        requirement = await assess(deps.policy, run, proposal, now=utcnow())
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
            reason=redact_text(reason),  # typed in Slack: untrusted
            via="slack",
            groups=sorted(groups),
        )
        try:
            recorded = await record_decision(
                deps, decision, settles_at=requirement.required_approvals, run=run
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
