"""The sweeper's parts against a real Redis: deadlines claimed once across clients, the
deadline of an executing run whose driver died, the group an expired run releases, and
`/readyz` reporting the last pass."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient, TestServer

from bot.deadlines import Deadlines
from bot.dedup import AlertGroups
from bot.deps import Deps, open_deps
from bot.models import Run, RunStatus
from bot.runs import start_run
from bot.server import SWEEPER, create_app
from bot.settings import Settings
from bot.sweeper import Sweeper
from tests.factories import alert
from tests.processes import eventually
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)


def _settings(redis_url: str, sandbox: RunningSandbox, **extra: Any) -> Settings:
    return Settings.model_validate(
        {
            "REDIS_URL": redis_url,
            "PROMETHEUS_URL": sandbox.url,
            "KUBERNETES_URL": sandbox.url,
            "INCIDENT_BOT_VERIFY_TIMEOUT": 0.3,
            "INCIDENT_BOT_RECLAIM_AFTER": 0.2,
            # Long enough that a drive on a loaded machine keeps its lease (renewed every
            # third of it): at 0.2 s, one 0.15 s stall in CI lost it mid-drive.
            "INCIDENT_BOT_LEASE_SECONDS": 1.0,
        }
        | extra
    )


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    async with open_deps(_settings(redis_url, sandbox)) as built:
        await built.queue.ensure_group()
        yield built


async def _as_dead_driver(deps: Deps, run: Run, status: RunStatus) -> Run:
    """Write `status` as a driver that then died (its lease gone, no queue entry)."""
    await deps.store.acquire_lease(run.id, "dead-process", 30)
    written = await deps.store.checkpoint(
        run.model_copy(update={"status": status}), owner="dead-process"
    )
    await deps.store.release_lease(run.id, "dead-process")
    return written


async def test_due_deadlines_are_claimed_once_across_clients(redis_url: str) -> None:
    clients = [redis.from_url(redis_url, decode_responses=True) for _ in range(4)]
    sets = [Deadlines(c, prefix="t:", approval_seconds=1, busy_seconds=1) for c in clients]
    past = time.time() - 1
    for n in range(200):
        await sets[0].schedule(f"run-{n}", "approval", past)
    await sets[0].schedule("run-later", "approval", time.time() + 60)

    claims = await asyncio.gather(
        *(s.claim_due(limit=20, retry_seconds=60) for s in sets for _ in range(5))
    )
    claimed = [d.run_id for batch in claims for d in batch]
    assert sorted(claimed) == sorted(f"run-{n}" for n in range(200))  # each exactly once
    assert await sets[1].claim_due(limit=500, retry_seconds=60) == []  # claimed: not due

    # Finished entries go; one scheduled anew after its claim stays.
    first, second = claims[0][0], claims[0][1]
    await sets[2].schedule(second.run_id, "approval", past)
    await sets[2].finish(first)
    await sets[2].finish(second)
    [again] = await sets[3].claim_due(limit=500, retry_seconds=60)
    assert again.run_id == second.run_id
    for c in clients:
        await c.aclose()


async def test_an_executing_run_whose_driver_died_ends_at_its_deadline(deps: Deps) -> None:
    busy = deps.deadlines.busy_seconds
    assert busy == pytest.approx(0.3 + 2 * (1.0 + 0.2))
    awaiting = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
    assert awaiting.proposal is not None
    executing = await _as_dead_driver(deps, awaiting, RunStatus.EXECUTING)
    sweeper = Sweeper(deps, interval_seconds=0.2)
    done: list[str] = []

    async def ended() -> Run | None:
        report = await sweeper.sweep()
        done.extend(a for a, n in report.actions.items() for _ in range(n))
        run = await deps.store.load(executing.id)
        return run if run.status.terminal else None

    run = await eventually(ended, within=20)
    assert run.status is RunStatus.NEEDS_ATTENTION
    took = (run.updated_at - executing.updated_at).total_seconds()
    print(f"ended {took:.2f}s after entering executing (deadline {busy:g}s)")
    assert took >= busy
    assert f"no replica finished executing within {busy:g}s" in run.outcome
    assert "the action was never started" in run.outcome
    # The repairs first gave it the deadline its dead driver never scheduled.
    assert sorted(done) == ["deadline", "scheduled"]
    events = [e.event for e in await deps.store.read_audit(run.id)]
    assert events.count("deadline_passed") == 1 and "action_started" not in events


async def test_an_overdue_run_a_driver_holds_or_a_worker_will_reclaim_is_left_alone(
    deps: Deps,
) -> None:
    awaiting = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
    executing = await _as_dead_driver(deps, awaiting, RunStatus.EXECUTING)
    sweeper = Sweeper(deps, interval_seconds=0.2)
    # A live driver holds the lease.
    await deps.store.acquire_lease(executing.id, "live-driver", 30)
    await deps.deadlines.schedule(executing.id, "run", time.time() - 1)
    assert (await sweeper.sweep()).actions == {}
    await deps.store.release_lease(executing.id, "live-driver")
    # The dead driver's entry is still in the queue, for a worker to reclaim.
    await deps.queue.enqueue(executing.id, "resume")
    await deps.deadlines.schedule(executing.id, "run", time.time() - 1)
    assert (await sweeper.sweep()).actions == {}
    assert (await deps.store.load(executing.id)).status is RunStatus.EXECUTING


async def test_an_expired_run_releases_its_group_a_concluded_one_does_not(deps: Deps) -> None:
    groups = AlertGroups(deps, deps.queue)
    outcomes = {}
    for status in (RunStatus.CONCLUDED, RunStatus.EXPIRED):
        firing = alert(alertname=f"Disk{status.value}")
        first = await groups.admit([firing])
        assert first.run_id is not None
        await _as_dead_driver(deps, await deps.store.load(first.run_id), status)
        again = await groups.admit([firing])  # the same alert, still firing
        outcomes[status] = (again.outcome, again.run_id == first.run_id)
    assert outcomes == {
        RunStatus.CONCLUDED: ("repeated", True),
        RunStatus.EXPIRED: ("started", False),
    }


async def test_an_ended_run_left_listed_as_active_is_unlisted_once(deps: Deps) -> None:
    created = await start_run(deps, alert(severity="critical"))
    ended = await _as_dead_driver(deps, created, RunStatus.CONCLUDED)
    active = f"{deps.settings.key_prefix}runs:active"
    assert await deps.store.redis.zscore(active, ended.id) is None  # its write unlisted it
    # As when that removal failed (it is logged, and the run stays written).
    await deps.store.redis.zadd(active, {ended.id: ended.created_at.timestamp()})
    sweeper = Sweeper(deps, interval_seconds=0.05)

    async def unlisted() -> bool | None:
        report = await sweeper.sweep()
        return True if report.actions.get("unlisted") else None

    await eventually(unlisted)
    assert await deps.store.redis.zscore(active, ended.id) is None
    assert "unlisted" not in (await sweeper.sweep()).actions
    repaired = [e.data for e in await deps.store.read_audit(ended.id) if e.event == "repaired"]
    assert [r["why"] for r in repaired] == ["an ended run was still listed as active"]


async def test_readyz_reports_the_last_pass_and_fails_when_the_sweeper_stops(
    redis_url: str,
) -> None:
    settings = Settings.model_validate(
        {"REDIS_URL": redis_url, "INCIDENT_BOT_WORKERS": 1, "INCIDENT_BOT_SWEEP_INTERVAL": 0.2}
        | {"INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS": True}
    )
    async with TestClient(TestServer(create_app(settings))) as client:

        async def passed() -> dict[str, Any] | None:
            async with client.get("/readyz") as ready:
                answer: dict[str, Any] = await ready.json()
                assert ready.status == 200, answer
            return answer if answer["sweeper"] else None

        answer = await eventually(passed, within=10)
        assert answer["status"] == "ready"
        assert set(answer["sweeper"]) == {
            "last_pass",
            "ago_seconds",
            "took_seconds",
            "actions",
            "repairs",
        }
        await client.server.app[SWEEPER].stop()
        async with client.get("/readyz") as ready:
            answer = await ready.json()
        assert ready.status == 503
        assert answer["reason"] == "the sweeper is not running"
        assert answer["sweeper"]["last_pass"]
