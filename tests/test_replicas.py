"""Two `serve` replicas on one Redis: one run per group, one worker per run, and a kill -9."""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.models import RunStatus
from bot.store import RunStore
from tests.processes import eventually
from tests.replica_helpers import alert_body, post_alert, start_replica
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox

GROUPS = 200


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[RunningSandbox]:
    """The bad-deploy cluster answering in 0.2 s, so runs are in flight when a replica dies."""
    scenario = load_scenario("bad-deploy").model_copy(update={"latency_seconds": 0.2})
    async with run_sandbox(scenario) as sandbox:
        yield sandbox


@pytest.mark.slow
async def test_two_replicas_share_the_groups_and_finish_the_runs_of_a_killed_one(
    redis_url: str, slow_sandbox: RunningSandbox, store: RunStore, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "PROMETHEUS_URL": slow_sandbox.url,
        "KUBERNETES_URL": slow_sandbox.url,
        "INCIDENT_BOT_WORKERS": "4",
        "INCIDENT_BOT_MAX_INVESTIGATIONS_PER_SERVICE": "8",
        "INCIDENT_BOT_LEASE_SECONDS": "5",
        "INCIDENT_BOT_RECLAIM_AFTER": "6",
        # All 200 deliveries at once to each replica: none is shed (that is tested in
        # test_webhook_shedding.py); here every one must be stored.
        "INCIDENT_BOT_MAX_WEBHOOKS_IN_FLIGHT": str(GROUPS),
    }
    first, second = await asyncio.gather(
        start_replica(tmp_path, **env), start_replica(tmp_path, **env)
    )
    try:
        async with aiohttp.ClientSession() as http:
            replicas = itertools.cycle((first, second))
            statuses = await asyncio.gather(
                *(post_alert(http, next(replicas), alert_body(n)) for n in range(GROUPS))
            )
            # Alertmanager re-delivers: every group again, to the other replica.
            statuses += await asyncio.gather(
                *(post_alert(http, next(replicas), alert_body(n)) for n in range(GROUPS))
            )
        assert set(statuses) == {202}

        async def first_is_driving_after_some_proposed() -> bool | None:
            # Killed only while it holds leases, so that it leaves runs half driven.
            runs = await store.list_runs(limit=1000)
            done = sum(r.status is RunStatus.AWAITING_APPROVAL for r in runs)
            if done < 30:
                return None
            holders = [await store.lease_holder(r.id) for r in runs if r.proposal is None]
            mine = f":{first.process.pid}:"
            return True if any(h and mine in h for h in holders) else None

        await eventually(first_is_driving_after_some_proposed, within=60)
        first.process.send_signal(signal.SIGKILL)
        assert await first.process.wait() == -signal.SIGKILL

        async def all_proposed() -> list[str] | None:
            runs = await store.list_runs(limit=1000)
            if len(runs) == GROUPS and all(r.status is RunStatus.AWAITING_APPROVAL for r in runs):
                return [r.id for r in runs]
            return None

        # A ceiling, not a pause: 200 runs at 0.2 s a backend call, each proposal's check
        # also asked of Prometheus before it is offered, on one surviving replica.
        try:
            run_ids = await eventually(all_proposed, within=240)
        except TimeoutError:
            runs = await store.list_runs(limit=1000)
            stuck = [f"{r.id} {r.status.value}: {r.outcome}" for r in runs if r.proposal is None]
            raise AssertionError(f"{len(runs)} runs; not proposed: {stuck[:10]}") from None
    finally:
        for replica in (first, second):
            if replica.process.returncode is None:
                replica.process.send_signal(signal.SIGTERM)
        # Both are waited for: a failure before the kill must not leave `first` running.
        await asyncio.wait_for(first.process.wait(), 30)
        assert await asyncio.wait_for(second.process.wait(), 30) == 0

    runs = [await store.load(run_id) for run_id in run_ids]
    assert len({r.alert.group_key for r in runs}) == GROUPS  # one run per group
    handed_over = 0
    for run in runs:
        events = await store.read_audit(run.id)
        assert [e.event for e in events].count("proposal") == 1
        owners = [e.data["owner"] for e in events if "owner" in e.data]
        changes = [owner for owner, _ in itertools.groupby(owners)]
        # One process at a time: once another worker took the run over, the first
        # never wrote to it again.
        assert len(changes) == len(set(changes)), changes
        handed_over += len(set(changes)) > 1
    assert handed_over >= 1  # some runs of the killed replica were finished by the other
