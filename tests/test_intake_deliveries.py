"""A repeated webhook body is parsed, validated and redacted once: its repeats answer and
count as before, a changed body is parsed anew, a bad or unauthenticated one is refused
every time and never remembered, and what is remembered holds no raw secret."""

from __future__ import annotations

import gc
import json
import random
import re
import string
import types

import pytest

from bot.intake.deliveries import Delivery, DeliveryCache
from bot.intake.http import INTAKE
from bot.models import Alert
from bot.store import RunStore
from tests.factories import alert
from tests.webhook_helpers import edited, fixture, post, serving

PATH = "/webhooks/alertmanager"
GROUP = "alertmanager/firing-group-of-3.json"


def _metric(text: str, name: str, **labels: str) -> float:
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}\{{{re.escape(selector)}\}} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


async def test_repeats_of_one_body_answer_and_count_as_the_first_parse_did(
    redis_url: str, store: RunStore
) -> None:
    body = fixture(GROUP)
    async with serving(redis_url) as client:
        status, first = await post(client, PATH, body)
        repeats = [await post(client, PATH, body) for _ in range(4)]
        async with client.get("/metrics") as response:
            text = await response.text()
        remembered = len(client.server.app[INTAKE].deliveries)

    assert (status, first["outcome"]) == (202, "started")
    assert repeats == [(202, {"run_id": first["run_id"], "outcome": "repeated"})] * 4
    assert remembered == 1
    assert _metric(text, "incident_bot_alerts_received_total", source="alertmanager") == 15
    assert _metric(text, "incident_bot_alerts_deduplicated_total", source="alertmanager") == 12
    assert len(await store.list_runs()) == 1


async def test_a_changed_body_of_the_same_group_is_parsed_anew(
    redis_url: str, store: RunStore
) -> None:
    def add_an_alert(document: dict[str, object]) -> None:
        alerts = document["alerts"]
        assert isinstance(alerts, list)
        alerts.append(dict(alerts[0], fingerprint="0000new0alert000"))

    async with serving(redis_url) as client:
        _, first = await post(client, PATH, fixture(GROUP))
        status, changed = await post(client, PATH, edited(GROUP, add_an_alert))
        remembered = len(client.server.app[INTAKE].deliveries)

    assert (status, changed) == (202, {"run_id": first["run_id"], "outcome": "updated"})
    assert remembered == 2
    logged = {a.fingerprint for a in await store.alert_log(first["run_id"])}
    assert "0000new0alert000" in logged


async def test_bad_and_unauthenticated_bodies_are_refused_every_time_and_never_remembered(
    redis_url: str, store: RunStore
) -> None:
    body = fixture(GROUP)
    unknown_version = edited(GROUP, lambda d: d.update(version="5"))
    async with serving(redis_url) as client:
        intake = client.server.app[INTAKE]
        refused = [await post(client, PATH, unknown_version) for _ in range(3)]
        not_json = [(await post(client, PATH, b'{"alerts": '))[0] for _ in range(3)]
        unauthenticated = (await post(client, PATH, body, headers={}))[0]
        assert len(intake.deliveries) == 0
        accepted = (await post(client, PATH, body))[0]
        # Remembered now, yet still authenticated first.
        wrong_token = await post(client, PATH, body, headers={"Authorization": "Bearer no"})

    assert [status for status, _ in refused] == [422] * 3
    assert all("version" in answer["error"] for _, answer in refused)
    assert not_json == [400] * 3
    assert (unauthenticated, accepted) == (401, 202)
    assert wrong_token == (401, {"error": "unauthorized"})


def _strings_kept_by(root: object) -> set[str]:
    """Every string `root` keeps alive through the objects it holds (classes, modules and
    functions are not followed: they are not what it holds)."""
    seen: set[int] = set()
    found: set[str] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type | types.ModuleType | types.FunctionType):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.add(obj)
        else:
            todo.extend(gc.get_referents(obj))
    return found


async def test_remembered_deliveries_hold_no_raw_secret_and_each_delivery_counts_it(
    redis_url: str, store: RunStore
) -> None:
    secret = "AKIA" + "".join(
        random.SystemRandom().choice(string.ascii_uppercase + string.digits) for _ in range(16)
    )
    description = f"assume role failed: AWS_ACCESS_KEY_ID={secret} region=eu-west-1"
    body = edited(GROUP, lambda d: d["alerts"][0]["annotations"].update(description=description))
    async with serving(redis_url) as client:
        answers = [await post(client, PATH, body) for _ in range(3)]
        async with client.get("/metrics") as response:
            text = await response.text()
        kept = _strings_kept_by(client.server.app[INTAKE].deliveries)

    assert [a["outcome"] for _, a in answers] == ["started", "repeated", "repeated"]
    assert any("AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]" in s for s in kept)
    assert not [s for s in kept if secret in s]
    counted = _metric(text, "incident_bot_redactions_total", kind="aws_access_key", where="alert")
    assert counted == 3
    (logged, *_) = await store.alert_log(answers[0][1]["run_id"])
    assert logged.annotations["description"] == description.replace(
        secret, "[REDACTED:aws_access_key]"
    )


def test_a_body_is_parsed_once_until_the_cache_forgets_it() -> None:
    parsed: list[bytes] = []

    def parse(body: bytes) -> list[Alert]:
        parsed.append(body)
        return [alert(pod=body.decode())]

    cache = DeliveryCache(max_bodies=2, max_bytes=1024)
    first = cache.delivery("generic", b"a", parse)
    assert cache.delivery("generic", b"a", parse) is first
    assert parsed == [b"a"]
    cache.delivery("alertmanager", b"a", parse)  # another source's parser: its own entry
    cache.delivery("generic", b"a", parse)  # used last: "alertmanager" goes first
    cache.delivery("generic", b"b", parse)
    cache.delivery("generic", b"a", parse)
    assert parsed == [b"a", b"a", b"b"]
    cache.delivery("alertmanager", b"a", parse)
    assert parsed == [b"a", b"a", b"b", b"a"]
    assert len(cache) == 2


def test_the_cache_is_bounded_by_the_bytes_of_the_bodies_it_remembers() -> None:
    def parse(body: bytes) -> Delivery:
        return Delivery(alerts=[alert(size=str(len(body)))], opens_run=False)

    cache = DeliveryCache(max_bodies=100, max_bytes=1000)
    for n in range(5):
        cache.delivery("pagerduty", bytes([n]) * 400, parse)
    assert len(cache) == 2  # 800 bytes; a third would pass 1000
    assert cache.delivery("pagerduty", b"\x04" * 400, parse).opens_run is False


def test_a_body_that_fails_to_parse_is_not_remembered() -> None:
    def parse(body: bytes) -> list[Alert]:
        raise ValueError(json.loads(body))

    cache = DeliveryCache()
    for _ in range(2):
        with pytest.raises(ValueError, match="bad"):
            cache.delivery("generic", b'"bad"', parse)
    assert len(cache) == 0
