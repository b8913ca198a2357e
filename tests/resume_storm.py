"""`python -m tests.resume_storm RUN_ID N`: resume one run N times at once in this process.

Settings come from the environment. The process says it is ready on the Redis list
`storm:ready`, waits for a token on `storm:go` (so two processes start together), then
drives the run from N concurrent tasks until each sees it end, and prints the statuses
as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

import redis.asyncio as redis

from bot.deps import open_deps
from bot.errors import LeaseHeld
from bot.settings import Settings


async def storm(run_id: str, count: int) -> list[str]:
    """Resume the run from `count` tasks; the final status each of them saw."""
    settings = Settings()
    assert settings.redis_url is not None
    # A client of its own: the bot's has a socket timeout shorter than the wait.
    # redis-py 8 reads with a 5 s socket timeout by default; BLPOP waits longer.
    signals = redis.from_url(settings.redis_url, socket_timeout=60)
    async with open_deps(settings) as deps:
        await signals.rpush("storm:ready", deps.owner)
        await signals.blpop(["storm:go"], timeout=30)
        await signals.aclose()

        async def resume() -> str:
            # What a worker does with a resume entry, retried (with jitter) while another
            # holds the lease, until this task has seen the run end.
            while True:
                try:
                    run = await deps.driver().drive(run_id)
                except LeaseHeld:
                    await asyncio.sleep(random.uniform(0.005, 0.03))
                    continue
                if run.status.terminal:
                    return run.status.value

        return list(await asyncio.gather(*(resume() for _ in range(count))))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(storm(sys.argv[1], int(sys.argv[2])))))
