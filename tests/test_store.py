"""The run store against a real server: leases, fencing, idempotent decisions, audit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bot.errors import LeaseHeld, RunNotFound, StaleWrite, StoreError
from bot.models import ActionRecord, Decision, RunStatus
from bot.store import RunStore
from tests.factories import run, text_step


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RunStore]:
    client = redis.from_url(redis_url, decode_responses=True)
    yield RunStore(client, prefix="t:", retention_seconds=3600)
    await client.aclose()


async def test_twenty_concurrent_lease_attempts_have_one_winner(store: RunStore) -> None:
    created = await store.create(run())

    async def attempt(n: int) -> str | None:
        try:
            await store.acquire_lease(created.id, f"worker-{n}", 30)
        except LeaseHeld:
            return None
        return f"worker-{n}"

    winners = [w for w in await asyncio.gather(*(attempt(n) for n in range(20))) if w]
    assert len(winners) == 1
    assert await store.lease_holder(created.id) == winners[0]


async def test_a_write_with_a_stale_version_is_refused(store: RunStore) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "me", 30)
    first = await store.checkpoint(created, owner="me", steps=[text_step(1)])
    assert first.version == created.version + 1
    with pytest.raises(StaleWrite, match="version"):
        await store.checkpoint(created, owner="me", steps=[text_step(1)])
    assert len(await store.transcript(created.id)) == 1  # the refused steps were not appended
    assert (await store.load(created.id)).version == first.version


async def test_a_writer_without_the_lease_is_refused(store: RunStore) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "holder", 30)
    with pytest.raises(StaleWrite, match="lease"):
        await store.checkpoint(created, owner="intruder")
    await store.release_lease(created.id, "intruder")  # not the holder: no effect
    assert await store.lease_holder(created.id) == "holder"


async def test_lease_renewal_only_by_its_holder(store: RunStore) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "holder", 30)
    assert await store.renew_lease(created.id, "holder", 30)
    assert not await store.renew_lease(created.id, "other", 30)
    await store.release_lease(created.id, "holder")
    assert await store.lease_holder(created.id) is None


async def test_recording_the_same_decision_twice_stores_one(store: RunStore) -> None:
    created = await store.create(run())
    decision = Decision(run_id=created.id, proposal_id="prop-1", user="U1", verdict="approve")
    results = await asyncio.gather(*(store.record_decision(decision) for _ in range(5)))
    assert results.count(True) == 1
    assert [d.user for d in await store.decisions(created.id, "prop-1")] == ["U1"]
    audit = [e for e in await store.read_audit(created.id) if e.event == "decision"]
    assert len(audit) == 1


async def test_an_action_is_claimed_once(store: RunStore) -> None:
    created = await store.create(run())
    record = ActionRecord(
        run_id=created.id,
        proposal_id="prop-1",
        action="kubernetes.rollback",
        arguments={},
        state="started",
        owner="a",
    )
    claims = await asyncio.gather(
        *(store.begin_action(record.model_copy(update={"owner": f"w{n}"})) for n in range(10))
    )
    assert claims.count(None) == 1
    assert {c.state for c in claims if c is not None} == {"started"}


async def test_finished_runs_expire_and_leave_the_active_index(store: RunStore) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "me", 30)
    done = await store.checkpoint(
        created.model_copy(update={"status": RunStatus.CONCLUDED}), owner="me"
    )
    assert 0 < await store.redis.ttl(store.run_key(done.id)) <= 3600
    assert [r.id for r in await store.list_runs(active_only=True)] == []
    assert [r.id for r in await store.list_runs()] == [done.id]


async def test_missing_and_duplicate_runs_are_clear_errors(store: RunStore) -> None:
    with pytest.raises(RunNotFound):
        await store.load("run-nope")
    created = await store.create(run())
    with pytest.raises(StoreError, match="already exists"):
        await store.create(created)


async def test_checkpoint_appends_steps_in_order(store: RunStore) -> None:
    created = await store.create(run(), [text_step(0, 10)])
    await store.acquire_lease(created.id, "me", 30)
    current = created
    for i in range(1, 6):
        current = await store.checkpoint(current, owner="me", steps=[text_step(i, 10)])
    assert [s.index for s in await store.transcript(created.id)] == [0, 1, 2, 3, 4, 5]
    assert (await store.load(created.id)).steps == 6
