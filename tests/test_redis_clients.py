"""Every Redis client the bot builds: a bounded pool that waits for a free connection,
socket and connect timeouts, health checks, commands packed by hiredis (the same bytes
as redis-py's Python packing, over TCP and a unix socket); the embedded Valkey's fsync
policy; the `runs:all` index kept to the retention window."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from pydantic import ValidationError

from bot.deps import Deps, open_deps
from bot.redis_connection import open_redis, redis_client
from bot.settings import Settings
from bot.store import RunStore
from tests.factories import run as new_run
from tests.servers import redis_server

POOL_SETTINGS = {
    "INCIDENT_BOT_REDIS_MAX_CONNECTIONS": "7",
    "INCIDENT_BOT_REDIS_POOL_TIMEOUT": "2.5",
    "INCIDENT_BOT_REDIS_SOCKET_TIMEOUT": "3",
    "INCIDENT_BOT_REDIS_CONNECT_TIMEOUT": "4",
    "INCIDENT_BOT_REDIS_HEALTH_CHECK_INTERVAL": "9",
}


def _redis_clients(deps: Deps) -> list[redis.Redis]:
    """Every Redis client reachable from the deps: a field, or an attribute of one."""
    found: list[redis.Redis] = []
    for field in dataclasses.fields(deps):
        value = getattr(deps, field.name)
        candidates = [value, *getattr(value, "__dict__", {}).values()]
        found += [c for c in candidates if isinstance(c, redis.Redis)]
    return found


def _assert_pooled_as_configured(client: redis.Redis) -> None:
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert pool.max_connections == 7
    assert pool.timeout == 2.5
    kwargs = pool.connection_kwargs
    assert kwargs["socket_timeout"] == 3
    assert kwargs["socket_connect_timeout"] == 4
    assert kwargs["health_check_interval"] == 9


async def test_every_client_of_the_deps_uses_the_blocking_pool_with_the_timeouts(
    redis_url: str,
) -> None:
    settings = Settings.model_validate({"REDIS_URL": redis_url} | POOL_SETTINGS)
    async with open_deps(settings) as deps:
        clients = _redis_clients(deps)
        assert {id(deps.store.redis), id(deps.queue.redis)} <= {id(c) for c in clients}
        for client in clients:
            _assert_pooled_as_configured(client)
        assert await deps.store.redis.ping()


async def test_the_embedded_valkey_client_uses_the_same_pool(tmp_path: Path) -> None:
    settings = Settings.model_validate({"INCIDENT_BOT_DATA_DIR": str(tmp_path)} | POOL_SETTINGS)
    async with open_redis(settings) as connection:
        _assert_pooled_as_configured(connection.client)
        assert await connection.client.ping()


async def test_a_burst_larger_than_the_pool_waits_for_connections_instead_of_failing(
    redis_url: str,
) -> None:
    settings = Settings.model_validate(
        {"REDIS_URL": redis_url, "INCIDENT_BOT_REDIS_MAX_CONNECTIONS": "3"}
    )
    async with open_redis(settings) as connection:
        client = connection.client
        # Each command holds its connection for 0.1 s inside Redis (a blocking pop).
        answers = await asyncio.gather(*(client.blpop(["nothing"], timeout=0.1) for _ in range(12)))
        assert answers == [None] * 12
        # The pool's connections stay open: Redis sees at most three of them.
        probe = redis.from_url(redis_url)
        clients = await probe.client_list()
        await probe.aclose()
        assert len(clients) - 1 <= 3, clients


async def test_the_socket_timeout_outlasts_a_blocking_queue_read(redis_url: str) -> None:
    # The workers' XREADGROUP blocks for 500 ms: a socket timeout below a second is refused.
    with pytest.raises(ValidationError, match="INCIDENT_BOT_REDIS_SOCKET_TIMEOUT"):
        Settings.model_validate({"INCIDENT_BOT_REDIS_SOCKET_TIMEOUT": "0.5"})
    settings = Settings.model_validate(
        {"REDIS_URL": redis_url, "INCIDENT_BOT_REDIS_SOCKET_TIMEOUT": "1"}
    )
    async with open_deps(settings) as deps:
        await deps.queue.ensure_group()
        assert await deps.queue.read("c1", count=1, block_ms=500) == []


@pytest.mark.parametrize(("setting", "expected"), [(None, "everysec"), ("always", "always")])
async def test_the_fsync_setting_reaches_the_embedded_valkey(
    tmp_path: Path, setting: str | None, expected: str
) -> None:
    env = {"INCIDENT_BOT_DATA_DIR": str(tmp_path)}
    if setting is not None:
        env["INCIDENT_BOT_VALKEY_FSYNC"] = setting
    async with open_redis(Settings.model_validate(env)) as connection:
        config = await connection.client.config_get("appendfsync")
        assert config == {"appendfsync": expected}
        assert (await connection.client.config_get("appendonly")) == {"appendonly": "yes"}


def test_an_unknown_fsync_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="INCIDENT_BOT_VALKEY_FSYNC"):
        Settings.model_validate({"INCIDENT_BOT_VALKEY_FSYNC": "sometimes"})


async def test_runs_all_keeps_only_the_retention_window(redis_url: str) -> None:
    client = redis.from_url(redis_url, decode_responses=True)
    store = RunStore(client, prefix="incident-bot:", retention_seconds=60)
    index = "incident-bot:runs:all"
    now = time.time()
    # Ids indexed long ago and recently (their runs' keys have expired or not).
    await client.zadd(index, {"run-created-2-minutes-ago": now - 120, "run-recent": now - 30})
    created = await store.create(new_run())
    assert set(await client.zrange(index, 0, -1)) == {"run-recent", created.id}
    assert [r.id for r in await store.list_runs()] == [created.id]
    await client.aclose()


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"]
)
def test_connections_pack_commands_with_hiredis_as_redis_py_packs_them(url: str) -> None:
    client = redis_client(url, Settings())
    connection = client.connection_pool.make_connection()
    python = redis.Connection()  # redis-py's asyncio packing: in Python
    commands: list[tuple[Any, ...]] = [
        ("EVALSHA", "f" * 40, 2, "run:{a}", "dedup:{a}", "x" * 7000, 3, 2.5, "é ünïcode"),
        ("SET", b"bytes key", b"\x00\xff", "EX", 60),
        ("CONFIG GET", "maxmemory"),
    ]
    assert type(connection).pack_command is not redis.Connection.pack_command
    for command in commands:
        assert b"".join(connection.pack_command(*command)) == b"".join(
            python.pack_command(*command)
        )
    assert b"".join(connection.pack_commands(commands)) == b"".join(python.pack_commands(commands))


async def test_a_client_round_trips_what_hiredis_packed(redis_url: str) -> None:
    client = redis_client(redis_url, Settings())
    try:
        async with client.pipeline(transaction=False) as pipe:
            pipe.set("packed", "é " * 5000)
            pipe.get("packed")
            _, value = await pipe.execute()
        assert value == "é " * 5000
        assert await client.eval("return ARGV[1] .. ARGV[2]", 0, "a", 2) == "a2"
    finally:
        await client.aclose()


async def test_a_unix_socket_client_round_trips_what_hiredis_packed(tmp_path: Path) -> None:
    with redis_server(tmp_path, unix_socket=True) as url:
        client = redis_client(url, Settings())
        try:
            assert client.connection_pool.connection_class.__name__ == "_UnixConnection"
            async with client.pipeline(transaction=False) as pipe:
                pipe.set("packed", "ü" * 3000)
                pipe.strlen("packed")
                _, length = await pipe.execute()
            assert length == len("ü" * 3000) * 2
        finally:
            await client.aclose()
