"""`POST /webhooks/grafana`: Grafana Alerting's webhook contact point, signed or not."""

from __future__ import annotations

import hashlib
import hmac
import io
import time
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

PATH = "/webhooks/grafana"
SECRET = "grafana-hmac-secret-for-tests"
SIGNED = {"INCIDENT_BOT_GRAFANA_WEBHOOK_SECRET": SECRET}
FIRING = fixture("grafana/firing.json")
RESOLVED = fixture("grafana/resolved.json")


def signature(body: bytes, *, secret: str = SECRET, timestamp: str | None = None) -> str:
    """What Grafana sends: the hex HMAC-SHA256 of the body, or of `<timestamp>:<body>`."""
    signed = body if timestamp is None else timestamp.encode() + b":" + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signed(body: bytes, header: str = "X-Grafana-Alerting-Signature") -> dict[str, str]:
    return {header: signature(body)}


async def test_a_firing_notification_starts_one_run_with_its_alerts(
    redis_url: str, store: RunStore
) -> None:
    async with serving(redis_url) as client:
        status, answer = await post(client, PATH, FIRING)

    assert (status, answer["outcome"]) == (202, "started")
    runs = await store.list_runs()
    assert [r.id for r in runs] == [answer["run_id"]]
    assert runs[0].status is RunStatus.QUEUED
    logged = await store.alert_log(answer["run_id"])
    assert [a.fingerprint for a in logged] == ["c6eadffa33fcdf37", "bc97ff14869b13e3"]
    first = logged[0]
    assert first.source == "grafana"
    assert first.group_key == "grafana:1:{}:{}"
    assert first.title == "This alert was triggered for zone us-1"
    assert first.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert first.ends_at is None
    assert first.generator_url == "https://play.grafana.org/alerting/1afz29v7z/edit"
    assert "https://myrunbook.com/runbook/1234" in first.links
    assert any(
        link.startswith("https://play.grafana.org/alerting/silence/") for link in first.links
    )
    assert "" not in first.links


async def test_resolved_reaches_the_run_of_its_group(redis_url: str, store: RunStore) -> None:
    async with serving(redis_url) as client:
        _, started = await post(client, PATH, FIRING)
        status, answer = await post(client, PATH, RESOLVED)

    assert (status, answer) == (202, {"run_id": started["run_id"], "outcome": "resolved"})
    logged = await store.alert_log(started["run_id"])
    assert [a.status for a in logged[-2:]] == ["resolved", "resolved"]
    assert logged[-1].ends_at is not None


async def test_the_value_string_is_kept_for_the_investigation(
    redis_url: str, store: RunStore
) -> None:
    body = edited(
        "grafana/firing.json",
        lambda d: d["alerts"][0].update(valueString="[ var='B' labels={} value=44.2 ]"),
    )
    async with serving(redis_url) as client:
        _, answer = await post(client, PATH, body)

    logged = await store.alert_log(answer["run_id"])
    assert logged[0].annotations["value_string"] == "[ var='B' labels={} value=44.2 ]"


async def test_a_storm_of_repeats_folds_into_one_run(redis_url: str, store: RunStore) -> None:
    async with serving(redis_url) as client:
        answers = await storm(client, PATH, FIRING, AUTH)

    assert {status for status, _ in answers} == {202}
    assert len({answer["run_id"] for _, answer in answers}) == 1
    assert [answer["outcome"] for _, answer in answers].count("started") == 1
    assert len(await store.list_runs()) == 1


async def test_with_a_secret_only_grafanas_signature_is_accepted(redis_url: str) -> None:
    refused = {
        "bearer token only": AUTH,
        "no signature": {},
        "signature with another secret": {
            "X-Grafana-Alerting-Signature": signature(FIRING, secret="other")
        },
        "signature of another body": {"X-Grafana-Alerting-Signature": signature(b"{}")},
        "empty signature": {"X-Grafana-Alerting-Signature": ""},
    }
    async with serving(redis_url, **SIGNED) as client:
        for name, headers in refused.items():
            assert await post(client, PATH, FIRING, headers) == (
                401,
                {"error": "unauthorized"},
            ), name
        status, answer = await post(client, PATH, FIRING, signed(FIRING))
        assert (status, answer["outcome"]) == (202, "started")
        # Grafana's own fallback name, when the contact point's Header is left empty.
        status, answer = await post(
            client, PATH, RESOLVED, signed(RESOLVED, "X-Grafana-Alert-Signature")
        )
        assert (status, answer["outcome"]) == (202, "resolved")
        # The other endpoints still take the token.
        status, _ = await post(
            client, "/webhooks/alertmanager", fixture("alertmanager/firing-single.json")
        )
        assert status == 202


async def test_a_configured_signature_header_is_the_only_one_read(redis_url: str) -> None:
    env = SIGNED | {"INCIDENT_BOT_GRAFANA_SIGNATURE_HEADER": "X-Our-Signature"}
    async with serving(redis_url, **env) as client:
        assert (await post(client, PATH, FIRING, signed(FIRING)))[0] == 401
        assert (await post(client, PATH, FIRING, signed(FIRING, "X-Our-Signature")))[0] == 202


async def test_with_a_timestamp_header_the_timestamp_is_signed_and_recent(redis_url: str) -> None:
    env = SIGNED | {"INCIDENT_BOT_GRAFANA_TIMESTAMP_HEADER": "X-Grafana-Alerting-Timestamp"}
    now = str(int(time.time()))
    stale = str(int(time.time()) - 600)

    def headers(stamp: str, signed_stamp: str | None) -> dict[str, str]:
        return {
            "X-Grafana-Alerting-Timestamp": stamp,
            "X-Grafana-Alerting-Signature": signature(FIRING, timestamp=signed_stamp),
        }

    refused = {
        "no timestamp": {"X-Grafana-Alerting-Signature": signature(FIRING, timestamp=now)},
        "timestamp not signed": headers(now, None),
        "another timestamp signed": headers(now, stale),
        "a replay 10 minutes later": headers(stale, stale),
        "not a number": headers("soon", "soon"),
    }
    async with serving(redis_url, **env) as client:
        for name, sent in refused.items():
            assert (await post(client, PATH, FIRING, sent))[0] == 401, name
        assert (await post(client, PATH, FIRING, headers(now, now)))[0] == 202


async def test_bad_bodies_get_their_status_and_a_message_naming_the_field(redis_url: str) -> None:
    bad = [
        (b'{"receiver": ', 400, "not JSON"),
        (b"[1, 2]", 422, "object"),
        (edited("grafana/firing.json", lambda d: d.pop("groupKey")), 422, "groupKey"),
        (edited("grafana/firing.json", lambda d: d.update(version="2")), 422, "version"),
        (edited("grafana/firing.json", lambda d: d.update(alerts=[])), 422, "alerts"),
        (
            edited("grafana/firing.json", lambda d: d["alerts"][1].update(status="pending")),
            422,
            "alerts.1.status",
        ),
        (edited("grafana/firing.json", lambda d: d.pop("orgId")), 422, "orgId"),
        # An Alertmanager body sent here.
        (fixture("alertmanager/firing-single.json"), 422, "version"),
    ]
    async with serving(redis_url) as client:
        for data, status, word in bad:
            got, answer = await post(client, PATH, data)
            assert got == status, (word, answer)
            assert word in answer["error"], answer
        assert (await post(client, PATH, FIRING))[0] == 202


async def test_an_oversized_body_gets_413(redis_url: str, store: RunStore) -> None:
    async with serving(redis_url) as client:
        status, answer = await post(client, PATH, io.BytesIO(b" " * TWO_MIB))

    assert status == 413
    assert "bytes" in answer["error"]
    assert await store.list_runs() == []


async def test_redis_down_answers_503_and_the_retry_is_stored(tmp_path: Path) -> None:
    answers = await answers_around_a_redis_outage(tmp_path, PATH, FIRING, AUTH)

    assert [status for status, _ in answers] == [202, 503, 202]
    assert answers[1][1] == {"error": "alert store unavailable; retry"}
