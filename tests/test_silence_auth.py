"""`alertmanager.silence` authenticates like the read-only Alertmanager tools: the same
bearer token or basic auth, and the same CA, taken from the ALERTMANAGER_* settings."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import certifi
import pytest
from aiohttp import web

from bot.deps import open_deps
from bot.settings import Settings
from tools.actions import SILENCE, ActionError, SilenceInput

TOKEN = "am-token-for-silences"
BASIC = aiohttp.encode_basic_auth("bot", "am-s3cret")
ARGS = SilenceInput.model_validate(
    {"matchers": [{"name": "alertname", "value": "NoisyWarning"}], "duration_seconds": 600}
)


@dataclass
class Alertmanager:
    """Alertmanager's silence API behind auth: a request without the bearer token (or the
    basic credentials) gets 401, as behind an authenticating proxy."""

    url: str = ""
    silences: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def _allowed(self, request: web.Request) -> bool:
        if request.headers.get("Authorization") in (f"Bearer {TOKEN}", BASIC):
            return True
        self.refused.append(f"{request.method} {request.path}")
        return False

    async def silences_api(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return web.json_response({"message": "unauthorized"}, status=401)
        if request.method == "POST":
            silence = await request.json()
            silence |= {"id": f"s-{len(self.silences) + 1}", "status": {"state": "active"}}
            self.silences.append(silence)
            return web.json_response({"silenceID": silence["id"]})
        return web.json_response(self.silences)

    async def alerts_api(self, request: web.Request) -> web.Response:
        if not self._allowed(request):
            return web.json_response({"message": "unauthorized"}, status=401)
        return web.json_response([{"labels": {"alertname": "NoisyWarning"}}])


@pytest.fixture
async def alertmanager() -> AsyncIterator[Alertmanager]:
    am = Alertmanager()
    app = web.Application()
    app.router.add_route("*", "/api/v2/silences", am.silences_api)
    app.router.add_get("/api/v2/alerts", am.alerts_api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    am.url = f"http://{host}:{port}"
    try:
        yield am
    finally:
        await runner.cleanup()


def _settings(redis_url: str, am: Alertmanager, **auth: Any) -> Settings:
    return Settings.model_validate({"REDIS_URL": redis_url, "ALERTMANAGER_URL": am.url} | auth)


@pytest.mark.parametrize(
    "auth",
    [
        {"ALERTMANAGER_BEARER_TOKEN": TOKEN},
        {"ALERTMANAGER_USERNAME": "bot", "ALERTMANAGER_PASSWORD": "am-s3cret"},
    ],
    ids=["bearer", "basic"],
)
async def test_the_silence_is_made_with_the_alertmanager_credentials(
    redis_url: str, alertmanager: Alertmanager, auth: dict[str, str]
) -> None:
    async with open_deps(_settings(redis_url, alertmanager, **auth)) as deps:
        ctx = deps.action_context.for_proposal("run-1", "prop-1")
        planned = await SILENCE.dry_run(ctx, ARGS)
        created = await SILENCE.execute(ctx, ARGS, "prop-1")
        seen = await SILENCE.observe(ctx, ARGS)

    assert planned.startswith('silence {alertname="NoisyWarning"}: 1 alert(s) notifying')
    assert created == 'silence s-1 created: {alertname="NoisyWarning"} for 600s'
    assert seen.startswith("silence s-1 (active")
    assert alertmanager.refused == []
    assert len(alertmanager.silences) == 1


async def test_without_the_credentials_alertmanager_refuses_and_nothing_is_made(
    redis_url: str, alertmanager: Alertmanager
) -> None:
    async with open_deps(_settings(redis_url, alertmanager)) as deps:
        ctx = deps.action_context.for_proposal("run-1", "prop-1")
        with pytest.raises(ActionError, match="Alertmanager answered 401 to listing silences"):
            await SILENCE.execute(ctx, ARGS, "prop-1")

    assert alertmanager.refused == ["GET /api/v2/silences"]
    assert alertmanager.silences == []


async def test_the_silence_trusts_the_same_ca_as_the_tools(
    redis_url: str, alertmanager: Alertmanager
) -> None:
    settings = _settings(redis_url, alertmanager, ALERTMANAGER_CA_FILE=Path(certifi.where()))
    async with open_deps(settings) as deps:
        actions, tools = deps.action_context.alertmanager_auth, deps.tool_context.alertmanager_auth

    assert isinstance(actions.ssl, ssl.SSLContext)
    assert actions is tools
