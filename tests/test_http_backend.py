"""Backend auth from settings reaches the wire: bearer token, basic auth, Loki's tenant,
and a private CA bundle becomes the TLS trust."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import certifi
import pytest
from aiohttp import web

from bot.settings import Settings
from bot.tool_context import build_tool_context
from tests.servers import free_port
from tools.http_backend import HttpAuth
from tools.logs import query as logs_query
from tools.prometheus import query


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """Answers like Prometheus and Loki (empty results); records each request's headers."""
    seen: list[dict[str, str]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        kind = "streams" if request.path.startswith("/loki") else "vector"
        return web.json_response({"status": "success", "data": {"resultType": kind, "result": []}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_settings_auth_is_sent(recorder: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = recorder
    settings = Settings(
        PROMETHEUS_URL=url,
        PROMETHEUS_BEARER_TOKEN="prom-token",
        LOKI_URL=url,
        LOKI_USERNAME="bot",
        LOKI_PASSWORD="s3cret",
        LOKI_TENANT_ID="team-shop",
    )
    async with aiohttp.ClientSession() as http:
        ctx = build_tool_context(settings, http, None)
        result = await query.call(ctx, query.validate_input({"query": "up"}))
        assert result.status == "no_data"
        result = await logs_query.call(ctx, logs_query.validate_input({"query": '{app="x"}'}))
        assert result.status == "no_data"
    assert seen[0]["Authorization"] == "Bearer prom-token"
    assert seen[1]["Authorization"] == "Basic Ym90OnMzY3JldA=="
    assert seen[1]["X-Scope-OrgID"] == "team-shop"


def test_ca_file_becomes_the_tls_trust() -> None:
    auth = HttpAuth.build(ca_file=Path(certifi.where()))
    assert isinstance(auth.ssl, ssl.SSLContext)
    assert HttpAuth.build().ssl is True and HttpAuth.build().headers == {}
