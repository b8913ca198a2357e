"""Execute an approved action exactly once, then verify that the signal recovered.

The action record (`started` -> `succeeded`/`failed`) is claimed with SET NX before the
call and written after it. A run that finds a `started` record it did not finish (the
process died mid-action) reconciles it, never runs it blindly a second time: the action
reads its own mark on the target (`observe_effect`); `applied` -> verify as usual;
`not_applied`, for an action that is idempotent by its proposal key -> execute it under
the same record (the policy is asked again first, and a record younger than the action's
time bound is first given the rest of it, in case its execution is still under way);
`unknown` -> `needs_attention`, with what the target looks like now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from pydantic import BaseModel, ValidationError

from bot.approvals import assess
from bot.checkpoints import Checkpointer
from bot.metrics import Metrics
from bot.models import ActionRecord, Check, Decision, Proposal, Run, RunStatus, utcnow
from bot.pause import PauseSwitch
from bot.store import RunStore
from policies.approval import Requirement, Verdict, settle
from policies.schema import AUTO_APPROVER, Policy
from tools.actions import Action, ActionContext, ActionError, Effect
from tools.prometheus import instant_value
from tools.redaction import redact_text
from tools.toolset import ToolContext, describe_validation_error

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Remediator:
    """Runs approved actions and verifies them."""

    store: RunStore
    metrics: Metrics
    checkpoints: Checkpointer
    actions: dict[str, Action]
    action_context: ActionContext
    tool_context: ToolContext
    verify_timeout_seconds: float
    verify_interval_seconds: float
    policy: Policy
    # The kill switch, asked right before an action is claimed or executed again.
    pause: PauseSwitch | None = None

    async def execute(self, run: Run) -> Run:
        """Run the approved proposal's action once; the run moves to `verifying` or ends."""
        proposal = _proposal(run)
        action = self.actions.get(proposal.action)
        if action is None:
            return await self._end(run, RunStatus.FAILED, f"unknown action {proposal.action!r}")
        try:
            args = action.input_model.model_validate(proposal.arguments)
        except ValidationError as exc:
            return await self._end(
                run,
                RunStatus.FAILED,
                f"{action.name}: invalid arguments: {describe_validation_error(exc)}",
            )
        existing, decisions = await self.store.before_action(run.id, proposal.id)
        if existing is not None:
            return await self._after_existing(run, existing, action, args)
        stopped = await self._policy_stop(run, proposal, action, decisions)
        if stopped is not None:
            return stopped
        await self._hold(run)
        record = ActionRecord(
            run_id=run.id,
            proposal_id=proposal.id,
            action=proposal.action,
            arguments=proposal.arguments,
            state="started",
            owner=self.checkpoints.owner,
        )
        existing = await self.store.begin_action(record)
        if existing is not None:
            return await self._after_existing(run, existing, action, args)
        await self.checkpoints.audit(
            run.id, "action_started", action=action.name, proposal=proposal.id
        )
        return await self._run_action(run, record, action, args)

    async def _hold(self, run: Run) -> None:
        """Raise `bot.pause.Paused` (the run noted as stopped) when the bot is paused."""
        if self.pause is not None:
            await self.pause.check(run.id, "before its action was claimed", self.checkpoints.audit)

    async def _policy_stop(
        self,
        run: Run,
        proposal: Proposal,
        action: Action,
        recorded: list[Decision] | None = None,
    ) -> Run | None:
        """Ask the policy again just before the action: the run as it stops when the
        proposal may not run now, None when it may. `recorded`: the proposal's decisions,
        read since the lease was taken (read here if None)."""
        requirement = await assess(
            self.policy, run, proposal, now=utcnow(), alertmanager=self.action_context
        )
        decisions = (
            recorded if recorded is not None else await self.store.decisions(run.id, proposal.id)
        )
        verdict = settle(requirement, decisions)
        auto = any(d.user == AUTO_APPROVER for d in decisions)
        if requirement.allowed and verdict == "pending" and auto:
            # Only the policy had approved it, and on a second look it may not (a firing
            # alert of another group now matches the silence): a human decides instead.
            await self.checkpoints.audit(
                run.id, "auto_approval_withdrawn", action=action.name, why=requirement.reason
            )
            return await self.checkpoints.write(
                run.model_copy(update={"status": RunStatus.AWAITING_APPROVAL, "decisions": []})
            )
        refused = _refusal(requirement, verdict)
        if refused is None:
            return None
        await self.checkpoints.audit(run.id, "action_refused", action=action.name, why=refused)
        return await self._end(
            run, RunStatus.NEEDS_ATTENTION, f"{action.name} was not executed: {refused}"
        )

    async def _run_action(
        self, run: Run, record: ActionRecord, action: Action, args: BaseModel
    ) -> Run:
        """Execute under the claimed `started` record and write its outcome over it."""
        context = self.action_context.for_proposal(run.id, record.proposal_id)
        try:
            # What the target's API answered is untrusted text: redacted before it is kept.
            detail = redact_text(await self._execute_within(context, action, args, record))
        except Exception as exc:  # the boundary of the action: record it, never re-run it
            error = redact_text(str(exc))
            log.exception("action failed", extra={"run_id": run.id})
            failed = record.model_copy(
                update={"state": "failed", "finished_at": utcnow(), "detail": error}
            )
            await self.store.finish_action(failed)
            await self.checkpoints.audit(run.id, "action_failed", action=action.name, error=error)
            self.metrics.actions.labels(action.name, "failed").inc()
            return await self._end(run, RunStatus.FAILED, f"{action.name} failed: {error}")
        done = record.model_copy(
            update={"state": "succeeded", "finished_at": utcnow(), "detail": detail}
        )
        await self.store.finish_action(done)
        await self.checkpoints.audit(run.id, "action_succeeded", action=action.name, detail=detail)
        self.metrics.actions.labels(action.name, "succeeded").inc()
        return await self.checkpoints.write(
            run.model_copy(update={"status": RunStatus.VERIFYING, "outcome": detail})
        )

    async def _execute_within(
        self, context: ActionContext, action: Action, args: BaseModel, record: ActionRecord
    ) -> str:
        """The action's execution, bounded in all (so an interrupted one surely ended once
        its record is that old)."""
        limit = context.timeout_seconds
        try:
            async with asyncio.timeout(limit):
                return await action.execute(context, args, record.proposal_id)
        except TimeoutError as exc:
            raise ActionError(f"{action.name} did not finish within {limit:g}s") from exc

    async def _after_existing(
        self, run: Run, existing: ActionRecord, action: Action, args: BaseModel
    ) -> Run:
        if existing.state == "succeeded":
            return await self.checkpoints.write(
                run.model_copy(update={"status": RunStatus.VERIFYING, "outcome": existing.detail})
            )
        if existing.state == "failed":
            return await self._end(
                run, RunStatus.FAILED, f"{action.name} failed: {existing.detail}"
            )
        return await self._reconcile(run, existing, action, args)

    async def _reconcile(
        self, run: Run, existing: ActionRecord, action: Action, args: BaseModel
    ) -> Run:
        """A `started` record nobody finished: act on what the target shows of it."""
        context = self.action_context.for_proposal(run.id, existing.proposal_id)
        effect = await self._effect(context, action, args, existing)
        younger = context.timeout_seconds - (utcnow() - existing.started_at).total_seconds()
        if effect == "not_applied" and younger > 0:
            # Its execution may still be under way (a driver that lost its lease): wait
            # until it surely ended, and look again.
            await asyncio.sleep(younger)
            effect = await self._effect(context, action, args, existing)
        started = (
            f"{action.name} was started by {existing.owner} at {existing.started_at:%H:%M:%S} UTC"
        )
        if effect == "applied":
            detail = (
                f"{started}; its outcome was never recorded, and its mark on the target "
                "shows it took effect"
            )
            await self.store.finish_action(
                existing.model_copy(
                    update={"state": "succeeded", "finished_at": utcnow(), "detail": detail}
                )
            )
            await self._reconciled(run, action, effect, "verifying", "reconciled_applied")
            return await self.checkpoints.write(
                run.model_copy(update={"status": RunStatus.VERIFYING, "outcome": detail})
            )
        if effect == "not_applied" and action.idempotent_by_proposal:
            stopped = await self._policy_stop(run, _proposal(run), action)
            if stopped is not None:
                return stopped
            await self._hold(run)
            await self._reconciled(run, action, effect, "executing again", "reexecuted")
            return await self._run_action(run, existing, action, args)
        try:
            seen = redact_text(await action.observe(context, args))
        except Exception as exc:  # observing is best effort; the human must look either way
            seen = redact_text(f"could not observe the target: {exc}")
        why = (
            "whether it took effect cannot be told"
            if effect == "unknown"
            else "it did not take effect, and running it again is not known to be safe"
        )
        note = (
            f"{started} and its outcome was never recorded; {why}, so it was not run again. "
            f"Target now: {seen}"
        )
        await self._reconciled(run, action, effect, "needs_attention", "interrupted")
        await self.checkpoints.audit(
            run.id, "action_interrupted", action=action.name, observed=seen
        )
        return await self._end(run, RunStatus.NEEDS_ATTENTION, note)

    async def _effect(
        self, context: ActionContext, action: Action, args: BaseModel, record: ActionRecord
    ) -> Effect:
        try:
            return await action.observe_effect(context, args, record.proposal_id)
        except Exception:  # an observation that fails proves nothing either way
            log.exception("observing the action's effect failed", extra={"run_id": record.run_id})
            return "unknown"

    async def _reconciled(
        self, run: Run, action: Action, effect: Effect, then: str, outcome: str
    ) -> None:
        await self.checkpoints.audit(
            run.id, "action_reconciled", action=action.name, effect=effect, then=then
        )
        self.metrics.actions.labels(action.name, outcome).inc()

    async def verify(self, run: Run) -> Run:
        """Re-check the signal until it is healthy (`resolved`) or time runs out."""
        check = _proposal(run).verify or check_from_alert(run)
        if check is None:
            return await self._end(
                run, RunStatus.NEEDS_ATTENTION, "the action ran; no check to verify it with"
            )
        deadline = time.monotonic() + self.verify_timeout_seconds
        value: float | None = None
        while True:
            try:
                healthy, value = await check_now(self.tool_context, check)
            except Exception as exc:  # a failed query is one failed check, not a crash
                log.warning("verification query failed: %s", exc, extra={"run_id": run.id})
            else:
                if healthy:
                    await self.checkpoints.audit(
                        run.id, "verified", check=check.describe(), value=value
                    )
                    return await self._end(
                        run,
                        RunStatus.RESOLVED,
                        f"{run.outcome}; verified: {check.describe()} (value {_fmt(value)})",
                    )
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(self.verify_interval_seconds)
        await self.checkpoints.audit(
            run.id, "verification_failed", check=check.describe(), value=value
        )
        return await self._end(
            run,
            RunStatus.NEEDS_ATTENTION,
            f"not recovered after {self.verify_timeout_seconds:g}s: {check.describe()} "
            f"still false (last value {_fmt(value)})",
        )

    async def _end(self, run: Run, status: RunStatus, outcome: str) -> Run:
        return await self.checkpoints.write(
            run.model_copy(update={"status": status, "outcome": outcome})
        )


async def dry_run(actions: Mapping[str, Action], ctx: ActionContext, proposal: Proposal) -> str:
    """What the proposed action would change, in the action's own words (redacted: it
    quotes what the target's API answered)."""
    action = actions.get(proposal.action)
    if action is None:
        return f"unknown action {proposal.action}"
    try:
        args = action.input_model.model_validate(proposal.arguments)
        return redact_text(await action.dry_run(ctx, args))
    except Exception as exc:  # the dry run informs; its failure must not hide the rest
        return redact_text(f"(dry run failed: {exc})")


def _refusal(requirement: Requirement, verdict: Verdict) -> str | None:
    """Why the policy does not let the proposal run now (checked again before the action,
    so a forged or stale `executing` run changes nothing); None when it may."""
    if not requirement.allowed:
        return requirement.reason
    if verdict != "approved":
        return f"the decisions recorded do not approve it ({requirement.reason})"
    return None


async def check_now(ctx: ToolContext, check: Check) -> tuple[bool, float | None]:
    """Whether `check` passes now, and the value its query returned (None: no series).

    Raises when Prometheus rejects the query or cannot be reached.
    """
    value = await instant_value(ctx, check.query)
    return check.passes(value), value


async def measuring_check(ctx: ToolContext, run: Run, proposal: Proposal) -> Proposal:
    """The proposal with a verification check that measures the problem: one that already
    passes (healthy before the action) cannot show recovery, so the alert's own expression
    replaces it (or, without one, nothing does); `verify_note` says why."""
    check = proposal.verify
    if check is None:
        return proposal
    try:
        healthy, value = await check_now(ctx, check)
    except Exception as exc:  # the check is kept as proposed; the note says it was not seen
        note = f"the proposed check {check.describe()} could not be evaluated beforehand ({exc})"
        log.warning("%s", note, extra={"run_id": run.id})
        return proposal.model_copy(update={"verify_note": redact_text(note)})
    if not healthy:
        return proposal
    fallback = check_from_alert(run)
    said = (
        f"the proposed check {check.describe()} is already healthy (value {_fmt(value)}), "
        "so it cannot show recovery; "
    )
    if fallback is None:
        note = said + "the alert has no expression to verify with instead, so nothing will"
    else:
        note = said + f"verifying with the alert's expression instead: {fallback.describe()}"
    return proposal.model_copy(update={"verify": fallback, "verify_note": note})


def check_from_alert(run: Run) -> Check | None:
    """The alert's own expression (from Prometheus's generator URL): healthy when empty."""
    url = run.alert.generator_url
    if not url:
        return None
    expressions = parse_qs(urlparse(url).query).get("g0.expr")
    return Check(query=expressions[0], op="absent") if expressions else None


def _proposal(run: Run) -> Proposal:
    if run.proposal is None:
        raise ValueError(f"run {run.id} has no proposal")
    return run.proposal


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4g}"
