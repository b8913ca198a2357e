"""Redis goes away while alerts arrive: 503 (so senders retry), and nothing acknowledged is lost."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from bot.store import RunStore
from tests.replica_helpers import alert_body, post_alert, start_replica
from tests.servers import free_port, wait_for_port

ALERTS = 60


class RedisProcess:
    """A redis-server that can be stopped and started again on the same port and files."""

    def __init__(self, data: Path) -> None:
        self.port = free_port()
        self.data = data
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run scripts/install-system-packages.sh"
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    @property
    def running(self) -> bool:
        """Whether the server process is up."""
        return self._process is not None

    def stop(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.running:
        server.stop()


@pytest.mark.slow
async def test_webhooks_answer_503_while_redis_is_down_and_lose_nothing(
    outage_redis: RedisProcess, tmp_path: Path
) -> None:
    replica = await start_replica(tmp_path, REDIS_URL=outage_redis.url, INCIDENT_BOT_WORKERS="1")
    accepted: set[int] = set()
    refused: set[int] = set()
    try:
        async with aiohttp.ClientSession() as http:
            for n in range(ALERTS):
                if n == ALERTS // 3:
                    outage_redis.stop()
                if n == 2 * ALERTS // 3:
                    outage_redis.start()
                status = await post_alert(http, replica, alert_body(n))
                assert status in (202, 503), status
                (accepted if status == 202 else refused).add(n)
            assert refused, "Redis was down, yet no webhook was refused"
            assert accepted
            # Alertmanager retries what was refused; by now Redis is back.
            for n in sorted(refused):
                assert await post_alert(http, replica, alert_body(n)) == 202
    finally:
        replica.process.send_signal(signal.SIGTERM)
        await replica.process.wait()

    client = redis.from_url(outage_redis.url, decode_responses=True)
    store = RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    runs = await store.list_runs(limit=1000)
    await client.aclose()
    groups = {r.alert.labels["instance"] for r in runs}
    assert groups == {f"i{n}" for n in range(ALERTS)}  # every acknowledged alert has its run
    assert len(runs) == ALERTS
