"""The event-loop lag monitor: a blocked loop shows in `incident_bot_event_loop_lag_seconds`,
and the monitor starts and stops with the `serve` app; the start-up heap `serve` freezes is
left out of collections (`bot.heap`)."""

from __future__ import annotations

import asyncio
import gc
import re
import time

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.heap import freeze_startup_heap
from bot.loop_lag import LoopLagMonitor
from bot.server import create_app
from bot.settings import Settings
from tests.processes import eventually

Client = TestClient[web.Request, web.Application]
# A block this long makes the pending 0.1 s sleep wake at least 0.1 s late.
BLOCK_SECONDS = 0.2
LATE = 0.05  # a bucket bound below that lateness


def _settings(redis_url: str) -> Settings:
    values = {
        "REDIS_URL": redis_url,
        "INCIDENT_BOT_WEBHOOK_TOKEN": "loop-lag-token",
        "INCIDENT_BOT_WORKERS": 0,
    }
    return Settings.model_validate(values)


def _block_loop() -> None:
    """Run a synchronous call on the loop, as a handler doing blocking work would."""
    asyncio.get_running_loop().call_soon(time.sleep, BLOCK_SECONDS)


async def _late_samples(client: Client) -> tuple[int, int]:
    """(samples, samples later than `LATE`) from the app's /metrics."""
    async with client.get("/metrics") as response:
        text = await response.text()
    count = re.search(r"^incident_bot_event_loop_lag_seconds_count (\S+)$", text, re.M)
    bucket = re.search(
        rf'^incident_bot_event_loop_lag_seconds_bucket\{{le="{LATE}"\}} (\S+)$', text, re.M
    )
    assert count is not None and bucket is not None, text
    return int(float(count.group(1))), int(float(count.group(1)) - float(bucket.group(1)))


def _monitors() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "loop-lag"]


async def test_a_blocked_loop_moves_the_metric_of_the_real_app(redis_url: str) -> None:
    async with TestClient(TestServer(create_app(_settings(redis_url)))) as client:
        await eventually(lambda: _sampled(client))
        _, late_before = await _late_samples(client)
        _block_loop()

        async def later() -> bool | None:
            return True if (await _late_samples(client))[1] > late_before else None

        await eventually(later, within=10)


async def _sampled(client: Client) -> bool | None:
    return True if (await _late_samples(client))[0] > 0 else None


async def test_the_monitor_starts_and_stops_with_the_app(redis_url: str) -> None:
    async with TestClient(TestServer(create_app(_settings(redis_url)))):
        assert len(_monitors()) == 1
    assert _monitors() == []


async def test_the_monitor_reports_how_late_it_woke() -> None:
    samples: list[float] = []
    monitor = LoopLagMonitor(samples.append, interval=0.02)
    monitor.start()
    try:

        async def woke() -> bool | None:
            return True if samples else None

        await eventually(woke, within=10)
        _block_loop()

        async def late() -> float | None:
            worst = max(samples)
            return worst if worst >= BLOCK_SECONDS - 0.02 else None

        await eventually(late, within=10)
        assert min(samples) >= 0
    finally:
        await monitor.stop()
    assert _monitors() == [], "the monitor's task outlived stop()"
    await monitor.stop()  # stopping twice is harmless


def test_the_frozen_start_up_heap_is_left_out_of_collections() -> None:
    built_at_start_up = [{"a": [1, 2]}]
    try:
        frozen = freeze_startup_heap()
        assert frozen >= 1
        assert not any(o is built_at_start_up for o in gc.get_objects())
        allocated_later = [{"b": [3]}]
        assert any(o is allocated_later for o in gc.get_objects())
    finally:
        gc.unfreeze()
    assert any(o is built_at_start_up for o in gc.get_objects())
