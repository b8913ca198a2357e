"""The embedded Valkey: shared by processes on one data dir, and persistent across restarts."""

from __future__ import annotations

from pathlib import Path

from bot.redis_connection import open_redis
from bot.settings import Settings


async def test_a_second_user_of_the_data_dir_reuses_the_running_server(tmp_path: Path) -> None:
    settings = Settings(INCIDENT_BOT_DATA_DIR=str(tmp_path))
    async with open_redis(settings) as first:
        await first.client.set("k", "from the first")
        async with open_redis(settings) as second:
            assert await second.client.get("k") == "from the first"
            first_port = first.client.connection_pool.connection_kwargs["port"]
            assert second.client.connection_pool.connection_kwargs["port"] == first_port
        # The second did not start it, so leaving did not stop it.
        assert await first.client.ping()


async def test_data_survive_a_restart_of_the_embedded_server(tmp_path: Path) -> None:
    settings = Settings(INCIDENT_BOT_DATA_DIR=str(tmp_path))
    async with open_redis(settings) as before:
        await before.client.set("k", "kept")
    assert not (tmp_path / "valkey" / "server.port").exists()
    async with open_redis(settings) as after:
        assert await after.client.get("k") == "kept"
