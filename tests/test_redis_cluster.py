"""The bot on a real three-master Redis Cluster: start-up checks of the mode, the bounded
pool, intake with dedup, a run with approval executing once under concurrent drives,
and the sweeper's expiry and repairs. Redis refuses a multi-key script or transaction
whose keys span slots (CROSSSLOT), so each flow here also checks the key layout."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.deps import Deps, open_deps
from bot.errors import ConfigError, LeaseHeld
from bot.intake.auth import SIGNATURE_HEADER, sign
from bot.models import Decision, Run, RunStatus, Usage
from bot.redis_connection import open_redis
from bot.replay import replay_run
from bot.runs import record_decision, start_run
from bot.server import create_app
from bot.settings import Settings
from bot.spend import DailySpend
from bot.sweeper import Sweeper
from tests.factories import alert
from tests.processes import bot_env, eventually, run_bot
from tools.sandbox import RunningSandbox

if TYPE_CHECKING:  # imported by pytest as a plugin; importing it here first would warn
    from tests.redis_cluster import Cluster

pytest_plugins = ("tests.redis_cluster", "tests.sandbox_fixtures")

TOKEN = "cluster-webhook-token"
FIRING = (Path(__file__).parent / "fixtures/alertmanager/firing-single.json").read_bytes()


def _settings(url: str, **extra: Any) -> Settings:
    return Settings.model_validate(
        {"REDIS_URL": url, "INCIDENT_BOT_REDIS_CLUSTER": True, "INCIDENT_BOT_WORKERS": 0} | extra
    )


def _sandboxed(url: str, sandbox: RunningSandbox, **extra: Any) -> Settings:
    quick = {
        "PROMETHEUS_URL": sandbox.url,
        "KUBERNETES_URL": sandbox.url,
        "INCIDENT_BOT_VERIFY_INTERVAL": 0.05,
        "INCIDENT_BOT_VERIFY_TIMEOUT": 0.3,
        "INCIDENT_BOT_RECLAIM_AFTER": 0.2,
        # Renewed every third: long enough that a stall on a loaded machine keeps it.
        "INCIDENT_BOT_LEASE_SECONDS": 1.0,
    }
    return _settings(url, **(quick | extra))


@pytest.fixture
async def deps(cluster_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    # Leases that outlast a drive on a loaded machine: no takeover mid-action.
    settings = _sandboxed(
        cluster_url, sandbox, INCIDENT_BOT_LEASE_SECONDS=10, INCIDENT_BOT_RECLAIM_AFTER=10
    )
    async with open_deps(settings) as built:
        assert isinstance(built.store.redis, RedisCluster)
        await built.queue.ensure_group()
        yield built


async def test_a_mode_that_does_not_match_the_server_is_refused_at_start(
    cluster_url: str, redis_url: str
) -> None:
    with pytest.raises(ConfigError, match="is not a Redis Cluster node: unset INCIDENT_BOT_REDIS"):
        async with open_redis(_settings(redis_url)):
            pass
    single = Settings.model_validate({"REDIS_URL": cluster_url})
    with pytest.raises(ConfigError, match="is a Redis Cluster node: set INCIDENT_BOT_REDIS_"):
        async with open_redis(single):
            pass
    # The message never shows the password (the nopass default user takes any).
    with pytest.raises(ConfigError, match="is not a Redis Cluster node") as refused:
        async with open_redis(_settings(redis_url.replace("//", "//default:s3cret@"))):
            pass
    assert "default:***@127.0.0.1" in str(refused.value) and "s3cret" not in str(refused.value)
    with pytest.raises(ConfigError, match="needs REDIS_URL"):
        async with open_redis(Settings.model_validate({"INCIDENT_BOT_REDIS_CLUSTER": True})):
            pass
    with pytest.raises(ConfigError, match="only database 0"):
        async with open_redis(_settings(cluster_url.replace("/0", "/3"))):
            pass


async def test_serve_exits_1_naming_the_setting_when_the_url_is_a_cluster_node(
    cluster_url: str, tmp_path: Path
) -> None:
    env = bot_env(REDIS_URL=cluster_url, INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN)
    code, out, err = await run_bot("serve", env=env, cwd=tmp_path, within=30)
    assert code == 1, (out, err)
    assert "set INCIDENT_BOT_REDIS_CLUSTER=true" in err and "Traceback" not in err
    assert "listening" not in out


async def test_seed_nodes_after_the_first_are_used_when_the_first_is_down(
    cluster: Cluster, cluster_url: str
) -> None:
    seeds = ",".join(["127.0.0.1:1", *(f"127.0.0.1:{p}" for p in cluster.ports[1:])])
    async with open_redis(_settings(f"redis://{seeds}/0")) as connection:
        await connection.client.set("seeded", "yes")
        assert await connection.client.get("seeded") == "yes"


async def test_a_burst_waits_for_the_bounded_pool_and_a_long_wait_fails_cleanly(
    cluster: Cluster, cluster_url: str
) -> None:
    pooled = {"INCIDENT_BOT_REDIS_MAX_CONNECTIONS": 2, "INCIDENT_BOT_REDIS_POOL_TIMEOUT": 30}
    async with open_redis(_settings(cluster_url, **pooled)) as connection:
        # 200 commands over 2 connections: redis-py's cluster client alone would raise
        # MaxConnectionsError; these wait their turn.
        client = connection.client
        await asyncio.gather(*(client.incr(f"burst:{n % 7}") for n in range(200)))
        assert sum([int(await client.get(f"burst:{n}") or 0) for n in range(7)]) == 200
    impatient = pooled | {"INCIDENT_BOT_REDIS_POOL_TIMEOUT": 0.3}
    async with open_redis(_settings(cluster_url, **impatient)) as connection:
        # Both turns held by blocking reads: a third command waits, then fails cleanly.
        client = connection.client
        blocked = [asyncio.ensure_future(client.blpop([f"nothing:{n}"], timeout=3)) for n in (1, 2)]
        await eventually(lambda: _blocked_clients(cluster, 2), within=5)
        with pytest.raises(RedisConnectionError, match="no free Redis Cluster connection"):
            await client.get("burst:0")
        assert await asyncio.gather(*blocked) == [None, None]


async def test_the_daily_spend_counts_in_one_script_on_the_cluster(cluster_url: str) -> None:
    async with open_redis(_settings(cluster_url)) as connection:
        spend = DailySpend(connection.client, prefix="incident-bot:")
        await asyncio.gather(*(spend.add(Usage(input_tokens=3), 0.5) for _ in range(4)))
        assert await spend.today() == (12, 2.0)


async def _blocked_clients(cluster: Cluster, count: int) -> bool | None:
    """True once `count` clients wait in blocking commands, on all nodes together."""
    blocked = 0
    for port in cluster.ports:
        async with redis.Redis(host="127.0.0.1", port=port) as node:
            blocked += int((await node.info("clients"))["blocked_clients"])
    return True if blocked == count else None


async def test_a_signed_alertmanager_webhook_starts_a_run_and_a_repeat_joins_it(
    cluster_url: str,
) -> None:
    settings = _settings(cluster_url, INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN)
    async with TestClient(TestServer(create_app(settings))) as client:
        answers = []
        for _ in range(2):
            headers = {SIGNATURE_HEADER: sign(TOKEN, FIRING)}
            async with client.post("/webhooks/alertmanager", data=FIRING, headers=headers) as r:
                assert r.status == 202, await r.text()
                answers.append(await r.json())
        async with client.get("/readyz") as ready:
            assert ready.status == 200, await ready.text()
    first, repeat = answers
    assert first["outcome"] == "started" and repeat == {**first, "outcome": "repeated"}
    async with open_deps(settings) as deps:
        run = await deps.store.load(first["run_id"])
        assert run.status is RunStatus.QUEUED
        assert await deps.queue.queued_runs() == {run.id}
        assert [r.id for r in await deps.store.list_runs(active_only=True)] == [run.id]


async def test_a_worker_drives_a_webhook_run_to_a_proposal_that_the_sweeper_expires(
    cluster_url: str, sandbox: RunningSandbox
) -> None:
    settings = _sandboxed(
        cluster_url,
        sandbox,
        INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN,
        INCIDENT_BOT_WORKERS=2,
        # Leases that outlast a drive on a loaded machine: no reclaim races here.
        INCIDENT_BOT_LEASE_SECONDS=10,
        INCIDENT_BOT_RECLAIM_AFTER=10,
        INCIDENT_BOT_SWEEP_INTERVAL=0.2,
        INCIDENT_BOT_APPROVAL_TIMEOUT=0.5,
    )
    async with TestClient(TestServer(create_app(settings))) as client:
        headers = {SIGNATURE_HEADER: sign(TOKEN, FIRING)}
        async with client.post("/webhooks/alertmanager", data=FIRING, headers=headers) as r:
            assert r.status == 202, await r.text()
            run_id = (await r.json())["run_id"]
        async with open_deps(settings) as deps:

            async def ended() -> Run | None:
                run = await deps.store.load(run_id)
                return run if run.status.terminal else None

            run = await eventually(ended, within=20)
            events = [e.event for e in await deps.store.read_audit(run_id)]
            assert await deps.queue.queued_runs() == set()
    assert run.status is RunStatus.EXPIRED, run.outcome
    assert events[-2:] == ["proposal", "expired"]


async def test_an_approved_run_executes_once_under_concurrent_drives_and_resolves(
    deps: Deps, sandbox_state: Any
) -> None:
    run = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
    assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
    decision = Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    recorded = await asyncio.gather(*(record_decision(deps, decision) for _ in range(5)))
    assert sorted(recorded) == [False, False, False, False, True]

    async def resume() -> RunStatus:
        while True:
            try:
                driven = await deps.driver().drive(run.id)
            except LeaseHeld:
                await asyncio.sleep(random.uniform(0.005, 0.03))
                continue
            if driven.status.terminal:
                return driven.status

    statuses = await asyncio.wait_for(asyncio.gather(*(resume() for _ in range(10))), 60)
    assert statuses == [RunStatus.RESOLVED] * 10
    events = [e.event for e in await deps.store.read_audit(run.id)]
    assert events.count("action_started") == 1 and events.count("action_succeeded") == 1
    record = await deps.store.action_record(run.id, run.proposal.id)
    assert record is not None and record.state == "succeeded"
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 1
    assert run.id not in {r.id for r in await deps.store.list_runs(active_only=True)}
    [remembered] = await deps.memory.similar(await start_run(deps, alert(severity="critical")))
    assert remembered.run_id == run.id and remembered.status is RunStatus.RESOLVED
    # A replay writes a scratch run (its own hash tag) and deletes it from every node.
    replayed = await replay_run(deps.store.redis, deps.settings, run.id)
    assert len(replayed.transcript) == len(await deps.store.transcript(run.id))
    assert [k async for k in deps.store.redis.scan_iter(match="incident-bot:replay:*")] == []


async def test_the_sweeper_expires_a_proposal_and_repairs_a_dead_drivers_run(
    cluster_url: str, sandbox: RunningSandbox
) -> None:
    # The proposal must outlast its own drive's settle pass on a loaded machine.
    settings = _sandboxed(cluster_url, sandbox, INCIDENT_BOT_APPROVAL_TIMEOUT=1.0)
    async with open_deps(settings) as deps:
        await deps.queue.ensure_group()
        sweeper = Sweeper(deps, interval_seconds=0.2)
        waiting = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
        assert waiting.status is RunStatus.AWAITING_APPROVAL
        dying = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
        executing = await _as_dead_driver(deps, dying, RunStatus.EXECUTING)
        done: list[str] = []

        async def ended() -> tuple[Run, Run] | None:
            report = await sweeper.sweep()
            done.extend(a for a, n in report.actions.items() for _ in range(n))
            runs = (await deps.store.load(waiting.id), await deps.store.load(executing.id))
            return runs if all(r.status.terminal for r in runs) else None

        expired, stuck = await eventually(ended, within=15)
        assert expired.status is RunStatus.EXPIRED
        assert stuck.status is RunStatus.NEEDS_ATTENTION
        assert "the action was never started" in stuck.outcome
        assert {"expired", "scheduled", "deadline"} <= set(done)
        assert await deps.deadlines.claim_due(limit=10, retry_seconds=1) == []


async def _as_dead_driver(deps: Deps, run: Run, status: RunStatus) -> Run:
    """Write `status` as a driver that then died (its lease gone, no deadline, no entry)."""
    await deps.store.acquire_lease(run.id, "dead-process", 30)
    written = await deps.store.checkpoint(
        run.model_copy(update={"status": status}), owner="dead-process"
    )
    await deps.store.release_lease(run.id, "dead-process")
    await deps.deadlines.cancel(run.id)
    return written


async def test_a_run_retried_after_dead_lettering_reopens_on_the_cluster(deps: Deps) -> None:
    run = await start_run(deps, alert(severity="critical"))
    ended = await _as_dead_driver(deps, run, RunStatus.NEEDS_ATTENTION)
    assert await deps.store.list_runs(active_only=True) == []
    await deps.store.reopen(ended)
    assert [r.id for r in await deps.store.list_runs(active_only=True)] == [run.id]
