"""Past `INCIDENT_BOT_MAX_WEBHOOKS_IN_FLIGHT` requests in flight, a webhook is answered 503
at once with `Retry-After` and stores nothing: a flood must not starve the event loop that
acks Slack and drives approved actions."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from bot.intake.http import INTAKE
from bot.store import RunStore
from tests.processes import eventually
from tests.webhook_helpers import AUTH, fixture, post, serving

PATH = "/webhooks/alertmanager"


async def test_a_request_past_the_limit_is_shed_and_the_held_one_is_stored(
    redis_url: str, store: RunStore
) -> None:
    body = fixture("alertmanager/firing-single.json")
    release = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        """The body, its end held back until `release`: the request stays in flight."""
        yield body[:10]
        await release.wait()
        yield body[10:]

    async with serving(redis_url, INCIDENT_BOT_MAX_WEBHOOKS_IN_FLIGHT=1) as client:
        held = asyncio.create_task(post(client, PATH, trickle()))
        intake = client.server.app[INTAKE]
        await eventually(lambda: _true(intake.in_flight.locked()), within=10)

        async with client.post(PATH, data=body, headers=AUTH) as shed:
            assert shed.status == 503
            assert shed.headers["Retry-After"] == "1"
            assert await shed.json() == {"error": "too many webhook requests in flight; retry"}
        assert await store.list_runs() == []  # the shed delivery stored nothing

        release.set()
        status, answer = await held
        assert (status, answer["outcome"]) == (202, "started")
        status, again = await post(client, PATH, body)  # a slot is free again
        assert (status, again["run_id"]) == (202, answer["run_id"])

        async with client.get("/metrics") as metrics:
            text = await metrics.text()
        shed_total = re.search(
            r'^incident_bot_webhooks_shed_total\{source="alertmanager"\} (\S+)$', text, re.M
        )
        assert shed_total is not None and float(shed_total.group(1)) == 1.0


async def _true(value: bool) -> bool | None:
    return value or None
