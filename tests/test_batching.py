"""Concurrent callers' commands share pipelines (`bot.batching.Batches`), against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from bot.batching import Batches
from tests.servers import free_port


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.Redis]:
    built = redis.from_url(redis_url, decode_responses=True)
    yield built
    await built.aclose()


async def test_each_caller_gets_the_answers_to_its_own_commands_in_its_order(
    client: redis.Redis,
) -> None:
    batches = Batches(client)

    async def caller(n: int) -> list[object]:
        return await batches.execute(
            [("SET", f"k{n}", f"v{n}"), ("APPEND", f"k{n}", "!"), ("GET", f"k{n}")]
        )

    answers = await asyncio.gather(*(caller(n) for n in range(100)))
    assert answers == [[True, len(f"v{n}!"), f"v{n}!"] for n in range(100)]


async def test_commands_that_come_while_a_pipeline_is_out_share_the_next_one(
    client: redis.Redis,
) -> None:
    batches = Batches(client)
    connections = int((await client.info("stats"))["total_connections_received"])
    await asyncio.gather(*(batches.execute([("INCR", "counter")]) for _ in range(200)))
    assert await client.get("counter") == "200"
    # All 200 went in a pipeline or two, each on one connection, not on a connection
    # (and a round trip) each.
    stats = await client.info("stats")
    assert int(stats["total_connections_received"]) - connections <= 2


async def test_a_failing_command_is_the_answer_of_its_caller_only(client: redis.Redis) -> None:
    batches = Batches(client)
    await client.set("text", "not a number")
    wrong, right = await asyncio.gather(
        batches.execute([("INCR", "text")]), batches.execute([("INCR", "number")])
    )
    assert isinstance(wrong[0], ResponseError)
    assert right == [1]


async def test_every_caller_raises_when_redis_cannot_be_reached() -> None:
    client = redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    batches = Batches(client)
    try:
        outcomes = await asyncio.gather(
            *(batches.execute([("GET", "k")]) for _ in range(5)), return_exceptions=True
        )
    finally:
        await client.aclose()
    assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes
