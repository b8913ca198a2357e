"""Each drive holds the run's lease as itself, not as its process: when a drive's lease
expires (a Redis outage longer than it) and another drive of the same process takes the
run over (a second worker reclaims its entry, or the sweeper settles it), the first
drive's next write is refused, its end gives back nothing, and each drive's audit events
stay its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.deps import Deps, open_deps
from bot.errors import StaleWrite
from bot.runner import RunDriver
from bot.settings import Settings
from tests.factories import run as new_run
from tests.factories import text_step


@pytest.fixture
async def deps(redis_url: str) -> AsyncIterator[Deps]:
    settings = Settings.model_validate({"REDIS_URL": redis_url, "INCIDENT_BOT_WORKERS": 0})
    async with open_deps(settings) as built:
        yield built


async def _holds(
    driver: RunDriver, run_id: str, event: str, holding: asyncio.Event, go: asyncio.Event
) -> str:
    """Hold the run's lease in a task of its own (as a worker's drive does), noting the
    audit `event` for its next write, until `go`; then write the run as that drive;
    returns how the write went."""
    async with driver.holding(run_id):
        await driver.checkpoints.note(run_id, event)
        holding.set()
        await go.wait()
        run = await driver.store.load(run_id)
        try:
            await driver.checkpoints.write(run.model_copy(update={"summary": "written"}))
        except StaleWrite:
            return "refused"
        return "written"


async def test_a_drive_whose_lease_expired_is_refused_when_its_own_process_took_the_run(
    deps: Deps,
) -> None:
    created = await deps.store.create(new_run(), [text_step(0)])
    driver = deps.driver()  # one driver per process, shared by its workers
    version = (await deps.store.load(created.id)).version
    first_holds, second_holds = asyncio.Event(), asyncio.Event()
    first_go, second_go = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_holds(driver, created.id, "stale", first_holds, first_go))
    await first_holds.wait()
    # The first drive's lease expires, and a second drive of this process takes the run.
    await deps.store.redis.delete(deps.store.lease_key(created.id))
    second = asyncio.create_task(_holds(driver, created.id, "live", second_holds, second_go))
    await second_holds.wait()
    taken_by = await deps.store.lease_holder(created.id)

    first_go.set()
    assert await first == "refused"
    # Its end did not give back the second drive's lease.
    assert await deps.store.lease_holder(created.id) == taken_by
    assert (await deps.store.load(created.id)).version == version
    # The refused write appended its own drive's event, not the live drive's.
    assert [e.event for e in await deps.store.read_audit(created.id)] == ["stale"]
    second_go.set()
    assert await second == "written"
    assert (await deps.store.load(created.id)).version == version + 1
    assert [e.event for e in await deps.store.read_audit(created.id)] == ["stale", "live"]
    assert await deps.store.lease_holder(created.id) is None
