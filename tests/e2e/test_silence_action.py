"""`alertmanager.silence` against a real Alertmanager: created once, visible in its API,
expiring as set; and a run whose silence the default policy approves by itself."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.deps import open_deps
from bot.models import RunStatus
from bot.runs import start_run
from bot.settings import Settings
from policies.schema import AUTO_APPROVER
from tests.e2e.servers import Alertmanager, run_alertmanager
from tests.factories import alert
from tests.policy_helpers import policy_dir
from tests.processes import eventually
from tools.actions import SILENCE, ActionContext, SilenceInput
from tools.sandbox import RunningSandbox

pytestmark = pytest.mark.e2e
pytest_plugins = ("tests.sandbox_fixtures",)

NOISY = {"alertname": "NoisyWarning", "service": "checkout", "severity": "warning"}


@pytest.fixture
async def alertmanager(tmp_path: Path, http: aiohttp.ClientSession) -> AsyncIterator[Alertmanager]:
    # Nothing is routed anywhere in these tests: the webhook is never called.
    async with run_alertmanager(
        http, workdir=tmp_path / "am", webhook_url="http://127.0.0.1:9/", bearer_token="unused"
    ) as running:
        yield running


async def _silences(http: aiohttp.ClientSession, am: Alertmanager) -> list[dict[str, Any]]:
    async with http.get(f"{am.url}/api/v2/silences") as response:
        response.raise_for_status()
        return list(await response.json())


async def test_one_silence_per_proposal_visible_and_expiring_as_set(
    alertmanager: Alertmanager, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{alertmanager.url}/api/v2/alerts", json=[{"labels": NOISY}]) as r:
        assert r.status == 200
    ctx = ActionContext(
        http=http, kubernetes=None, prometheus_url=None, alertmanager_url=alertmanager.url
    ).for_proposal("run-7", "prop-7")
    args = SilenceInput.model_validate(
        {
            "matchers": [{"name": "alertname", "value": "NoisyWarning"}],
            "duration_seconds": 2,
            "comment": "known noise during the migration",
        }
    )
    assert (await SILENCE.dry_run(ctx, args)).startswith(
        'silence {alertname="NoisyWarning"}: 1 alert(s) notifying -> silenced for 2s (until '
    )

    created = await SILENCE.execute(ctx, args, "prop-7")

    (silence,) = await _silences(http, alertmanager)
    assert created == (f'silence {silence["id"]} created: {{alertname="NoisyWarning"}} for 2s')
    assert silence["status"]["state"] == "active"
    assert silence["createdBy"] == "incident-bot"
    assert silence["comment"] == (
        "known noise during the migration [incident-bot run run-7, proposal prop-7]"
    )
    assert silence["matchers"] == [
        {"name": "alertname", "value": "NoisyWarning", "isRegex": False, "isEqual": True}
    ]
    lasted = datetime.fromisoformat(silence["endsAt"]) - datetime.fromisoformat(silence["startsAt"])
    assert abs(lasted.total_seconds() - 2) < 0.01
    assert (await SILENCE.dry_run(ctx, args)).startswith(
        'silence {alertname="NoisyWarning"}: 0 alert(s) notifying'
    )
    again = await SILENCE.execute(ctx, args, "prop-7")
    assert again.startswith(f"silence {silence['id']} (active, ends ") and again.endswith(
        "already exists for prop-7: nothing changed"
    )

    async def expired() -> bool | None:
        (only,) = await _silences(http, alertmanager)
        return True if only["status"]["state"] == "expired" else None

    await eventually(expired, within=10)
    # Even once it has expired, the same proposal never makes a second silence.
    assert "already exists for prop-7" in await SILENCE.execute(ctx, args, "prop-7")
    assert len(await _silences(http, alertmanager)) == 1
    assert (await SILENCE.observe(ctx, args)).startswith(f"silence {silence['id']} (expired")


async def test_a_short_silence_of_a_warning_is_approved_by_the_policy_and_runs_once(
    alertmanager: Alertmanager,
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    redis_url: str,
    tmp_path: Path,
) -> None:
    directory = policy_dir(
        tmp_path,
        policy=None,  # the shipped default: a non-critical silence of the run's own alert
        # for up to 1 h needs no human
        alertname="NoisyWarning",
        action="alertmanager.silence",
        arguments={
            "matchers": [
                {"name": "alertname", "value": "{{ labels.alertname }}"},
                {"name": "namespace", "value": "{{ labels.namespace }}"},
            ],
            "duration_seconds": 3600,
        },
    )
    settings = Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        ALERTMANAGER_URL=alertmanager.url,
        INCIDENT_BOT_POLICY_DIR=directory,
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
    )
    async with open_deps(settings) as deps:
        run = await start_run(deps, alert(alertname="NoisyWarning", severity="warning"))
        done = await deps.driver().drive(run.id)
        events = [e.event for e in await deps.store.read_audit(run.id)]
    # The runbook's check passed before the action, so it was dropped: nothing verifies it.
    assert done.status is RunStatus.NEEDS_ATTENTION, done.outcome
    assert done.outcome == "the action ran; no check to verify it with"
    assert [(d.user, d.verdict, d.via) for d in done.decisions] == [
        (AUTO_APPROVER, "approve", "policy")
    ]
    assert events.count("action_started") == 1
    (silence,) = await _silences(http, alertmanager)
    assert f"[incident-bot run {run.id}, proposal {done.proposal.id}]" in silence["comment"]  # type: ignore[union-attr]
