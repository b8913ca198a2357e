"""The work queue and worker pool against a real Redis and the sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.deps import Deps, open_deps
from bot.models import RunStatus
from bot.runs import start_run
from bot.settings import Settings
from bot.worker import WorkerLimits, WorkerPool
from tests.factories import alert
from tests.processes import eventually
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    settings = Settings(REDIS_URL=redis_url, PROMETHEUS_URL=sandbox.url, KUBERNETES_URL=sandbox.url)
    async with open_deps(settings) as built:
        await built.queue.ensure_group()
        yield built


def _limits(**overrides: float) -> WorkerLimits:
    values: dict[str, float] = {
        "workers": 2,
        "resume_workers": 1,
        "global_investigations": 10,
        "service_investigations": 10,
        "reclaim_after_seconds": 0.5,
        "slot_seconds": 30,
    } | overrides
    return WorkerLimits(**values)  # type: ignore[arg-type]


async def test_slots_cap_concurrent_investigations_in_all_and_per_service(deps: Deps) -> None:
    async def take(n: int, service: str) -> bool:
        return await deps.queue.take_slots(
            f"run-{n}", service=service, global_limit=5, service_limit=3, ttl=30
        )

    checkout = await asyncio.gather(*(take(n, "checkout") for n in range(20)))
    assert checkout.count(True) == 3
    others = await asyncio.gather(*(take(100 + n, "payments") for n in range(20)))
    assert others.count(True) == 2  # the global limit of 5 is reached
    await deps.queue.release_slots("run-0", service="checkout")
    assert await take(200, "checkout")


async def test_expired_slots_free_themselves(deps: Deps) -> None:
    assert await deps.queue.take_slots(
        "run-a", service="s", global_limit=1, service_limit=1, ttl=-1
    )
    assert await deps.queue.take_slots(
        "run-b", service="s", global_limit=1, service_limit=1, ttl=30
    )


async def test_workers_drive_every_queued_run_once(deps: Deps) -> None:
    runs = [await start_run(deps, alert(severity="critical")) for _ in range(6)]
    for run in runs:
        await deps.queue.enqueue(run.id, "start")
        await deps.queue.enqueue(run.id, "start")  # a duplicate entry is harmless
    pool = WorkerPool(deps, deps.queue, _limits())
    await pool.start()
    try:

        async def all_proposed() -> bool | None:
            loaded = [await deps.store.load(r.id) for r in runs]
            done = all(r.status is RunStatus.AWAITING_APPROVAL for r in loaded)
            return True if done and await deps.queue.depth() == 0 else None

        await eventually(all_proposed)
    finally:
        await pool.stop(grace_seconds=5)
    for run in runs:
        events = [e.event for e in await deps.store.read_audit(run.id)]
        assert events.count("proposal") == 1


async def test_an_entry_left_by_a_dead_worker_is_reclaimed(deps: Deps) -> None:
    run = await start_run(deps, alert(severity="critical"))
    await deps.queue.enqueue(run.id, "start")
    # A worker of another replica read the entry, then died without acknowledging it.
    (taken,) = await deps.queue.read("dead-replica/0", count=1, block_ms=100)
    assert taken.run_id == run.id
    pool = WorkerPool(deps, deps.queue, _limits(workers=1))
    await pool.start()
    try:

        async def proposed() -> bool | None:
            loaded = await deps.store.load(run.id)
            return True if loaded.status is RunStatus.AWAITING_APPROVAL else None

        await eventually(proposed)
        await eventually(lambda: _empty(deps))
    finally:
        await pool.stop(grace_seconds=5)


async def _empty(deps: Deps) -> bool | None:
    return True if await deps.queue.depth() == 0 else None


async def test_heartbeats_tell_live_replicas(deps: Deps) -> None:
    pool = WorkerPool(deps, deps.queue, _limits(workers=1))
    await pool.start()
    assert pool.running
    assert deps.owner in await deps.queue.live_workers()
    await pool.stop(grace_seconds=1)
    assert deps.owner not in await deps.queue.live_workers()
