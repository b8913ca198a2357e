"""The shared deadline set (`bot.deadlines`) against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from bot.deadlines import Deadlines


@pytest.fixture
async def deadlines(redis_url: str) -> AsyncIterator[Deadlines]:
    client = redis.from_url(redis_url, decode_responses=True)
    yield Deadlines(client, prefix="t:", approval_seconds=60, busy_seconds=60)
    await client.aclose()


async def test_tracked_finds_a_kind_past_many_pages_of_the_other(deadlines: Deadlines) -> None:
    for n in range(1_200):  # sooner than any approval: read first
        await deadlines.schedule(f"busy-{n}", "run", 1_000 + n)
    for n in range(7):
        await deadlines.schedule(f"waiting-{n}", "approval", 10_000 - n)
    soonest = [f"waiting-{n}" for n in reversed(range(7))]
    assert await deadlines.tracked("approval", limit=3) == soonest[:3]
    assert await deadlines.tracked("approval", limit=50) == soonest
    assert len(await deadlines.tracked("run", limit=1_000)) == 1_000
