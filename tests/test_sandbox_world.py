"""Sandbox features scenarios need: time-shaped series, ConfigMaps, stuck rollouts and
silences created through the Alertmanager API."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from tools.sandbox import RunningSandbox, Scenario, World, run_sandbox

RAMP = {
    "match": "container_memory_working_set_bytes",
    "labels": {"namespace": "shop", "pod": "cart-0"},
    "series": [{"at": -1800, "value": 0.2}, {"at": -300, "value": 0.9}],
}


def _scenario(**extra: Any) -> Scenario:
    base: dict[str, Any] = {
        "name": "world",
        "deployments": [
            {
                "namespace": "shop",
                "name": "cart",
                "labels": {"app": "cart"},
                "replicas": 2,
                "container": "cart",
                "revisions": [
                    {"revision": 1, "image": "cart:1", "at": -86400, "config_map": "cart-v1"},
                    {
                        "revision": 2,
                        "image": "cart:1",
                        "at": -900,
                        "config_map": "cart-v2",
                        "limits": {"memory": "256Mi"},
                    },
                ],
                "stuck": extra.pop("stuck", True),
            }
        ],
        "signals": [RAMP],
        "config_maps": [
            {"namespace": "shop", "name": "cart-v1", "data": {"POOL": "20"}, "at": -86400},
            {"namespace": "shop", "name": "cart-v2", "data": {"POOL": "0"}, "at": -900},
        ],
        "alerts": [{"labels": {"alertname": "CartDown", "namespace": "shop"}}],
    }
    return Scenario.model_validate(base | extra)


@pytest.fixture
async def world_sandbox() -> AsyncIterator[RunningSandbox]:
    async with run_sandbox(_scenario()) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as response:
        return response.status, await response.json(content_type=None)


def test_a_series_is_flat_outside_its_points_and_linear_between() -> None:
    now = 1_000_000.0
    world = World.start(_scenario(), clock=lambda: now)
    signal = world.scenario.signals[0]
    assert world.signal_value(signal, now - 3600) == 0.2
    assert world.signal_value(signal, now - 1050) == pytest.approx(0.55)
    assert world.signal_value(signal, now) == 0.9


@pytest.mark.parametrize(
    ("signal", "error"),
    [
        (RAMP | {"value": 1.0}, "neither `value` nor `follows`"),
        (RAMP | {"series": [{"at": -10, "value": 1}, {"at": -20, "value": 2}]}, "increasing"),
    ],
)
def test_a_bad_series_is_refused(signal: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError, match=error):
        _scenario(signals=[signal])


def test_a_revision_naming_an_unknown_config_map_is_refused() -> None:
    with pytest.raises(ValidationError, match="unknown ConfigMap cart-v2"):
        _scenario(config_maps=[{"namespace": "shop", "name": "cart-v1"}])


async def test_a_range_query_shows_the_ramp(
    world_sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    end = time.time()
    params = {
        "query": 'max(container_memory_working_set_bytes{namespace="shop"})',
        "start": str(end - 1800),
        "end": str(end),
        "step": "300",
    }
    status, body = await _json(
        http, "GET", f"{world_sandbox.url}/api/v1/query_range", params=params
    )
    assert status == 200
    values = [float(v) for _, v in body["data"]["result"][0]["values"]]
    assert values[0] == pytest.approx(0.2, abs=0.01) and values[-1] == 0.9
    assert values == sorted(values) and len(set(values)) >= 5


async def test_config_maps_and_the_revision_that_reads_one(
    world_sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    base = f"{world_sandbox.url}/api/v1/namespaces/shop/configmaps"
    status, listed = await _json(http, "GET", base)
    assert status == 200 and [c["metadata"]["name"] for c in listed["items"]] == [
        "cart-v1",
        "cart-v2",
    ]
    status, one = await _json(http, "GET", f"{base}/cart-v2")
    assert status == 200 and one["data"] == {"POOL": "0"}
    status, missing = await _json(http, "GET", f"{base}/nope")
    assert status == 404 and missing["reason"] == "NotFound"
    status, dep = await _json(
        http, "GET", f"{world_sandbox.url}/apis/apps/v1/namespaces/shop/deployments/cart"
    )
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "cart-v2"}}]
    assert container["resources"] == {"limits": {"memory": "256Mi"}}


async def test_a_stuck_rollout_exceeds_its_deadline_until_rolled_back(
    world_sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{world_sandbox.url}/apis/apps/v1/namespaces/shop/deployments/cart"
    _, dep = await _json(http, "GET", url)
    progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["status"] == "False"
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    assert dep["status"]["updatedReplicas"] == 1 and dep["status"]["unavailableReplicas"] == 1
    old = world_sandbox.world.deployments["shop/cart"].replica_sets[0].template
    patch = {"spec": {"template": old}}
    headers = {"Content-Type": "application/merge-patch+json"}
    status, _ = await _json(http, "PATCH", url, json=patch, headers=headers)
    assert status == 200
    _, dep = await _json(http, "GET", url)
    progressing = next(c for c in dep["status"]["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "NewReplicaSetAvailable"
    assert dep["status"]["updatedReplicas"] == 2


async def test_a_posted_silence_is_listed_and_mutes_matching_alerts(
    world_sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    am = f"{world_sandbox.url}/api/v2"
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": "alertname", "value": "CartDown", "isRegex": False, "isEqual": True}],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(hours=1)).isoformat(),
        "createdBy": "incident-bot",
        "comment": "flapping [incident-bot, proposal p1]",
    }
    status, created = await _json(http, "POST", f"{am}/silences", json=body)
    assert status == 200 and created["silenceID"]
    _, listed = await _json(http, "GET", f"{am}/silences")
    assert [s["id"] for s in listed] == [created["silenceID"]]
    assert listed[0]["status"]["state"] == "active" and "proposal p1" in listed[0]["comment"]
    _, alerts = await _json(http, "GET", f"{am}/alerts")
    assert alerts[0]["status"]["silencedBy"] == [created["silenceID"]]


@pytest.mark.parametrize(
    "body",
    [
        {"matchers": "alertname=x"},
        {"matchers": [{"name": "a", "value": "b"}], "startsAt": "soon", "endsAt": "later"},
        {
            "matchers": [{"name": "a", "value": "b"}],
            "startsAt": "2026-01-01T01:00:00+00:00",
            "endsAt": "2026-01-01T00:00:00+00:00",
        },
    ],
)
async def test_a_malformed_silence_is_400(
    world_sandbox: RunningSandbox, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    status, _ = await _json(http, "POST", f"{world_sandbox.url}/api/v2/silences", json=body)
    assert status == 400
    assert world_sandbox.world.created_silences == []


async def test_a_profile_keyed_by_config_map_follows_the_revision_not_the_image(
    http: aiohttp.ClientSession,
) -> None:
    crash = {"ready": False, "restarts": 5, "waiting_reason": "CrashLoopBackOff"}
    async with run_sandbox(_scenario(stuck=False, pods={"cart-v2": crash})) as running:
        base = f"{running.url}/api/v1/namespaces/shop"
        _, pods = await _json(http, "GET", f"{base}/pods")
        states = {p["status"]["containerStatuses"][0]["restartCount"] for p in pods["items"]}
        assert states == {5}
        _, events = await _json(http, "GET", f"{base}/events")
        scaled = [e["message"] for e in events["items"] if e["reason"] == "ScalingReplicaSet"]
        new_rs = running.world.deployments["shop/cart"].replica_sets[1].name
        assert any(new_rs in m and "up" in m for m in scaled)
        dep = running.world.deployments["shop/cart"]
        assert running.world.roll_out(dep, dep.replica_sets[0].template)
        _, pods = await _json(http, "GET", f"{base}/pods")
        running_now = [p for p in pods["items"] if "deletionTimestamp" not in p["metadata"]]
        assert {p["status"]["containerStatuses"][0]["restartCount"] for p in running_now} == {0}
