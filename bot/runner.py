"""Drive one run through its states while holding its lease.

`queued/investigating` -> the investigation loop; `awaiting_approval` -> tally the
decisions (nothing waits in memory: without a verdict the lease is released and the
run stays in Redis); `executing` -> the action, once; `verifying` -> the check. Any
process may drive any run: whoever takes the lease continues from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from bot.approvals import approve_by_policy, assess
from bot.checkpoints import Checkpointer
from bot.investigation import Investigator
from bot.metrics import Metrics
from bot.models import Run, RunStatus, utcnow
from bot.remediation import Remediator
from bot.store import RunStore
from policies.approval import counts, settle
from policies.schema import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunDriver:
    """Moves runs forward; one instance per process."""

    store: RunStore
    metrics: Metrics
    checkpoints: Checkpointer
    investigator: Investigator
    remediator: Remediator
    lease_seconds: float
    approval_timeout_seconds: float
    policy: Policy

    async def drive(self, run_id: str) -> Run:
        """Take the lease and move the run as far as it can go now.

        Returns the run when it ends or waits for a human; raises `LeaseHeld` when
        another worker is driving it.
        """
        async with self._lease(run_id):
            run = await self.store.load(run_id)
            while True:
                before = run.status
                run = await self._step(run)
                if run.status.terminal or run.status == before:
                    return run

    async def _step(self, run: Run) -> Run:
        match run.status:
            case RunStatus.QUEUED | RunStatus.INVESTIGATING:
                self.metrics.runs.labels("investigating").inc()
                try:
                    return await self.investigator.investigate(run)
                finally:
                    self.metrics.runs.labels("investigating").dec()
            case RunStatus.AWAITING_APPROVAL:
                return await self._settle_proposal(run)
            case RunStatus.EXECUTING:
                return await self.remediator.execute(run)
            case RunStatus.VERIFYING:
                return await self.remediator.verify(run)
            case _:
                return run

    async def _settle_proposal(self, run: Run) -> Run:
        """Count the decisions the policy accepts; a forbidden proposal never executes."""
        proposal = run.proposal
        assert proposal is not None  # noqa: S101 - awaiting_approval always has one
        now = utcnow()
        requirement = await assess(
            self.policy, run, proposal, now=now, alertmanager=self.remediator.action_context
        )
        if not requirement.allowed:
            await self.checkpoints.audit(run.id, "proposal_forbidden", reason=requirement.reason)
            return await self.checkpoints.write(
                run.model_copy(
                    update={
                        "status": RunStatus.NEEDS_ATTENTION,
                        "outcome": f"{proposal.action} was not executed: {requirement.reason}",
                    }
                )
            )
        # The policy may approve on its own now (e.g. a freeze ended while the run waited).
        decisions = await approve_by_policy(self.store, run, proposal, requirement)
        verdict = settle(requirement, decisions)
        if verdict == "pending":
            waited = now - proposal.proposed_at
            if waited < timedelta(seconds=self.approval_timeout_seconds):
                return run
            return await self.checkpoints.write(
                run.model_copy(
                    update={
                        "status": RunStatus.EXPIRED,
                        "decisions": decisions,
                        "outcome": f"no decision within {self.approval_timeout_seconds:g}s "
                        f"({requirement.reason})",
                    }
                )
            )
        counted = [d for d in decisions if counts(requirement, d)]
        decided_after = (counted[-1].at - proposal.proposed_at).total_seconds()
        self.metrics.time_to_decision.observe(max(decided_after, 0.0))
        if verdict == "rejected":
            rejection = next(d for d in counted if d.verdict == "reject")
            reason = f": {rejection.reason}" if rejection.reason else ""
            return await self.checkpoints.write(
                run.model_copy(
                    update={
                        "status": RunStatus.REJECTED,
                        "decisions": decisions,
                        "outcome": f"rejected by {rejection.user}{reason}",
                    }
                )
            )
        return await self.checkpoints.write(
            run.model_copy(update={"status": RunStatus.EXECUTING, "decisions": decisions})
        )

    @contextlib.asynccontextmanager
    async def _lease(self, run_id: str) -> AsyncIterator[None]:
        owner = self.checkpoints.owner
        await self.store.acquire_lease(run_id, owner, self.lease_seconds)
        renewer = asyncio.create_task(self._renew(run_id, owner))
        try:
            yield
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer
            await self.store.release_lease(run_id, owner)

    async def _renew(self, run_id: str, owner: str) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not await self.store.renew_lease(run_id, owner, self.lease_seconds):
                # The next checkpoint will be refused (StaleWrite) and stop the work.
                log.error("lease lost", extra={"run_id": run_id})
                return
