"""Resumes (a human's decision) are served before investigation starts, on any replica:
they have a stream of their own that workers read first, and resume workers that take
nothing else. Against a real Redis and the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest

from bot.deps import Deps, open_deps
from bot.models import Decision, Run, RunStatus
from bot.parking import park, retry
from bot.queue import GROUP, WorkQueue
from bot.runs import record_decision, start_run
from bot.settings import Settings
from bot.worker import WorkerLimits, WorkerPool
from tests.factories import alert
from tests.processes import eventually
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

FLOOD = 20  # start entries queued ahead of the decision


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    settings = Settings.model_validate(
        {
            "REDIS_URL": redis_url,
            "PROMETHEUS_URL": sandbox.url,
            "KUBERNETES_URL": sandbox.url,
            "INCIDENT_BOT_VERIFY_INTERVAL": 0.05,
        }
    )
    async with open_deps(settings) as built:
        await built.queue.ensure_group()
        yield built


def _limits(*, workers: int, resume_workers: int, global_investigations: int = 10) -> WorkerLimits:
    return WorkerLimits(
        workers=workers,
        resume_workers=resume_workers,
        global_investigations=global_investigations,
        service_investigations=10,
        reclaim_after_seconds=0.5,
        slot_seconds=30,
    )


async def _proposed(deps: Deps) -> Run:
    """A run driven to its proposal (a rollback), waiting for a decision."""
    run = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
    assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
    return run


async def _approve(deps: Deps, run: Run) -> None:
    """Approve as a click does: the decision is recorded and a resume queued."""
    assert run.proposal is not None
    decision = Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    assert await record_decision(deps, decision, settles_at=1)


async def _flood(deps: Deps, count: int = FLOOD) -> list[str]:
    """`count` queued runs, each with a start entry; returns the entry ids."""
    ids = []
    for _ in range(count):
        run = await start_run(deps, alert(severity="critical"))
        ids.append((await deps.queue.enqueue(run.id, "start")).id)
    return ids


async def _ended(deps: Deps, run_id: str) -> Run | None:
    run = await deps.store.load(run_id)
    return run if run.status.terminal else None


async def _entries(queue: WorkQueue, stream: str) -> list[tuple[str, dict[str, str]]]:
    return cast(list[tuple[str, dict[str, str]]], await queue.redis.xrange(stream))


def _millis(entry_id: str) -> int:
    return int(entry_id.split("-")[0])


async def test_a_resume_queued_behind_a_flood_of_starts_is_read_and_reclaimed_first(
    deps: Deps,
) -> None:
    queue = deps.queue
    starts = [(await queue.enqueue(f"start-{n}", "start")).id for n in range(200)]
    resume = await queue.enqueue("decided", "resume")
    assert resume.stream == queue.resume_stream
    (first,) = await queue.read("replica-1/0", count=1, block_ms=100)
    assert (first.id, first.run_id, first.reason) == (resume.id, "decided", "resume")
    (second,) = await queue.read("replica-1/0", count=1, block_ms=100)
    assert (second.id, second.stream) == (starts[0], queue.stream)
    # Both pending with a dead worker: another reclaims the resume first, then the start.
    (reclaimed,) = await queue.reclaim("replica-2/0", min_idle_ms=0, count=1)
    assert (reclaimed.id, reclaimed.stream, reclaimed.deliveries) == (resume.id, resume.stream, 2)
    (after,) = await queue.reclaim("replica-2/0", min_idle_ms=0, count=1, only_resumes=True)
    assert after.id == resume.id  # a resume worker reclaims nothing but resumes
    await queue.ack(after)
    (start,) = await queue.reclaim("replica-2/0", min_idle_ms=0, count=1)
    assert start.id == starts[0]
    assert await queue.read("replica-3/resume-0", count=1, block_ms=10, only_resumes=True) == []
    # The gauges and the sweeper's view cover both streams.
    await queue.enqueue("decided-later", "resume")
    assert await queue.depth() == 201
    assert {"decided-later", "start-0", "start-199"} <= await queue.queued_runs()
    assert await queue.oldest_age_seconds() >= 0


async def test_a_busy_replica_drives_a_decision_before_the_starts_queued_ahead_of_it(
    deps: Deps,
) -> None:
    waiting = await _proposed(deps)
    originals = set(await _flood(deps))
    # The investigation slots are full (other replicas' investigations), so every start
    # read goes back to the end of the queue: the flood keeps the one worker cycling.
    for n in range(2):
        assert await deps.queue.take_slots(
            f"elsewhere-{n}", service="checkout", global_limit=2, service_limit=10, ttl=60
        )
    await _approve(deps, waiting)  # its resume is queued after the flood
    pool = WorkerPool(
        deps, deps.queue, _limits(workers=1, resume_workers=0, global_investigations=2)
    )
    await pool.start()
    try:
        run = await eventually(lambda: _ended(deps, waiting.id))
    finally:
        await pool.stop(grace_seconds=5)
    assert run.status is RunStatus.RESOLVED, run.outcome
    audit = await deps.store.read_audit(waiting.id)
    (started,) = [e.id for e in audit if e.event == "action_started"]
    # Any start the worker handled went back to the queue under a new id. The resume was
    # read first, and driven beside the worker, which went on with the starts: at most
    # the first of them was handled before the decision's action had started (the
    # worker takes a 0.2 s breath after each start it sends back).
    requeued = [i for i, _ in await _entries(deps.queue, deps.queue.stream) if i not in originals]
    early = [i for i in requeued if _millis(i) < _millis(started)]
    assert len(early) <= 1, (started, requeued)
    assert len(await _entries(deps.queue, deps.queue.stream)) == FLOOD


async def test_resume_workers_drive_decisions_and_never_take_an_investigation(
    deps: Deps,
) -> None:
    waiting = await _proposed(deps)
    await _flood(deps)
    early = await start_run(deps, alert(severity="critical"))
    await deps.queue.enqueue(early.id, "resume")  # a resume of a run still to investigate
    await _approve(deps, waiting)
    pool = WorkerPool(deps, deps.queue, _limits(workers=0, resume_workers=1))
    await pool.start()
    try:
        run = await eventually(lambda: _ended(deps, waiting.id))

        async def handed_to_the_starts() -> bool | None:
            starts = await _entries(deps.queue, deps.queue.stream)
            return True if any(f["run_id"] == early.id for _, f in starts) else None

        await eventually(handed_to_the_starts)
    finally:
        await pool.stop(grace_seconds=5)
    assert run.status is RunStatus.RESOLVED, run.outcome
    assert (await deps.store.load(early.id)).status is RunStatus.QUEUED
    # No start was ever handed to the resume worker.
    pending = await deps.queue.redis.xpending(deps.queue.stream, GROUP)
    assert pending["pending"] == 0
    assert await _entries(deps.queue, deps.queue.resume_stream) == []


async def test_a_resume_worker_reads_the_run_only_with_its_lease(deps: Deps) -> None:
    # What the pool sends from the decision to the action's claim (MONITOR): the run's
    # checkpoint is read by the drive's take script, never first by a load of its own.
    waiting = await _proposed(deps)
    assert waiting.proposal is not None
    proposal_id = waiting.proposal.id
    await _approve(deps, waiting)
    seen: list[str] = []
    ready = asyncio.Event()

    async def watch() -> None:
        async with deps.store.redis.monitor() as monitor:
            ready.set()
            while True:
                info = await monitor.next_command()
                if info.get("client_type") != "lua":
                    seen.append(str(info.get("command", "")))

    watcher = asyncio.create_task(watch())
    await ready.wait()
    pool = WorkerPool(deps, deps.queue, _limits(workers=0, resume_workers=1))
    await pool.start()
    try:
        # Waited for by its action record (GET) first: the test reads no checkpoint before.
        await eventually(lambda: deps.store.action_record(waiting.id, proposal_id))
        run = await eventually(lambda: _ended(deps, waiting.id))
    finally:
        await pool.stop(grace_seconds=5)
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    assert run.status is RunStatus.RESOLVED, run.outcome
    action_key = f"action:{{{waiting.id}}}:{proposal_id}"
    claim = next(i for i, c in enumerate(seen) if c.startswith("SET") and action_key in c)
    run_key = deps.store.run_key(waiting.id)
    assert not [c for c in seen[:claim] if c.startswith(f"HGET {run_key} ")]
    assert any(c.startswith("EVALSHA") and run_key in c for c in seen[:claim])


async def test_a_resume_left_by_a_dead_worker_is_reclaimed_and_driven(deps: Deps) -> None:
    waiting = await _proposed(deps)
    await _approve(deps, waiting)
    # A resume worker of another replica read the entry, then died without acknowledging.
    (taken,) = await deps.queue.read("dead-replica/resume-0", count=1, block_ms=100)
    assert (taken.run_id, taken.stream) == (waiting.id, deps.queue.resume_stream)
    pool = WorkerPool(deps, deps.queue, _limits(workers=0, resume_workers=1))
    await pool.start()
    try:
        run = await eventually(lambda: _ended(deps, waiting.id))
    finally:
        await pool.stop(grace_seconds=5)
    assert run.status is RunStatus.RESOLVED, run.outcome
    assert await deps.queue.depth() == 0
    events = [e.event for e in await deps.store.read_audit(waiting.id)]
    assert events.count("action_started") == 1


async def test_a_resume_queued_before_the_upgrade_is_still_driven(deps: Deps) -> None:
    waiting = await _proposed(deps)
    assert waiting.proposal is not None
    decision = Decision(
        run_id=waiting.id, proposal_id=waiting.proposal.id, user="U1", verdict="approve"
    )
    assert await deps.store.record_decision(decision, settles_at=1)
    # The entry an older version queued: a resume in the one stream it had.
    await deps.queue.redis.xadd(deps.queue.stream, {"run_id": waiting.id, "reason": "resume"})
    pool = WorkerPool(deps, deps.queue, _limits(workers=1, resume_workers=1))
    await pool.start()
    try:
        run = await eventually(lambda: _ended(deps, waiting.id))
    finally:
        await pool.stop(grace_seconds=5)
    assert run.status is RunStatus.RESOLVED, run.outcome
    assert await deps.queue.depth() == 0


async def test_a_parked_resume_is_dead_lettered_and_retried_as_a_resume(deps: Deps) -> None:
    waiting = await _proposed(deps)
    await _approve(deps, waiting)
    (entry,) = await deps.queue.read("replica-1/resume-0", count=1, block_ms=100)
    assert await park(deps.driver(), deps.queue, deps.metrics, entry, "RuntimeError: boom")
    assert await _entries(deps.queue, deps.queue.resume_stream) == []
    (letter,) = await deps.queue.dead_letters(waiting.id)
    assert (letter.reason, letter.status) == ("resume", "awaiting_approval")
    retried = await retry(deps, waiting.id, user="operator")
    assert retried.run.status is RunStatus.AWAITING_APPROVAL
    [(_, fields)] = await _entries(deps.queue, deps.queue.resume_stream)
    assert fields == {"run_id": waiting.id, "reason": "resume"}


async def _never_recovers(deps: Deps, run: Run) -> Run:
    """The run with a verify check that no value passes: its verification lasts until
    `INCIDENT_BOT_VERIFY_TIMEOUT`, polling all the while."""
    assert run.proposal is not None and run.proposal.verify is not None
    never = run.proposal.verify.model_copy(update={"op": "<", "threshold": -1.0})
    proposal = run.proposal.model_copy(update={"verify": never})
    await deps.store.acquire_lease(run.id, "test", 30)
    written = await deps.store.checkpoint(
        run.model_copy(update={"proposal": proposal}), owner="test"
    )
    await deps.store.release_lease(run.id, "test")
    return written


async def test_decisions_are_acted_on_while_earlier_actions_are_still_verified(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "PROMETHEUS_URL": sandbox.url,
        "KUBERNETES_URL": sandbox.url,
        "INCIDENT_BOT_VERIFY_INTERVAL": 0.05,
        "INCIDENT_BOT_VERIFY_TIMEOUT": 120,
    }
    async with open_deps(Settings.model_validate(env)) as deps:
        await deps.queue.ensure_group()
        runs = [await _never_recovers(deps, await _proposed(deps)) for _ in range(3)]
        # One resume worker and no other: before, it verified the first action for the
        # whole timeout while the other two decisions waited in the queue.
        pool = WorkerPool(deps, deps.queue, _limits(workers=0, resume_workers=1))
        await pool.start()
        try:
            for run in runs:
                await _approve(deps, run)

            async def all_verifying() -> bool | None:
                states = [(await deps.store.load(r.id)).status for r in runs]
                return all(s is RunStatus.VERIFYING for s in states) or None

            await eventually(all_verifying, within=20)
        finally:
            await pool.stop(grace_seconds=0.5)
        for run in runs:
            events = [e.event for e in await deps.store.read_audit(run.id)]
            assert events.count("action_started") == 1
            assert await deps.store.lease_holder(run.id) is None  # released at the stop
