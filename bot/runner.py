"""Drive one run through its states while holding its lease.

`queued/investigating` -> the investigation loop; `awaiting_approval` -> tally the
decisions (nothing waits in memory: without a verdict the lease is released and the
run stays in Redis); `executing` -> the action, once; `verifying` -> the check. Any
process may drive any run: whoever takes the lease continues from the last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from redis.exceptions import RedisError

from bot.approvals import approve_by_policy, assess
from bot.checkpoints import Checkpointer
from bot.drives import DriveMarks
from bot.errors import LeaseHeld
from bot.investigation import Investigator
from bot.metrics import Metrics
from bot.models import Decision, Run, RunStatus, Step, utcnow
from bot.remediation import Remediator
from bot.store import RunStore, Taken
from policies.approval import Requirement, counts, settle
from policies.schema import Policy

log = logging.getLogger(__name__)

# How soon a failed lease renewal is tried again.
_RENEW_RETRY_SECONDS = 0.5
# The states whose drive reads the transcript (the investigation's); taken with the lease.
_INVESTIGATING = frozenset({RunStatus.QUEUED, RunStatus.INVESTIGATING})
# The state whose drive reads the decisions (to settle the proposal); taken with the lease.
_AWAITING = frozenset({RunStatus.AWAITING_APPROVAL})


@dataclass
class _Held:
    """A drive's hold on a run: the run as the lease was taken, and the decision count
    its end marks (`DriveMarks`), set when the drive finished (None: it did not); once
    the lease is given back, whether decisions were recorded after that count."""

    taken: Taken
    finished_with: int | None = None
    unseen: bool = False


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
    # How long an `executing` or `verifying` run may stay so (see `bot.deadlines`).
    busy_seconds: float
    policy: Policy
    marks: DriveMarks

    async def drive(self, run_id: str, *, needing_no_slot: bool = False) -> Run:
        """Take the lease and move the run as far as it can go now.

        Returns the run when it ends or waits for a human; raises `LeaseHeld` when
        another worker is driving it. A decision recorded while it drove, unseen, gets
        the run driven again at once: that decision's resume may have found the lease
        held, and would wait for its queue entry's reclaim. `needing_no_slot`: a run
        that is to be investigated (which takes the worker's slots) is returned as the
        take read it, not driven.
        """
        return await self._until_seen(
            functools.partial(self._drive_once, needing_no_slot=needing_no_slot), run_id
        )

    async def _drive_once(self, run_id: str, *, needing_no_slot: bool) -> tuple[Run, bool]:
        """`drive`, once; and whether decisions came in while it drove."""
        async with self._lease(
            run_id, transcript_when=_INVESTIGATING, decisions_when=_AWAITING
        ) as held:
            # Counted with the lease: a decision recorded during the drive is one it has
            # not seen.
            run = self.store.parsed(held.taken)
            if needing_no_slot and run.status in _INVESTIGATING:
                return run, False  # not driven: the lease is given back, no end marked
            transcript = held.taken.transcript() if run.status in _INVESTIGATING else None
            found = run.proposal.id if run.proposal is not None else None
            decisions = held.taken.decisions_on(found) if found is not None else None
            while True:
                before = run.status
                new = run.proposal is not None and run.proposal.id != found
                run = await self._step(run, transcript, decisions, new_proposal=new)
                # Read once: later steps of the drive read their own.
                transcript, decisions = None, None
                if run.status.terminal or run.status == before:
                    held.finished_with = held.taken.decisions
                    break
        return run, held.unseen

    async def settle(self, run_id: str) -> Run:
        """Take the lease and settle the run's proposal once, if it awaits approval: a
        proposal past its approval timeout with no verdict expires. Goes no further (an
        approved run is left `executing` for a worker); raises `LeaseHeld`. Settled
        again at once if decisions were recorded meanwhile (as `drive`)."""
        return await self._until_seen(self._settle_once, run_id)

    async def _until_seen(
        self, once: Callable[[str], Awaitable[tuple[Run, bool]]], run_id: str
    ) -> Run:
        """`once(run_id)`, again while each time decisions came in that it did not see
        (and the run has not ended); the first's `LeaseHeld` is raised, a later one ends
        it (the lease's holder reads the decisions)."""
        run, unseen = await once(run_id)
        while unseen and not run.status.terminal:
            log.info("decisions came in while the run was held: again", extra={"run_id": run_id})
            try:
                run, unseen = await once(run_id)
            except LeaseHeld:
                break
        return run

    async def _settle_once(self, run_id: str) -> tuple[Run, bool]:
        async with self._lease(run_id, decisions_when=_AWAITING) as held:
            run = self.store.parsed(held.taken)
            if run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None:
                decisions = held.taken.decisions_on(run.proposal.id)
                run = await self._settle_proposal(run, decisions)
            held.finished_with = held.taken.decisions
        return run, held.unseen

    async def stop_overdue(self, run_id: str) -> Run:
        """Take the lease and end an `executing` or `verifying` run past its deadline
        (`needs_attention`, saying what is known of its action); raises `LeaseHeld`.

        A live driver holds the lease, so this only ends a run whose driver died and
        that no other replica took over in time.
        """
        async with self._lease(run_id) as held:
            run = self.store.parsed(held.taken)
            allowed = timedelta(seconds=self.busy_seconds)
            busy = run.status in (RunStatus.EXECUTING, RunStatus.VERIFYING)
            if not busy or utcnow() - run.updated_at < allowed:
                return run
            assert run.proposal is not None  # noqa: S101 - executing always has one
            record = await self.store.action_record(run.id, run.proposal.id)
            known = (
                "the action was never started"
                if record is None
                else f"its action record says {record.state}"
                + (f": {record.detail}" if record.detail else "")
            )
            # Written by the checkpoint that ends the run, like an expiry's event.
            await self.checkpoints.note(
                run.id, "deadline_passed", state=run.status.value, action=known
            )
            return await self.checkpoints.write(
                run.model_copy(
                    update={
                        "status": RunStatus.NEEDS_ATTENTION,
                        "outcome": f"no replica finished {run.status.value} within "
                        f"{self.busy_seconds:g}s (its driver stopped); {known}",
                    }
                )
            )

    async def _step(
        self,
        run: Run,
        transcript: Sequence[Step] | None = None,
        decisions: list[Decision] | None = None,
        *,
        new_proposal: bool = False,
    ) -> Run:
        """One state's work; `transcript`: the run's steps, `decisions`: its proposal's
        decisions, if already read; `new_proposal`: the run's proposal was made by this
        drive (see `_settle_proposal`)."""
        match run.status:
            case RunStatus.QUEUED | RunStatus.INVESTIGATING:
                self.metrics.runs.labels("investigating").inc()
                try:
                    return await self.investigator.investigate(run, transcript)
                finally:
                    self.metrics.runs.labels("investigating").dec()
            case RunStatus.AWAITING_APPROVAL:
                return await self._settle_proposal(run, decisions, new=new_proposal)
            case RunStatus.EXECUTING:
                return await self.remediator.execute(run)
            case RunStatus.VERIFYING:
                return await self.remediator.verify(run)
            case _:
                return run

    async def _settle_proposal(
        self, run: Run, recorded: list[Decision] | None = None, *, new: bool = False
    ) -> Run:
        """Count the decisions the policy accepts; a forbidden proposal never executes.
        `recorded`: the proposal's decisions as read with the lease (read here if None).

        `new`: the proposal was made by this drive, after it took the lease. While only a
        decision could settle it, none is read: any recorded on it came after the lease's
        count (`Taken.decisions`), so the drive's end finds it and `drive` goes again (or,
        were that lost, the sweeper's repair, `bot.drives`).
        """
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
        in_time = now - proposal.proposed_at < timedelta(seconds=self.approval_timeout_seconds)
        undecided = not requirement.auto_approved and settle(requirement, []) == "pending"
        if new and in_time and undecided:
            return run
        # The policy may approve on its own now (e.g. a freeze ended while the run waited).
        decisions = await approve_by_policy(self.store, run, proposal, requirement, recorded)
        verdict = settle(requirement, decisions)
        if verdict == "pending":
            if in_time:
                return run
            return await self._expire(run, decisions, requirement)
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

    async def _expire(self, run: Run, decisions: list[Decision], requirement: Requirement) -> Run:
        """End the run `expired`: nobody decided on its proposal within the timeout (the
        one meaning of expiry, for a late drive and for the sweeper alike)."""
        assert run.proposal is not None  # noqa: S101 - only a proposal expires
        # Noted, so that the checkpoint that ends the run writes its event with it: who
        # reads the run `expired` reads why.
        await self.checkpoints.note(
            run.id,
            "expired",
            proposal=run.proposal.id,
            asked=requirement.approvers(),
            timeout_seconds=self.approval_timeout_seconds,
            decisions=len(decisions),
        )
        return await self.checkpoints.write(
            run.model_copy(
                update={
                    "status": RunStatus.EXPIRED,
                    "decisions": decisions,
                    "outcome": f"no decision within {self.approval_timeout_seconds:g}s "
                    f"from {requirement.approvers()} ({requirement.reason})",
                }
            )
        )

    @contextlib.asynccontextmanager
    async def holding(self, run_id: str) -> AsyncIterator[None]:
        """The run's lease, for work on the run outside `drive` (parking, retrying);
        raises `LeaseHeld` when another worker has it."""
        async with self._lease(run_id):
            yield

    @contextlib.asynccontextmanager
    async def _lease(
        self,
        run_id: str,
        *,
        transcript_when: frozenset[RunStatus] = frozenset(),
        decisions_when: frozenset[RunStatus] = frozenset(),
    ) -> AsyncIterator[_Held]:
        """Hold the run's lease while the block runs, renewed in the background; the run
        is read with the lease (`RunStore.take`). When the block ends, a drive that
        finished leaves its end marks and gives the lease back in one script (a Redis
        error there is raised, and the lease expires); otherwise the lease is released
        however the block ends (if Redis refuses that too, it expires)."""
        # This drive's own: see `Checkpointer.leased`.
        owner = f"{self.checkpoints.owner}/{secrets.token_hex(4)}"
        asked = time.monotonic()
        taken = await self.store.take(
            run_id,
            owner,
            self.lease_seconds,
            transcript_when=transcript_when,
            decisions_when=decisions_when,
        )
        held = _Held(taken=taken)
        renewer = asyncio.create_task(
            self._renew(run_id, owner, expires=asked + self.lease_seconds),
            name=f"lease-renewer:{run_id}",
        )
        with self.checkpoints.leased(owner):
            try:
                yield held
            finally:
                renewer.cancel()
                # Never raises: the renewer ends only by cancellation or by returning.
                await asyncio.wait([renewer])
                try:
                    # Events noted for a write that never came (the drive failed) still count.
                    await self.checkpoints.flush(run_id)
                except (RedisError, OSError) as exc:
                    log.warning(
                        "could not append the drive's last audit events: %s",
                        exc,
                        extra={"run_id": run_id},
                    )
                if held.finished_with is not None:
                    recorded = await self.marks.end(
                        run_id,
                        held.finished_with,
                        lease_key=self.store.lease_key(run_id),
                        decisions_key=self.store.decisions_key(run_id),
                        owner=owner,
                    )
                    held.unseen = recorded > held.finished_with
                else:
                    await self._release(run_id, owner)

    async def _release(self, run_id: str, owner: str) -> None:
        """Give the lease back; a Redis error is logged (the lease expires by itself)."""
        try:
            await self.store.release_lease(run_id, owner)
        except (RedisError, OSError) as exc:
            log.warning(
                "could not release the lease (it expires by itself): %s",
                exc,
                extra={"run_id": run_id},
            )

    async def _renew(self, run_id: str, owner: str, *, expires: float) -> None:
        """Extend the lease every third of its TTL. A Redis error is retried until the
        lease would have expired (`expires`, monotonic); then, or when someone else holds
        it, the lease is lost: the drive's next checkpoint is refused (`StaleWrite`) and
        stops it."""
        pause = self.lease_seconds / 3
        while True:
            await asyncio.sleep(pause)
            asked = time.monotonic()
            try:
                renewed = await self.store.renew_lease(run_id, owner, self.lease_seconds)
            except (RedisError, OSError) as exc:  # OSError covers socket timeouts
                left = expires - time.monotonic()
                if left <= 0:
                    log.error(
                        "lease lost: Redis failed until it expired (%s)",
                        exc,
                        extra={"run_id": run_id},
                    )
                    return
                log.warning(
                    "lease renewal failed, retrying for %.1fs: %s",
                    left,
                    exc,
                    extra={"run_id": run_id},
                )
                pause = min(_RENEW_RETRY_SECONDS, left)
                continue
            if not renewed:
                log.error(
                    "lease lost: it expired or another worker holds it", extra={"run_id": run_id}
                )
                return
            expires = asked + self.lease_seconds
            pause = self.lease_seconds / 3
