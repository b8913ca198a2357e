"""Shared fixtures: a real Redis-protocol server per session, a clean database per test,
and a guard that fails any network call leaving this machine."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from bot.logs import JsonFormatter
from bot.store import RunStore
from tests import servers


def _loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to servers on this machine only."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            raise ConnectionRefusedError(f"test network guard: {address} is not loopback")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _loopback(host):
            raise socket.gaierror(f"test network guard: {host} is not loopback")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A test that runs the CLI in-process points the root logger at its captured stderr:
    later tests must not log into that closed stream (each record a "Logging error")."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, JsonFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server for the session: redis-server if installed, else embedded Valkey."""
    with servers.redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
async def redis_url(redis_server: str) -> AsyncIterator[str]:
    """The session server's URL, with an empty database for this test."""
    client = redis.from_url(redis_server)
    await client.flushall()
    await client.aclose()
    yield redis_server


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RunStore]:
    """The run store the bot writes (default key prefix), read straight from Redis."""
    client = redis.from_url(redis_url, decode_responses=True)
    yield RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    await client.aclose()


@pytest.fixture
def repo_root() -> Path:
    """The repository's top directory."""
    return Path(__file__).resolve().parent.parent
