"""A checkpoint schedules the deadline of the run's new state (`Checkpointer.deadlines`),
the entry `Deadlines.track` computes: a proposal's approval deadline, an `executing`
run's (from the time the write stamps on the run) and an ended run's cancel, within the
checkpoint's own round trip on one server (its script writes them); an ended run leaves
`runs:active` in that trip too. Only an accepted write changes the deadlines; a Redis
error on them, or on the index, is logged and the run stays written. On one real server
and on a real Redis Cluster (where they take a round trip of their own); the error is a
real one (the key holds a string)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from bot.checkpoints import Checkpointer
from bot.deadlines import Deadlines
from bot.errors import StaleWrite
from bot.metrics import Metrics
from bot.models import Proposal, Run, RunStatus
from bot.store import RunStore
from tests.factories import run
from tests.trip_relay import TripRelay

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here first would warn
    from tests.redis_cluster import Cluster  # noqa: F401

pytest_plugins = ("tests.redis_cluster",)

APPROVAL_SECONDS, BUSY_SECONDS = 600, 120


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    connection = redis.from_url(redis_url, decode_responses=True)
    yield connection
    await connection.aclose()


@pytest.fixture
async def cluster_client(cluster_url: str) -> AsyncIterator[RedisCluster]:
    connection = RedisCluster.from_url(cluster_url, decode_responses=True)
    yield connection
    await connection.aclose()


def _writer(client: redis.Redis | RedisCluster) -> tuple[Checkpointer, Deadlines]:
    store = RunStore(client, prefix="t:", retention_seconds=3600)
    deadlines = Deadlines(
        client, prefix="t:", approval_seconds=APPROVAL_SECONDS, busy_seconds=BUSY_SECONDS
    )
    writer = Checkpointer(store=store, metrics=Metrics(), owner="me", deadlines=deadlines)
    return writer, deadlines


def _proposing(created: Run) -> Run:
    proposal = Proposal(
        action="kubernetes.rollout_undo",
        arguments={"namespace": "shop", "deployment": "checkout"},
        target="shop/checkout",
        rationale="the error ratio rose with the new image",
        risk="low",
        expected_effect="the error ratio falls",
    )
    return created.model_copy(update={"status": RunStatus.AWAITING_APPROVAL, "proposal": proposal})


async def _entries(deadlines: Deadlines, client: redis.Redis | RedisCluster) -> dict[str, int]:
    found = await client.zrange(deadlines.key, 0, -1, withscores=True)
    return {member: int(score) for member, score in found}


async def _deadlines_follow_the_writes(client: redis.Redis | RedisCluster) -> None:
    writer, deadlines = _writer(client)
    created = await writer.store.create(run())
    await writer.store.acquire_lease(created.id, "me", 30)
    awaiting = await writer.write(_proposing(created))
    assert awaiting.proposal is not None
    approval = int((awaiting.proposal.proposed_at.timestamp() + APPROVAL_SECONDS) * 1000)
    assert await _entries(deadlines, client) == {f"approval|{created.id}": approval}
    # What `track` computes for the written run: it changes nothing.
    assert not await deadlines.track(awaiting)
    assert await _entries(deadlines, client) == {f"approval|{created.id}": approval}

    executing = await writer.write(awaiting.model_copy(update={"status": RunStatus.EXECUTING}))
    busy = int((executing.updated_at.timestamp() + BUSY_SECONDS) * 1000)
    assert (await _entries(deadlines, client))[f"run|{created.id}"] == busy

    await writer.write(executing.model_copy(update={"status": RunStatus.RESOLVED}))
    assert await _entries(deadlines, client) == {}


async def test_a_checkpoint_tracks_the_deadline_of_the_state_it_writes(
    client: redis.Redis,
) -> None:
    await _deadlines_follow_the_writes(client)


async def test_a_checkpoint_tracks_the_deadline_of_the_state_it_writes_on_a_cluster(
    cluster_client: RedisCluster,
) -> None:
    await _deadlines_follow_the_writes(cluster_client)


async def test_each_checkpoint_and_what_rides_it_take_one_round_trip(redis_url: str) -> None:
    async with TripRelay(redis_url).running() as relay:
        client = redis.from_url(relay.url, decode_responses=True)
        try:
            writer, deadlines = _writer(client)
            created = await writer.store.create(run())
            await writer.store.acquire_lease(created.id, "me", 30)
            # The first write loads the script into the server.
            started = await writer.write(
                created.model_copy(update={"status": RunStatus.INVESTIGATING})
            )
            trips: list[int] = []

            async def write(update: Run) -> Run:
                before = relay.trips
                written = await writer.write(update)
                trips.append(relay.trips - before)
                return written

            awaiting = await write(_proposing(started))
            executing = await write(awaiting.model_copy(update={"status": RunStatus.EXECUTING}))
            busy = int((executing.updated_at.timestamp() + BUSY_SECONDS) * 1000)
            assert (await _entries(deadlines, client))[f"run|{created.id}"] == busy
            await write(executing.model_copy(update={"status": RunStatus.RESOLVED}))
            assert await _entries(deadlines, client) == {}
            assert created.id not in await client.zrange("t:runs:active", 0, -1)
        finally:
            await client.aclose()
    # The proposal's deadline in the script; the executing run's, from the time the write
    # stamps on it; the end's cancel, with the run's removal from `runs:active`.
    assert trips == [1, 1, 1]


async def _a_refused_write_leaves_the_deadlines(client: redis.Redis | RedisCluster) -> None:
    writer, deadlines = _writer(client)
    created = await writer.store.create(run())
    await writer.store.acquire_lease(created.id, "me", 30)
    awaiting = await writer.write(_proposing(created))
    scheduled = await _entries(deadlines, client)
    await writer.store.release_lease(created.id, "me")
    await writer.store.acquire_lease(created.id, "other", 30)
    with pytest.raises(StaleWrite):
        await writer.write(awaiting.model_copy(update={"status": RunStatus.REJECTED}))
    with pytest.raises(StaleWrite):
        await writer.write(_proposing(awaiting))  # a new proposal, not written
    assert await _entries(deadlines, client) == scheduled


async def test_a_refused_write_leaves_the_deadlines_as_they_were(client: redis.Redis) -> None:
    await _a_refused_write_leaves_the_deadlines(client)


async def test_a_refused_write_leaves_the_deadlines_on_a_cluster(
    cluster_client: RedisCluster,
) -> None:
    await _a_refused_write_leaves_the_deadlines(cluster_client)


async def _a_failed_deadline_is_logged(
    client: redis.Redis | RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    writer, deadlines = _writer(client)
    await client.set(deadlines.key, "not a sorted set")
    created = await writer.store.create(run())
    await writer.store.acquire_lease(created.id, "me", 30)
    with caplog.at_level(logging.WARNING, logger="bot.checkpoints"):
        awaiting = await writer.write(_proposing(created))
        ended = await writer.write(awaiting.model_copy(update={"status": RunStatus.EXPIRED}))
    stored = await writer.store.load(created.id)
    assert (stored.version, stored.status) == (ended.version, RunStatus.EXPIRED)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all("could not schedule the run's deadline" in w and "WRONGTYPE" in w for w in warnings)


async def test_a_failed_deadline_is_logged_and_the_run_stays_written(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await _a_failed_deadline_is_logged(client, caplog)


async def test_a_failed_deadline_is_logged_and_the_run_stays_written_on_a_cluster(
    cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    await _a_failed_deadline_is_logged(cluster_client, caplog)


async def _a_failed_unlisting_is_logged(
    client: redis.Redis | RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    writer, _ = _writer(client)
    created = await writer.store.create(run())
    await writer.store.acquire_lease(created.id, "me", 30)
    await client.set("t:runs:active", "not a sorted set")
    with caplog.at_level(logging.WARNING, logger="bot.store"):
        ended = await writer.write(created.model_copy(update={"status": RunStatus.CONCLUDED}))
    stored = await writer.store.load(created.id)
    assert (stored.version, stored.status) == (ended.version, RunStatus.CONCLUDED)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "could not unlist the ended run" in warnings[0] and "WRONGTYPE" in warnings[0]


async def test_a_failed_unlisting_is_logged_and_the_run_stays_written(
    client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await _a_failed_unlisting_is_logged(client, caplog)


async def test_a_failed_unlisting_is_logged_and_the_run_stays_written_on_a_cluster(
    cluster_client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    await _a_failed_unlisting_is_logged(cluster_client, caplog)
