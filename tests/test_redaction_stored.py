"""An alert is stored redacted whichever way its run starts: by a webhook (redacted once,
at admission) or by `start_run` with a plain alert (redacted there); the run's `created`
event names the redactions either way, and each is counted once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.deps import Deps, open_deps
from bot.models import Alert
from bot.runs import start_run
from bot.settings import Settings
from bot.store import RunStore
from tests.factories import alert
from tests.webhook_helpers import edited, post, serving

SECRET = "AKIAQ7V2ZX4LMN8PRS3T"  # shaped like an AWS access key id
LEAKED = f"deploy failed: AWS_ACCESS_KEY_ID={SECRET}"
PLACEHOLDER = "[REDACTED:aws_access_key]"


@pytest.fixture
async def deps(redis_url: str) -> AsyncIterator[Deps]:
    async with open_deps(Settings(REDIS_URL=redis_url)) as built:
        yield built


def _leaky(pod: str) -> Alert:
    return alert(pod=pod).model_copy(
        update={"fingerprint": f"fp-{pod}", "annotations": {"description": LEAKED}}
    )


async def _stored_text(store: RunStore, run_id: str) -> str:
    """Everything stored for the run: its document, transcript, alert log and audit."""
    run = await store.load(run_id)
    parts = [run.model_dump_json()]
    parts += [step.model_dump_json() for step in await store.transcript(run_id)]
    parts += [a.model_dump_json() for a in await store.alert_log(run_id)]
    parts += [repr(event.data) for event in await store.read_audit(run_id)]
    return "\n".join(parts)


async def _created(store: RunStore, run_id: str) -> dict[str, object]:
    return next(e.data for e in await store.read_audit(run_id) if e.event == "created")


async def test_start_run_with_plain_alerts_stores_none_of_them_unredacted(
    deps: Deps, store: RunStore
) -> None:
    first, second = _leaky("a"), _leaky("b")

    run = await start_run(deps, first, run_id="run-leaky", alerts=[first, second])

    stored = await _stored_text(store, run.id)
    assert SECRET not in stored
    assert [a.annotations["description"] for a in await store.alert_log(run.id)] == [
        LEAKED.replace(SECRET, PLACEHOLDER)
    ] * 2
    assert (await _created(store, run.id))["redactions"] == {"aws_access_key": 1}
    counted = deps.metrics.registry.get_sample_value(
        "incident_bot_redactions_total", {"kind": "aws_access_key", "where": "alert"}
    )
    assert counted == 2  # one each: `first` is listed twice, redacted and counted once


async def test_a_webhook_run_is_stored_redacted_and_its_created_event_names_the_redactions(
    redis_url: str, store: RunStore
) -> None:
    body = edited(
        "alertmanager/firing-single.json",
        lambda d: d["alerts"][0]["annotations"].update(description=LEAKED),
    )
    async with serving(redis_url) as client:
        status, answer = await post(client, "/webhooks/alertmanager", body)

    assert (status, answer["outcome"]) == (202, "started")
    assert SECRET not in await _stored_text(store, answer["run_id"])
    assert (await _created(store, answer["run_id"]))["redactions"] == {"aws_access_key": 1}
