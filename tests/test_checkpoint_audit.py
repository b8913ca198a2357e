"""A step's audit events are written by its checkpoint, in the fenced script, and none is
lost when the write is refused or never comes (`Checkpointer.note` / `flush`); commands
on other hash slots ride in the checkpoint's round trip (`Checkpointer.write_beside`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster

from bot.checkpoints import Checkpointer
from bot.errors import StaleWrite
from bot.metrics import Metrics
from bot.models import RunStatus, Usage
from bot.pause import PauseSwitch
from bot.spend import DailySpend
from bot.store import RunStore
from tests.factories import run, text_step

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here first would warn
    from tests.redis_cluster import Cluster  # noqa: F401

pytest_plugins = ("tests.redis_cluster",)


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RunStore]:
    client = redis.from_url(redis_url, decode_responses=True)
    yield RunStore(client, prefix="t:", retention_seconds=3600)
    await client.aclose()


def _writer(store: RunStore, owner: str) -> Checkpointer:
    return Checkpointer(store=store, metrics=Metrics(), owner=owner)


async def test_noted_events_are_written_by_the_next_checkpoint(store: RunStore) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "me", 30)
    writer = _writer(store, "me")
    await writer.note(created.id, "model_call", model="m")
    await writer.note(created.id, "tool_call", tool="t")
    assert await store.read_audit(created.id) == []  # not before the write
    written = await writer.write(created, [text_step(1)])
    events = await store.read_audit(created.id)
    assert [(e.event, e.data) for e in events] == [
        ("model_call", {"owner": "me", "model": "m"}),
        ("tool_call", {"owner": "me", "tool": "t"}),
    ]
    # Written once: the next checkpoint has nothing of them left.
    await writer.note(created.id, "finished", status="concluded")
    await writer.write(written.model_copy(update={"status": RunStatus.CONCLUDED}))
    assert [e.event for e in await store.read_audit(created.id)] == [
        "model_call",
        "tool_call",
        "finished",
    ]
    # The terminal write's TTL covers the audit stream it appended to.
    assert 0 < await store.redis.ttl(f"{store.run_key(created.id)}:audit") <= 3600


async def test_a_refused_write_leaves_the_run_and_still_audits_what_happened(
    store: RunStore,
) -> None:
    created = await store.create(run())
    await store.acquire_lease(created.id, "other", 30)
    writer = _writer(store, "me")
    await writer.note(created.id, "model_call", model="m")
    with pytest.raises(StaleWrite, match="lease"):
        await writer.write(created, [text_step(1)])
    assert await store.transcript(created.id) == []
    assert (await store.load(created.id)).version == created.version
    assert [(e.event, e.data["owner"]) for e in await store.read_audit(created.id)] == [
        ("model_call", "me")
    ]


async def test_events_of_a_drive_that_ends_without_a_write_are_flushed(store: RunStore) -> None:
    created = await store.create(run())
    writer = _writer(store, "me")
    await writer.note(created.id, "tool_call", tool="t")
    await writer.flush(created.id)
    await writer.flush(created.id)  # once only
    assert [e.event for e in await store.read_audit(created.id)] == ["tool_call"]


async def _spend_and_pause_beside(store: RunStore) -> None:
    """A checkpoint counts a model call in today's spend and reads the pause key beside
    it; once more after the server lost its scripts, which counts the call once."""
    spend = DailySpend(store.redis, prefix="t:")
    pause = PauseSwitch(store.redis, prefix="t:")
    created = await store.create(run())
    await store.acquire_lease(created.id, "me", 30)
    writer = _writer(store, "me")
    beside = [*spend.adding(Usage(input_tokens=5), 0.5), pause.reading()]
    written, answers = await writer.write_beside(created, [text_step(1)], beside)
    spend.added(answers[:1])
    assert await pause.state_of(answers[1]) is None
    assert written.version == created.version + 1
    await store.redis.script_flush()  # on a cluster, redis-py sends it to every node
    written, _ = await writer.write_beside(written, [text_step(2)], beside)
    assert (await store.load(created.id)).version == written.version
    assert len(await store.transcript(created.id)) == 2
    assert await spend.today() == (10, 1.0)
    # A refused write still counts the call it reports (the model was paid).
    await store.release_lease(created.id, "me")
    await store.acquire_lease(created.id, "other", 30)
    with pytest.raises(StaleWrite):
        await writer.write_beside(written, (), spend.adding(Usage(input_tokens=5), 0.5))
    assert await spend.today() == (15, 1.5)


async def test_commands_beside_a_checkpoint_on_one_server(store: RunStore) -> None:
    await _spend_and_pause_beside(store)


async def test_commands_beside_a_checkpoint_on_a_cluster(cluster_url: str) -> None:
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        await _spend_and_pause_beside(RunStore(client, prefix="t:", retention_seconds=3600))
    finally:
        await client.aclose()
