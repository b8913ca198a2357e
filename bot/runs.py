"""Start a run for an alert, record decisions on it, and follow it to its end."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from bot.approvals import assess, refusal
from bot.deps import Deps
from bot.errors import LeaseHeld, ProposalError
from bot.models import Alert, Decision, Run, RunStatus, utcnow
from bot.runner import RunDriver
from bot.store import AuditEntry
from bot.untrusted import (
    RedactedAlert,
    count,
    redacted,
)

POLL_SECONDS = 0.5


@dataclass(frozen=True, kw_only=True)
class NewRun:
    """A run about to be created, with what is written with it (`RunStore.create`): no
    transcript yet (the investigation's first checkpoint writes the alert's step and
    flags its text: `bot.first_step`)."""

    run: Run
    events: list[AuditEntry]
    alerts: list[Alert]


async def start_run(
    deps: Deps,
    alert: Alert | RedactedAlert,
    *,
    trigger: str = "alert",
    run_id: str | None = None,
    alerts: Sequence[Alert | RedactedAlert] = (),
    events: Sequence[AuditEntry] = (),
) -> Run:
    """Create a queued run for the alert (its transcript starts when its investigation
    does: `bot.first_step`), in one write with its group's `alerts` (logged as
    `fold_alerts` logs them) and further audit `events` (after its own: `created`, with
    the alert's redactions).

    Nothing is stored unredacted: a plain `Alert` is redacted here and its redactions
    counted; a `RedactedAlert` was redacted (and counted) by its caller, and is stored
    as it is. Raises `RunExists` when `run_id` names a run that was already created.
    """
    new = new_run(deps, alert, trigger=trigger, run_id=run_id, alerts=alerts, events=events)
    created = await deps.store.create(new.run, events=new.events, alerts=new.alerts)
    count_started(deps, new)
    return created


def new_run(
    deps: Deps,
    alert: Alert | RedactedAlert,
    *,
    trigger: str,
    run_id: str | None,
    alerts: Sequence[Alert | RedactedAlert],
    events: Sequence[AuditEntry],
) -> NewRun:
    """What `start_run` writes (its arguments are `start_run`'s); nothing is written yet."""
    clean = _redacted(deps, [alert, *alerts])
    first = clean[id(alert)]
    alert, redactions = first.alert, dict(first.redactions)
    run = Run.model_validate(
        {
            **({"id": run_id} if run_id else {}),
            "alert": alert,
            "trigger": trigger,
            "deadline": utcnow() + timedelta(seconds=deps.settings.run_deadline_seconds),
        }
    )
    created_event = {"trigger": trigger, "alert": alert.title, "redactions": redactions or None}
    return NewRun(
        run=run,
        events=[("created", created_event), *events],
        alerts=[clean[id(a)].alert for a in alerts],
    )


def count_started(deps: Deps, new: NewRun) -> None:
    """Count a run that `new_run` described, now created."""
    deps.metrics.runs_started.labels(new.run.trigger).inc()


def _redacted(deps: Deps, alerts: Sequence[Alert | RedactedAlert]) -> dict[int, RedactedAlert]:
    """Each of `alerts` (by `id`) as it may be stored; the plain ones redacted here and
    counted once each, however often they are listed."""
    clean: dict[int, RedactedAlert] = {}
    for alert in alerts:
        if id(alert) in clean:
            continue
        if isinstance(alert, RedactedAlert):
            clean[id(alert)] = alert
        else:
            clean[id(alert)] = redacted(alert)
            count(deps.metrics, "alert", clean[id(alert)].redactions)
    return clean


async def record_decision(
    deps: Deps, decision: Decision, *, settles_at: int = 0, run: Run | None = None
) -> bool:
    """Record a human's decision on the run's current proposal; False if already recorded.

    `settles_at`: the approvals that decide the proposal; once it has them (or a
    rejection) later decisions raise `ProposalError`, so concurrent clicks record one.
    `run`: the run as the caller just read it (read here if None); the decision script
    refuses a proposal decided since.
    """
    if run is None or run.id != decision.run_id:
        run = await deps.store.load(decision.run_id)
    if run.status is not RunStatus.AWAITING_APPROVAL or run.proposal is None:
        raise ProposalError(f"run {run.id} is {run.status.value}, not awaiting approval")
    if decision.proposal_id != run.proposal.id:
        raise ProposalError(
            f"proposal {decision.proposal_id} is not the run's current one ({run.proposal.id})"
        )
    requirement = await assess(deps.policy, run, run.proposal, now=utcnow())
    refused = refusal(requirement, run.proposal, decision)
    if refused is not None:
        raise ProposalError(refused)
    recorded = await deps.store.record_decision(decision, settles_at=settles_at)
    if recorded:
        deps.metrics.approvals.labels(decision.verdict).inc()
        # Any replica's workers may resume it; a duplicate resume is harmless.
        await deps.queue.enqueue(run.id, "resume")
    return recorded


# Called when the run waits for a decision; returns False to stop following it there.
WaitForHuman = Callable[[Run], Awaitable[bool]]


async def follow(
    driver: RunDriver,
    deps: Deps,
    run_id: str,
    on_wait: WaitForHuman,
    say: Callable[[str], None] = lambda _: None,
) -> Run:
    """Drive the run to its end, or watch while another process drives it.

    While the run waits for a decision, `on_wait` is called once; unless it returns
    False, this then watches Redis (without taking the lease) for a decision recorded by
    any process, and drives the run again when one arrives.
    """
    asked = busy = False
    while True:
        # Counted before the drive: a decision recorded after this is worth a new drive.
        seen = await deps.store.decision_count(run_id)
        try:
            run = await driver.drive(run_id)
        except LeaseHeld as exc:
            if not busy:
                busy = True
                say(f"{exc}: waiting until it lets go (or its lease expires)")
            await asyncio.sleep(POLL_SECONDS)
            continue
        if run.status.terminal:
            return run
        if run.status is RunStatus.AWAITING_APPROVAL:
            if not asked:
                asked = True
                if not await on_wait(run):
                    return run
            await _wait_for_decision(deps, run, seen)


async def _wait_for_decision(deps: Deps, run: Run, seen: int) -> None:
    """Return when the run has more than `seen` decisions, moved on, or approval timed out."""
    assert run.proposal is not None  # noqa: S101 - awaiting approval has a proposal
    expires = run.proposal.proposed_at + timedelta(seconds=deps.approval_timeout_seconds)
    while utcnow() < expires:
        if await deps.store.decision_count(run.id) > seen:
            return
        if (await deps.store.load(run.id)).status is not RunStatus.AWAITING_APPROVAL:
            return
        await asyncio.sleep(POLL_SECONDS)
