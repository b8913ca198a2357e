"""The metrics the chart's alerts need, moving against a real Redis and the real app:
readiness, the workers' heartbeat, approvals past their timeout, today's budget used."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from bot.deps import Deps, open_deps
from bot.metrics import Metrics
from bot.models import RunStatus, Usage
from bot.runs import start_run
from bot.server import SWEEPER, create_app
from bot.settings import Settings
from bot.spend import DailySpend
from bot.sweeper import Sweeper
from tests.factories import alert
from tests.processes import eventually
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

Client = TestClient[web.Request, web.Application]


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def scraped(client: Client, name: str) -> float | None:
    """The value of the unlabelled series `name` on the app's /metrics page."""
    async with client.get("/metrics") as page:
        assert page.status == 200
        for line in (await page.text()).splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
    return None


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    settings = Settings.model_validate(
        {
            "REDIS_URL": redis_url,
            "INCIDENT_BOT_WORKERS": 1,
            "INCIDENT_BOT_SWEEP_INTERVAL": 0.2,
            "INCIDENT_BOT_ALLOW_UNAUTHENTICATED_WEBHOOKS": True,
        }
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


async def test_ready_follows_the_readiness_checks_at_each_scrape(client: Client) -> None:
    assert await scraped(client, "incident_bot_ready") == 1.0
    async with client.get("/readyz") as ready:
        assert ready.status == 200
    await client.server.app[SWEEPER].stop()
    assert await scraped(client, "incident_bot_ready") == 0.0
    async with client.get("/readyz") as ready:
        assert ready.status == 503


async def test_worker_heartbeat_moves_while_the_workers_read_the_queue(client: Client) -> None:
    started = time.time()

    async def beat_after(moment: float) -> float | None:
        value = await scraped(client, "incident_bot_worker_heartbeat_timestamp_seconds")
        return value if value is not None and value > moment else None

    first = await eventually(lambda: beat_after(started), within=10)
    # An idle worker still goes round: each empty read times out after 0.5 s.
    assert await eventually(lambda: beat_after(first), within=10) > first


async def test_approvals_overdue_counts_a_proposal_no_pass_could_expire(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    settings = Settings.model_validate(
        {
            "REDIS_URL": redis_url,
            "PROMETHEUS_URL": sandbox.url,
            "KUBERNETES_URL": sandbox.url,
            # Past its timeout only after the first pass, even on a loaded machine.
            "INCIDENT_BOT_APPROVAL_TIMEOUT": 1.0,
        }
    )
    async with open_deps(settings) as deps:
        await deps.queue.ensure_group()
        run = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
        assert run.status is RunStatus.AWAITING_APPROVAL
        sweeper = Sweeper(deps, interval_seconds=0.1)
        # A driver holds the run (stuck): each pass must leave the proposal as it is.
        await deps.store.acquire_lease(run.id, "stuck-driver", 60)
        assert await overdue_after_a_pass(sweeper, deps) == 0.0  # not yet past the timeout

        async def counted() -> float | None:
            value = await overdue_after_a_pass(sweeper, deps)
            return value if value else None

        assert await eventually(counted, within=10) == 1.0
        assert (await deps.store.load(run.id)).status is RunStatus.AWAITING_APPROVAL
        # Released, a pass (once the claim's retry comes due) expires it: the count drops.
        await deps.store.release_lease(run.id, "stuck-driver")

        async def cleared() -> bool | None:
            return True if await overdue_after_a_pass(sweeper, deps) == 0.0 else None

        await eventually(cleared, within=10)
        assert (await deps.store.load(run.id)).status is RunStatus.EXPIRED


async def overdue_after_a_pass(sweeper: Sweeper, deps: Deps) -> float | None:
    await sweeper.sweep()
    return sample(deps.metrics.registry, "incident_bot_approvals_overdue")


async def test_daily_budget_used_ratio_is_set_when_spend_is_added_and_read(
    redis_url: str,
) -> None:
    client = redis.from_url(redis_url, decode_responses=True)
    metrics = Metrics()
    spend = DailySpend(client, prefix="t:", metrics=metrics, day_tokens=1000, day_dollars=2.0)
    name = "incident_bot_daily_budget_used_ratio"
    await spend.add(Usage(input_tokens=200, output_tokens=50), 0.5)
    assert sample(metrics.registry, name, kind="tokens") == pytest.approx(0.25)
    assert sample(metrics.registry, name, kind="dollars") == pytest.approx(0.25)
    # Another replica spends the rest of the dollars; this one sees it when it reads.
    other = DailySpend(client, prefix="t:")
    await other.add(Usage(input_tokens=750, output_tokens=0), 1.5)
    assert await spend.today() == (1000, pytest.approx(2.0))
    assert sample(metrics.registry, name, kind="tokens") == pytest.approx(1.0)
    assert sample(metrics.registry, name, kind="dollars") == pytest.approx(1.0)
    # No daily budget for a kind: no series for it.
    unbudgeted = Metrics()
    await DailySpend(client, prefix="t:", metrics=unbudgeted, day_dollars=4.0).today()
    assert sample(unbudgeted.registry, name, kind="tokens") is None
    assert sample(unbudgeted.registry, name, kind="dollars") == pytest.approx(0.5)
    await client.aclose()
