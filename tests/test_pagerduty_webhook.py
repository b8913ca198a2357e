"""`POST /webhooks/pagerduty`: PagerDuty V3 webhook subscriptions, signed or not."""

from __future__ import annotations

import hashlib
import hmac
import io
from pathlib import Path

from bot.models import RunStatus
from bot.store import RunStore
from tests.webhook_helpers import (
    AUTH,
    TWO_MIB,
    answers_around_a_redis_outage,
    edited,
    fixture,
    post,
    serving,
    storm,
)

PATH = "/webhooks/pagerduty"
SECRET = "pagerduty-subscription-secret-for-tests"
SIGNED = {"INCIDENT_BOT_PAGERDUTY_WEBHOOK_SECRET": SECRET}
TRIGGERED = fixture("pagerduty/incident-triggered.json")
ACKNOWLEDGED = fixture("pagerduty/incident-acknowledged.json")
RESOLVED = fixture("pagerduty/incident-resolved.json")
IGNORED = {"run_id": None, "outcome": "ignored"}


def signature(body: bytes, secret: str = SECRET) -> str:
    """One entry of `X-PagerDuty-Signature`: `v1=<hex HMAC-SHA256 of the body>`."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed(body: bytes) -> dict[str, str]:
    return {"X-PagerDuty-Signature": signature(body)}


async def test_a_triggered_incident_starts_a_run_with_its_alert(
    redis_url: str, store: RunStore
) -> None:
    async with serving(redis_url) as client:
        status, answer = await post(client, PATH, TRIGGERED)

    assert (status, answer["outcome"]) == (202, "started")
    run = await store.load(answer["run_id"])
    assert run.status is RunStatus.QUEUED
    alert = run.alert
    assert alert.source == "pagerduty"
    assert alert.group_key == alert.fingerprint == "pagerduty:PGR0VU2"
    assert alert.status == "firing"
    assert alert.title == "A little bump in the road"
    assert alert.labels == {
        "alertname": "A_little_bump_in_the_road",
        "service": "API Service",
        "severity": "critical",
        "urgency": "high",
        "priority": "P1",
        "pagerduty_incident": "PGR0VU2",
    }
    assert alert.annotations["escalation_policy"] == "Default"
    assert alert.annotations["assignees"] == "User 123"
    assert alert.links == [
        "https://acme.pagerduty.com/incidents/PGR0VU2",
        "https://acme.pagerduty.com/services/PF9KMXH",
    ]


async def test_severity_comes_from_the_priority_else_the_urgency(
    redis_url: str, store: RunStore
) -> None:
    cases = {
        "P3": ({"summary": "P3"}, "high", "warning"),
        "P5": ({"summary": "P5"}, "high", "info"),
        "no priority, low urgency": (None, "low", "warning"),
        "no priority, high urgency": (None, "high", "critical"),
    }
    async with serving(redis_url) as client:
        for number, (name, (priority, urgency, severity)) in enumerate(cases.items()):
            body = edited(
                "pagerduty/incident-triggered.json",
                lambda d, p=priority, u=urgency, n=number: d["event"]["data"].update(
                    id=f"P{n}", priority=p, urgency=u
                ),
            )
            _, answer = await post(client, PATH, body)
            run = await store.load(answer["run_id"])
            assert run.alert.labels["severity"] == severity, name


async def test_acknowledged_joins_the_open_run_and_resolved_resolves_it(
    redis_url: str, store: RunStore
) -> None:
    async with serving(redis_url) as client:
        _, started = await post(client, PATH, TRIGGERED)
        acknowledged = await post(client, PATH, ACKNOWLEDGED)
        resolved = await post(client, PATH, RESOLVED)
        reopened = await post(
            client,
            PATH,
            edited(
                "pagerduty/incident-triggered.json",
                lambda d: d["event"].update(event_type="incident.reopened"),
            ),
        )

    run_id = started["run_id"]
    assert acknowledged == (202, {"run_id": run_id, "outcome": "repeated"})
    assert resolved == (202, {"run_id": run_id, "outcome": "resolved"})
    assert reopened == (202, {"run_id": run_id, "outcome": "updated"})
    assert [a.status for a in await store.alert_log(run_id)] == ["firing", "resolved", "firing"]
    assert len(await store.list_runs()) == 1


async def test_an_acknowledgement_without_an_open_run_starts_none(
    redis_url: str, store: RunStore
) -> None:
    async with serving(redis_url) as client:
        assert await post(client, PATH, ACKNOWLEDGED) == (202, IGNORED)
        assert await post(client, PATH, RESOLVED) == (202, IGNORED)

    assert await store.list_runs() == []


async def test_event_types_it_does_not_handle_get_202_ignored(
    redis_url: str, store: RunStore
) -> None:
    others = [
        fixture("pagerduty/incident-priority-updated.json"),
        fixture("pagerduty/incident-annotated.json"),
        edited(
            "pagerduty/incident-priority-updated.json",
            lambda d: d["event"].update(
                event_type="service.updated", resource_type="service", data={"id": "PF9KMXH"}
            ),
        ),
    ]
    async with serving(redis_url) as client:
        for body in others:
            assert await post(client, PATH, body) == (202, IGNORED)

    assert await store.list_runs() == []


async def test_a_storm_of_redeliveries_folds_into_one_run(redis_url: str, store: RunStore) -> None:
    async with serving(redis_url, **SIGNED) as client:
        answers = await storm(client, PATH, TRIGGERED, signed(TRIGGERED))

    assert {status for status, _ in answers} == {202}
    assert len({answer["run_id"] for _, answer in answers}) == 1
    assert [answer["outcome"] for _, answer in answers].count("started") == 1
    assert len(await store.list_runs()) == 1


async def test_with_a_secret_only_a_matching_v1_signature_is_accepted(redis_url: str) -> None:
    wrong = signature(TRIGGERED, "another-secret")
    right = signature(TRIGGERED)
    refused = {
        "bearer token only": AUTH,
        "no signature": {},
        "signature with another secret": {"X-PagerDuty-Signature": wrong},
        "signature of another body": {"X-PagerDuty-Signature": signature(b"{}")},
        "another version": {"X-PagerDuty-Signature": "v2=" + right.removeprefix("v1=")},
        "no version": {"X-PagerDuty-Signature": right.removeprefix("v1=")},
    }
    async with serving(redis_url, **SIGNED) as client:
        for name, headers in refused.items():
            assert await post(client, PATH, TRIGGERED, headers) == (
                401,
                {"error": "unauthorized"},
            ), name
        # During a secret rotation PagerDuty signs with both secrets.
        rotating = {"X-PagerDuty-Signature": f"{wrong},{right}"}
        status, answer = await post(client, PATH, TRIGGERED, rotating)
        assert (status, answer["outcome"]) == (202, "started")


async def test_without_a_secret_the_webhook_token_is_needed(redis_url: str) -> None:
    async with serving(redis_url) as client:
        assert (await post(client, PATH, TRIGGERED, signed(TRIGGERED)))[0] == 401
        assert (await post(client, PATH, TRIGGERED))[0] == 202


async def test_bad_bodies_get_their_status_and_a_message_naming_the_field(redis_url: str) -> None:
    triggered = "pagerduty/incident-triggered.json"
    bad = [
        (b'{"event": ', 400, "not JSON"),
        (b'{"messages": []}', 422, "event"),
        (edited(triggered, lambda d: d["event"].pop("event_type")), 422, "event.event_type"),
        (
            edited(triggered, lambda d: d["event"].update(occurred_at="yesterday")),
            422,
            "occurred_at",
        ),
        (edited(triggered, lambda d: d["event"]["data"].pop("title")), 422, "event.data.title"),
        (edited(triggered, lambda d: d["event"]["data"].pop("service")), 422, "event.data.service"),
        (
            edited(triggered, lambda d: d["event"]["data"].update(type="incident_note")),
            422,
            "event.data.type",
        ),
    ]
    async with serving(redis_url) as client:
        for data, status, word in bad:
            got, answer = await post(client, PATH, data)
            assert got == status, (word, answer)
            assert word in answer["error"], answer
        assert (await post(client, PATH, TRIGGERED))[0] == 202


async def test_an_oversized_body_gets_413(redis_url: str, store: RunStore) -> None:
    async with serving(redis_url) as client:
        status, answer = await post(client, PATH, io.BytesIO(b" " * TWO_MIB))

    assert status == 413
    assert "bytes" in answer["error"]
    assert await store.list_runs() == []


async def test_redis_down_answers_503_so_pagerduty_retries(tmp_path: Path) -> None:
    answers = await answers_around_a_redis_outage(tmp_path, PATH, TRIGGERED, AUTH)

    assert [status for status, _ in answers] == [202, 503, 202]
    assert answers[1][1] == {"error": "alert store unavailable; retry"}
