"""The reads before a model call (pause key, today's spend, the run's new alerts) in one
pipeline, on one server and on a Redis Cluster, where its keys are in three slots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import redis.asyncio as redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from bot.models import Usage
from bot.pause import PauseState, PauseSwitch
from bot.redis_connection import RedisClient
from bot.spend import DailySpend
from bot.step_reads import StepReading
from bot.store import RunStore
from tests.factories import alert, run

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here first would warn
    from tests.redis_cluster import Cluster  # noqa: F401

pytest_plugins = ("tests.redis_cluster",)


async def _reads_of_a_run(client: RedisClient) -> None:
    store = RunStore(client, prefix="t:", retention_seconds=3600)
    spend = DailySpend(client, prefix="t:")
    pause = PauseSwitch(client, prefix="t:")
    created = await store.create(run())
    await store.fold_alerts(created.id, [alert(alertname="First"), alert(alertname="Second")])
    slots = {key_slot(k.encode()) for k in (pause.key, store.alert_log_key(created.id))}
    assert len(slots | {key_slot(k.encode()) for k in spend.today_keys()}) == 3

    def reading(shown: int, switch: PauseSwitch | None = pause) -> StepReading:
        return StepReading(store=store, spend=spend, pause=switch, run_id=created.id, shown=shown)

    reads = await reading(1).read()
    assert reads.pause is None and reads.spent == (0, 0.0)
    assert [a.labels["alertname"] for a in reads.alerts] == ["Second"]

    await spend.add(Usage(input_tokens=7), 0.25)
    state = PauseState(who="alice", reason="freeze", source="cli")
    assert await pause.begin(state) is None
    reads = await reading(2).read()
    assert reads.pause == state and reads.spent == (7, 0.25) and reads.alerts == []
    # Without a switch (as some callers build the loop), the pause is not read.
    assert (await reading(2, None).read()).pause is None


async def test_one_server(redis_url: str) -> None:
    client = redis.from_url(redis_url, decode_responses=True)
    try:
        await _reads_of_a_run(client)
    finally:
        await client.aclose()


async def test_a_cluster_splits_the_pipeline_by_node(cluster_url: str) -> None:
    client = RedisCluster.from_url(cluster_url, decode_responses=True)
    try:
        await _reads_of_a_run(client)
    finally:
        await client.aclose()
