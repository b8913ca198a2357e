"""`alertmanager.silence`'s `observe_effect` against a real Alertmanager: a silence is
applied once one carries the proposal's marker (expired ones too), not applied before, and
unknown when Alertmanager cannot be asked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.servers import Alertmanager, run_alertmanager
from tools.actions import SILENCE, ActionContext, SilenceInput

pytestmark = pytest.mark.e2e

ARGS = SilenceInput.model_validate(
    {"matchers": [{"name": "alertname", "value": "NoisyWarning"}], "duration_seconds": 60}
)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def alertmanager(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Alertmanager]:
    # Nothing is routed anywhere in these tests: the webhook is never called.
    async with run_alertmanager(
        http, workdir=tmp_path / "am", webhook_url="http://127.0.0.1:9/", bearer_token="unused"
    ) as running:
        yield running


def _context(http: aiohttp.ClientSession, url: str) -> ActionContext:
    return ActionContext(
        http=http, kubernetes=None, prometheus_url=None, alertmanager_url=url, timeout_seconds=3
    ).for_proposal("run-7", "prop-7")


async def test_the_silence_is_applied_once_its_marker_exists_even_expired(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    ctx = _context(http, alertmanager.url)
    assert SILENCE.idempotent_by_proposal
    assert await SILENCE.observe_effect(ctx, ARGS, "prop-7") == "not_applied"

    await SILENCE.execute(ctx, ARGS, "prop-7")

    assert await SILENCE.observe_effect(ctx, ARGS, "prop-7") == "applied"
    assert await SILENCE.observe_effect(ctx, ARGS, "prop-8") == "not_applied"
    (silence,) = await _silences(http, alertmanager)
    async with http.delete(f"{alertmanager.url}/api/v2/silence/{silence['id']}") as response:
        assert response.status == 200
    assert (await _silences(http, alertmanager))[0]["status"]["state"] == "expired"
    assert await SILENCE.observe_effect(ctx, ARGS, "prop-7") == "applied"


async def test_an_unreachable_alertmanager_is_unknown(http: aiohttp.ClientSession) -> None:
    ctx = _context(http, "http://127.0.0.1:9")
    assert await SILENCE.observe_effect(ctx, ARGS, "prop-7") == "unknown"


async def _silences(http: aiohttp.ClientSession, am: Alertmanager) -> list[dict[str, object]]:
    async with http.get(f"{am.url}/api/v2/silences") as response:
        response.raise_for_status()
        return list(await response.json())
