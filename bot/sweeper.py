"""The sweeper: a task in every replica that keeps any run from waiting forever.

Every `INCIDENT_BOT_SWEEP_INTERVAL` seconds it claims the due deadlines (one sorted set
shared by all replicas, each entry claimed by one of them: `bot.deadlines`) and acts on
each under its run's lease (a leased run is tried again at the next pass):

- `approval`: the proposal is settled once more, as a late drive would settle it; with
  no verdict it ends `expired` (`RunDriver.settle`), which releases the alert group. A
  proposal the decisions settled meanwhile is queued to be driven.
- `run`: an `executing` or `verifying` run past its deadline, whose driver died and
  that no replica took over (no lease, no queue entry left for a worker to reclaim),
  ends `needs_attention`, saying why (`RunDriver.stop_overdue`).

Then one replica per interval (a lock that expires) repairs what a crash or a failed
call can leave behind, over `runs:active`: a run with a decision its last drive did not
see, or a `queued` or `investigating` run that has no queue entry and no lease, is
queued again; a Slack root, proposal or closing message never posted (the closing one
of runs that ended in the last hour too) is posted; a missing deadline is scheduled; an
ended run still listed in `runs:active` is taken off it. A
repair waits until the run has been still for two intervals, so that it never races the
normal path. Each action is an audit event
and counts in `incident_bot_sweeper_actions_total{action}`.

While the bot is paused (`bot.pause`, read once per pass) proposals still expire (that
changes nothing outside the bot), deadlines are still scheduled and messages posted; but
nothing is queued by a repair and no `run` deadline ends a run (a run the pause stopped
is not overdue): those wait for the resume, whose deadlines come due again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from bot.checkpoints import Listener
from bot.deadlines import Due
from bot.deps import Deps
from bot.errors import LeaseHeld, RunNotFound
from bot.models import Run, RunStatus, utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")

# Posts a run's Slack messages that were never posted; returns the names it posted.
Reposter = Callable[[Run], Awaitable[list[str]]]

Action = Literal["expired", "deadline", "requeued", "reposted", "scheduled", "unlisted"]

CLAIMS_PER_PASS = 50
ACTIVE_RUNS_SCANNED = 1000
ENDED_RUNS_WATCHED = timedelta(hours=1)
STALL_PASSES = 3  # /readyz is 503 once the last pass is older than this many intervals
# Runs a worker must still investigate; re-driving them is always safe.
_EARLY = {RunStatus.QUEUED, RunStatus.INVESTIGATING}
_IN_SLACK = {"alert", "slack"}  # triggers whose runs have a Slack thread


@dataclass(frozen=True, kw_only=True)
class SweepReport:
    """What one pass did, for `/readyz`."""

    at: datetime  # when it finished
    seconds: float
    actions: dict[str, int]
    repaired: bool  # whether this replica ran the repairs in this pass

    def describe(self) -> dict[str, Any]:
        """The report as JSON."""
        return {
            "last_pass": self.at.isoformat(),
            "ago_seconds": round((utcnow() - self.at).total_seconds(), 1),
            "took_seconds": round(self.seconds, 3),
            "actions": self.actions,
            "repairs": self.repaired,
        }


class Sweeper:
    """One replica's sweeper: `start` it with the workers, `stop` it before them."""

    def __init__(
        self,
        deps: Deps,
        *,
        interval_seconds: float,
        listener: Listener | None = None,
        reposter: Reposter | None = None,
    ) -> None:
        """`listener` follows the checkpoints it writes (the Slack threads redraw an
        expired proposal); `reposter` posts Slack messages that were never posted."""
        self._deps = deps
        self._driver = deps.driver(listener)
        self._reposter = reposter
        self.interval = interval_seconds
        self._grace = timedelta(seconds=2 * interval_seconds)
        self._lock = f"{deps.settings.key_prefix}sweeper:repairs"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._started = utcnow()
        self._paused = False  # as read at the start of the current pass
        self.last: SweepReport | None = None

    def start(self) -> None:
        """Start sweeping, a first pass at once."""
        self._started = utcnow()
        self._task = asyncio.create_task(self._loop(), name="sweeper")

    async def stop(self) -> None:
        """Stop sweeping (a pass in progress is cancelled; its claims come due again)."""
        if self._task is None:
            return
        # The flag ends the loop even if code under the pass swallows the cancellation.
        self._stopping.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def stalled(self) -> str | None:
        """Why the sweeper is not keeping up (for `/readyz`), or None when it is."""
        if self._task is None or self._task.done():
            return "the sweeper is not running"
        since = self.last.at if self.last else self._started
        late = (utcnow() - since).total_seconds()
        if late > STALL_PASSES * self.interval:
            return f"the sweeper has not finished a pass for {late:.0f}s"
        return None

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception:  # the boundary of the task: log, and sweep again later
                log.exception("sweeper pass failed; trying again next interval")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)

    async def sweep(self) -> SweepReport:
        """One pass: the due deadlines, then (if this replica's turn) the repairs."""
        started = time.monotonic()
        actions: Counter[str] = Counter()
        self._paused = await self._deps.pause.current() is not None
        deadlines = self._deps.deadlines
        for due in await deadlines.claim_due(limit=CLAIMS_PER_PASS, retry_seconds=self.interval):
            action = await self._guarded(due.run_id, self._on_due(due))
            if action is not None:
                self._count(actions, [action])
        self._deps.metrics.approvals_overdue.set(await self._overdue_approvals())
        repaired = await self._my_turn_to_repair()
        if repaired:
            queued = await self._deps.queue.queued_runs()
            runs = await self._deps.store.list_runs(limit=ACTIVE_RUNS_SCANNED, active_only=True)
            ended = await self._recently_ended(excluding={run.id for run in runs})
            for run in [*runs, *ended]:
                self._count(actions, await self._guarded(run.id, self._repair(run, queued)) or [])
            for run in runs:
                self._count(actions, await self._guarded(run.id, self._unlist(run)) or [])
        self._deps.metrics.sweeper_last_pass.set(time.time())
        self.last = SweepReport(
            at=utcnow(),
            seconds=time.monotonic() - started,
            actions=dict(actions),
            repaired=repaired,
        )
        return self.last

    def _count(self, actions: Counter[str], done: list[Action]) -> None:
        for action in done:
            actions[action] += 1
            self._deps.metrics.sweeper_actions.labels(action).inc()

    async def _guarded(self, run_id: str, work: Awaitable[T]) -> T | None:
        """`work` on one run; a run being driven, or a failure, waits for the next pass."""
        try:
            return await work
        except LeaseHeld:
            return None
        except Exception:  # one run's trouble must not stop the sweep of the others
            log.exception("sweeper: could not handle the run", extra={"run_id": run_id})
            return None

    # -- deadlines -------------------------------------------------------------------
    async def _on_due(self, due: Due) -> Action | None:
        """Act on a claimed deadline; it is finished unless the run was leased."""
        deadlines = self._deps.deadlines
        try:
            run = await self._deps.store.load(due.run_id)
        except RunNotFound:
            await deadlines.finish(due)
            return None
        expected = deadlines.due_at(run)
        if expected is None or expected[0] != due.kind:
            await deadlines.finish(due)  # the run moved on: the reminder is stale
            return None
        if expected[1] > time.time():
            # The run was written since (a new proposal, a fresh state): due later.
            await deadlines.schedule(run.id, due.kind, expected[1])
            return None
        if due.kind == "approval":
            return await self._settle(due, run)
        if self._paused or run.id in await self._deps.queue.queued_runs():
            # Paused: comes due again. Queued: a worker will drive it (it reclaims a dead
            # one's entry, say).
            return None
        stopped = await self._driver.stop_overdue(run.id)
        await deadlines.finish(due)
        return "deadline" if stopped.status is RunStatus.NEEDS_ATTENTION else None

    async def _settle(self, due: Due, run: Run) -> Action | None:
        settled = await self._driver.settle(run.id)
        await self._deps.deadlines.finish(due)
        if settled.status is RunStatus.EXPIRED:
            log.info("proposal expired", extra={"run_id": run.id})
            return "expired"
        if settled.status is RunStatus.EXECUTING:  # approved in time, never driven
            await self._requeue(settled, "approved, but its resume was never driven")
            return "requeued"
        return None

    async def _overdue_approvals(self) -> int:
        """Runs still awaiting approval whose timeout passed more than two intervals ago:
        proposals no pass managed to expire (`incident_bot_approvals_overdue`)."""
        deadlines = self._deps.deadlines
        late = time.time() - 2 * self.interval
        overdue = 0
        for run_id in await deadlines.tracked("approval", limit=ACTIVE_RUNS_SCANNED):
            with contextlib.suppress(RunNotFound):
                due = deadlines.due_at(await self._deps.store.load(run_id))
                if due is not None and due[0] == "approval" and due[1] < late:
                    overdue += 1
        return overdue

    # -- repairs ---------------------------------------------------------------------
    async def _my_turn_to_repair(self) -> bool:
        """One replica repairs per interval: whoever sets the lock first."""
        interval_ms = int(self.interval * 1000)
        taken = await self._deps.store.redis.set(
            self._lock, self._deps.owner, nx=True, px=interval_ms
        )
        return bool(taken)

    async def _repair(self, run: Run, queued: set[str]) -> list[Action]:
        """What a crash may have left undone for this run, done now."""
        done: list[Action] = []
        if await self._deps.deadlines.track(run, only_new=True):
            await self._audit(run, "a deadline was missing", deadline=run.status.value)
            done.append("scheduled")
        if utcnow() - run.updated_at < self._grace:
            return done  # the normal path may still be on its way
        why = None if run.id in queued else await self._undriven(run)
        if (
            why is not None
            and not self._paused
            and await self._deps.store.lease_holder(run.id) is None
        ):
            await self._requeue(run, why)
            done.append("requeued")
        # An early run's next checkpoint posts what is missing; a waiting one has none.
        if self._reposter is not None and run.trigger in _IN_SLACK and run.status not in _EARLY:
            posted = await self._reposter(run)
            if posted:
                await self._audit(run, "slack messages were never posted", messages=posted)
                done.append("reposted")
        return done

    async def _unlist(self, run: Run) -> list[Action]:
        """An ended run still in `runs:active` (its write's removal failed: logged then)
        is taken off it, so that ended runs do not crowd the active ones out of the scan."""
        if not run.status.terminal or utcnow() - run.updated_at < self._grace:
            return []
        await self._deps.store.unlist(run.id)
        await self._audit(run, "an ended run was still listed as active")
        return ["unlisted"]

    async def _recently_ended(self, *, excluding: set[str]) -> list[Run]:
        """Runs that ended within `ENDED_RUNS_WATCHED`, but for those `excluding` names
        (read already, as active): their closing message (which says why, and pages
        someone) may still be unposted."""
        since = utcnow() - ENDED_RUNS_WATCHED
        store = self._deps.store
        runs = await store.list_runs(limit=ACTIVE_RUNS_SCANNED, excluding=excluding)
        return [r for r in runs if r.status.terminal and r.updated_at >= since]

    async def _undriven(self, run: Run) -> str | None:
        """Why a run with no queue entry must be driven again, or None."""
        if run.status in _EARLY:
            return f"{run.status.value} without a queue entry"
        if run.status is not RunStatus.AWAITING_APPROVAL or run.proposal is None:
            return None
        store = self._deps.store
        if await store.decision_count(run.id) <= await self._deps.marks.seen(run.id):
            return None
        decisions = await store.decisions(run.id, run.proposal.id)
        if not decisions or utcnow() - decisions[-1].at < self._grace:
            return None
        return "a decision its last drive did not see"

    async def _requeue(self, run: Run, why: str) -> None:
        reason: Literal["start", "resume"] = "start" if run.status in _EARLY else "resume"
        await self._deps.queue.enqueue(run.id, reason)
        await self._audit(run, why, requeued=reason)
        log.info("sweeper queued the run again: %s", why, extra={"run_id": run.id})

    async def _audit(self, run: Run, why: str, **data: Any) -> None:
        await self._deps.store.audit(run.id, "repaired", why=why, by=self._deps.owner, **data)
