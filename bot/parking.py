"""Poison work: a queue entry whose drives keep failing is parked, and retried on request.

A drive that raises leaves its entry pending, so the queue hands it out again after the
reclaim delay. When the drive of its `PARK_AFTER_DELIVERIES`th delivery raises too, the
worker parks it: the entry is copied to the dead-letter stream, the run ends
`needs_attention` with the error (a fenced write, under the run's lease), and the entry
is acknowledged. `incident-bot runs retry RUN_ID` puts the run back in the state it was
parked from and queues it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from bot.deps import Deps
from bot.errors import LeaseHeld, NotRetryable, StoreError
from bot.metrics import Metrics
from bot.models import Run, RunStatus, utcnow
from bot.queue import DeadLetter, Entry, WorkQueue
from bot.runner import RunDriver
from bot.store import RunStore
from tools.redaction import redact_text

log = logging.getLogger(__name__)

PARK_AFTER_DELIVERIES = 3
_ERROR_CHARS = 1000


def describe_failure(exc: BaseException) -> str:
    """The exception as bounded, redacted text for the audit trail and the run's outcome."""
    text = redact_text(f"{type(exc).__name__}: {exc}")
    return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "…"


async def park(
    driver: RunDriver, queue: WorkQueue, metrics: Metrics, entry: Entry, error: str
) -> bool:
    """Dead-letter the entry, end its run `needs_attention` with `error`, acknowledge it.

    Returns False, having done nothing, when another worker holds the run's lease (the
    entry stays pending; its next failure tries again).
    """
    try:
        async with driver.holding(entry.run_id):
            run = await _readable(driver.store, entry.run_id)
            if run is None or not run.status.terminal:
                # The copy first: a crash before the run's write parks it again later.
                await queue.dead_letter(entry, status=run.status.value if run else "", error=error)
                await driver.checkpoints.audit(
                    entry.run_id,
                    "dead_lettered",
                    entry=entry.id,
                    deliveries=entry.deliveries,
                    status=run.status.value if run else None,
                    error=error,
                )
                if run is not None:
                    await driver.checkpoints.write(
                        run.model_copy(
                            update={
                                "status": RunStatus.NEEDS_ATTENTION,
                                "outcome": f"parked after {entry.deliveries} failed drives: "
                                f"{error} (fix the cause, then `incident-bot runs retry "
                                f"{run.id}`)",
                            }
                        )
                    )
                metrics.dead_letters.inc()
    except LeaseHeld:
        log.info("not parked: the run is leased elsewhere", extra={"run_id": entry.run_id})
        return False
    await queue.ack(entry)
    log.error(
        "queue entry parked in the dead-letter stream",
        extra={"run_id": entry.run_id, "deliveries": entry.deliveries},
    )
    return True


async def _readable(store: RunStore, run_id: str) -> Run | None:
    """The run, or None when it cannot be loaded (then only the entry is parked)."""
    try:
        return await store.load(run_id)
    except StoreError:
        return None


@dataclass(frozen=True, kw_only=True)
class Retried:
    """A parked run, queued again."""

    run: Run
    parked: DeadLetter


async def retry(deps: Deps, run_id: str, *, user: str) -> Retried:
    """Put a parked run back in the state it was parked from and queue it again.

    Raises `RunNotFound` for an unknown run and `NotRetryable` for a run that is not
    `needs_attention` or whose work was never dead-lettered. Running it again after a
    crash half-way through finishes the job.
    """
    run = await deps.store.load(run_id)
    letters = await deps.queue.dead_letters(run_id)
    parked_run = run.status is RunStatus.NEEDS_ATTENTION
    # A dead letter with a run that has not ended: a retry stopped half-way.
    if not letters or (run.status.terminal and not parked_run):
        if parked_run:
            raise NotRetryable(
                f"run {run_id} is needs_attention, but its queue entry was never "
                f"dead-lettered (it ended so on its own: see `incident-bot runs show "
                f"{run_id}`); nothing to retry"
            )
        raise NotRetryable(
            f"run {run_id} is {run.status.value}, not needs_attention: only a run whose "
            "work was parked can be retried"
        )
    parked = letters[-1]
    driver = deps.driver()
    async with driver.holding(run_id):
        run = await deps.store.load(run_id)
        if run.status is RunStatus.NEEDS_ATTENTION:
            run = await driver.checkpoints.write(_reopened(deps, run, parked))
        await deps.store.reopen(run)
        await driver.checkpoints.audit(
            run_id, "retried", user=user, status=run.status.value, parked_entry=parked.entry_id
        )
    await deps.queue.enqueue(run_id, parked.reason)
    await deps.queue.forget_dead_letters(letters)
    return Retried(run=run, parked=parked)


def _reopened(deps: Deps, run: Run, parked: DeadLetter) -> Run:
    """The run in the state it was parked from, with a fresh deadline and no outcome."""
    try:
        status = RunStatus(parked.status)
    except ValueError:
        raise NotRetryable(
            f"run {run.id} could not be read when its work was parked, so the state to "
            "retry it from is unknown"
        ) from None
    deadline = max(run.deadline, utcnow() + timedelta(seconds=deps.settings.run_deadline_seconds))
    return run.model_copy(update={"status": status, "outcome": "", "deadline": deadline})
