"""The sandbox: scenario loading, the simulated world, and its Prometheus and Kubernetes APIs."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tools.sandbox import RunningSandbox, World, load_scenario
from tools.sandbox.prometheus_api import parse_duration

pytest_plugins = ("tests.sandbox_fixtures",)

ERROR_RATIO = (
    'sum(rate(http_requests_total{service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{service="checkout"}[5m]))'
)
OLD = "registry.example/checkout:v2.3.1"
NEW = "registry.example/checkout:v2.4.0"


def test_load_scenario_by_name_and_by_path(tmp_path: Path) -> None:
    bundled = load_scenario("bad-deploy")
    assert bundled.deployments[0].key == "shop/checkout"
    assert [r.image for r in bundled.deployments[0].revisions] == [OLD, NEW]
    path = tmp_path / "slow.yaml"
    path.write_text(yaml.safe_dump(bundled.model_dump() | {"recovery_seconds": 60}))
    assert load_scenario(path).recovery_seconds == 60
    with pytest.raises(FileNotFoundError, match="no-such-scenario"):
        load_scenario("no-such-scenario")


def test_signal_follows_the_image_and_ramps_after_a_change() -> None:
    now = [1_000_000.0]
    world = World.start(load_scenario("bad-deploy"), clock=lambda: now[0])
    signal = world.scenario.signals[0]
    assert world.signal_value(signal, now[0] - 300) == 0.002
    assert world.signal_value(signal, now[0]) == 0.12
    checkout = world.deployments["shop/checkout"]
    old_template = checkout.replica_sets[0].template
    assert world.roll_out(checkout, old_template) is True
    assert world.roll_out(checkout, old_template) is False
    assert checkout.current.revision == 3 and checkout.current.history == [1]
    assert world.signal_value(signal, now[0]) == 0.12
    assert world.signal_value(signal, now[0] + 1.5) == pytest.approx(0.061)
    assert world.signal_value(signal, now[0] + 3) == 0.002


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as response:
        return response.status, await response.json()


async def test_instant_query_get_and_post(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/api/v1/query"
    status, body = await _json(http, "GET", url, params={"query": ERROR_RATIO})
    assert status == 200
    assert body["data"]["resultType"] == "vector"
    [series] = body["data"]["result"]
    assert series["metric"] == {"namespace": "shop", "service": "checkout"}
    assert series["value"][1] == "0.12"
    before = str(time.time() - 600)
    status, body = await _json(http, "POST", url, data={"query": ERROR_RATIO, "time": before})
    assert body["data"]["result"][0]["value"][1] == "0.002"
    status, body = await _json(http, "GET", url, params={"query": 'up{job="nothing"}'})
    assert (status, body["data"]) == (200, {"resultType": "vector", "result": []})


async def test_range_query_shows_the_step_at_the_deploy(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    end = time.time()
    params = {"query": ERROR_RATIO, "start": str(end - 1800), "end": str(end), "step": "1m"}
    status, body = await _json(http, "GET", f"{sandbox.url}/api/v1/query_range", params=params)
    assert status == 200 and body["data"]["resultType"] == "matrix"
    values = body["data"]["result"][0]["values"]
    assert len(values) == 31
    assert [v for _, v in values[:26]] == ["0.002"] * 26
    assert [v for _, v in values[-4:]] == ["0.12"] * 4


@pytest.mark.parametrize(
    ("path", "params", "error"),
    [
        ("query", {}, "no expression found"),
        (
            "query",
            {"query": "sum(rate(x[5m])))"},
            "1:17: parse error: unexpected right parenthesis ')'",
        ),
        ("query", {"query": 'x{a="b}'}, "unterminated quoted string"),
        ("query", {"query": "x", "time": "yesterday"}, 'invalid parameter "time"'),
        ("query_range", {"query": "x", "start": "1", "end": "2"}, 'invalid parameter "step"'),
        ("query_range", {"query": "x", "start": "9", "end": "2", "step": "1"}, "before start"),
        ("query_range", {"query": "x", "start": "0", "end": "86400", "step": "1s"}, "11,000"),
    ],
)
async def test_bad_requests_answer_400_bad_data(
    sandbox: RunningSandbox,
    http: aiohttp.ClientSession,
    path: str,
    params: dict[str, str],
    error: str,
) -> None:
    status, body = await _json(http, "GET", f"{sandbox.url}/api/v1/{path}", params=params)
    assert status == 400
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert error in body["error"]


def test_durations() -> None:
    assert parse_duration("step", "15") == 15
    assert parse_duration("step", "1m30s") == 90
    assert parse_duration("step", "500ms") == 0.5
    assert parse_duration("step", "2h") == 7200


async def test_kubernetes_objects_and_not_found(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    base = f"{sandbox.url}/apis/apps/v1/namespaces/shop"
    status, deployment = await _json(http, "GET", f"{base}/deployments/checkout")
    assert status == 200
    assert deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    status, listed = await _json(
        http, "GET", f"{base}/replicasets", params={"labelSelector": "app=checkout"}
    )
    assert listed["kind"] == "ReplicaSetList"
    names = {rs["metadata"]["name"] for rs in listed["items"]}
    hashes = {rs["metadata"]["labels"]["pod-template-hash"] for rs in listed["items"]}
    assert names == {f"checkout-{h}" for h in hashes} and len(names) == 2
    status, listed = await _json(
        http, "GET", f"{base}/replicasets", params={"labelSelector": "app=cart"}
    )
    assert listed["items"] == []
    status, missing = await _json(http, "GET", f"{base}/deployments/cart")
    assert status == 404
    assert missing == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "cart" not found',
        "reason": "NotFound",
        "code": 404,
    }


async def test_merge_patch_rolls_out_and_is_counted(
    sandbox: RunningSandbox,
    http: aiohttp.ClientSession,
    sandbox_state: Callable[[], Awaitable[Any]],
) -> None:
    url = f"{sandbox.url}/apis/apps/v1/namespaces/shop/deployments/checkout"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "checkout", "image": OLD}]}}}}
    headers = {"Content-Type": "application/merge-patch+json"}
    status, patched = await _json(http, "PATCH", url, json=patch, headers=headers)
    assert status == 200
    assert patched["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
    assert patched["metadata"]["generation"] == 3
    status, _ = await _json(http, "PATCH", url, json=patch, headers={"Content-Type": "text/plain"})
    assert status == 415
    state = await sandbox_state()
    assert state["deployments"]["shop/checkout"] == {
        "image": OLD,
        "revision": 3,
        "replicas": 3,
        "patches": 1,
    }
    status, body = await _json(
        http, "GET", f"{sandbox.url}/api/v1/query", params={"query": ERROR_RATIO}
    )
    assert body["data"]["result"][0]["value"][1] == "0.002"


async def test_invalid_patch_is_422(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    url = f"{sandbox.url}/apis/apps/v1/namespaces/shop/deployments/checkout"
    patch = [{"op": "replace", "path": "/spec/template/spec/containers", "value": []}]
    headers = {"Content-Type": "application/json-patch+json"}
    status, body = await _json(http, "PATCH", url, json=patch, headers=headers)
    assert (status, body["reason"]) == (422, "Invalid")


async def test_module_runs_standalone_and_prints_its_url() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tools.sandbox",
        "--scenario",
        "bad-deploy",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        async with asyncio.timeout(10):
            line = (await process.stdout.readline()).decode().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            async with session.get(line.rsplit(" ", 1)[1] + "/healthz") as response:
                assert await response.json() == {"status": "ok"}
    finally:
        process.terminate()
        await process.wait()


async def test_json_patch_into_a_scalar_is_422(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.url}/apis/apps/v1/namespaces/shop/deployments/checkout"
    patch = [{"op": "add", "path": "/metadata/name/x", "value": "y"}]
    headers = {"Content-Type": "application/json-patch+json"}
    status, body = await _json(http, "PATCH", url, json=patch, headers=headers)
    assert (status, body["code"]) == (422, 422)
    assert "does not lead into an object" in body["message"]
