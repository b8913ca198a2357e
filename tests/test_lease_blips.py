"""Leases ride out Redis blips: Redis stopped for 3 s while a run is being driven, and the
run finishes afterwards, written by its one driver. Two real `serve` replicas, a real
redis-server stopped and started again on the same port and files."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from bot.models import Run, RunStatus
from bot.store import RunStore
from tests.anthropic_server import (
    API_KEY,
    RATIO_QUERY,
    Exchange,
    Reply,
    ScriptedAnthropic,
    call,
    hold,
    tool_result,
    tool_use,
)
from tests.processes import eventually
from tests.replica_helpers import Replica, alert_body, post_alert, start_replica
from tests.test_redis_outage import RedisProcess
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

OUTAGE_SECONDS = 3.0
# Renewed every 8/3 s, so at least one renewal falls in the outage; the lease would expire
# at most 8 s after the last renewal before it.
LEASE_SECONDS = 8.0


@pytest.fixture
def outage_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.running:
        server.stop()


def _conclude() -> Reply:
    return tool_use(
        call(
            "toolu_done",
            "conclude",
            {"summary": "checkout's 5xx ratio is 12%; a human should look."},
        )
    )


def _script(answer: asyncio.Event, *, redrives: int = 0) -> list[Exchange]:
    """One tool call, then the conclusion, held until `answer` is set; then `redrives`
    more conclusions for drivers that go on from the checkpoint after the tools."""
    seen_tools = [tool_result("toolu_ratio", contains="0.12")]
    return [
        Exchange(
            tool_use(call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY})),
            note="investigate",
        ),
        Exchange(hold(_conclude(), answer), expect=seen_tools, note="held through the outage"),
        *(Exchange(_conclude(), expect=seen_tools, note="re-drive") for _ in range(redrives)),
    ]


def _env(redis_url: str, sandbox: RunningSandbox, claude: ScriptedAnthropic) -> dict[str, str]:
    return {
        "REDIS_URL": redis_url,
        "PROMETHEUS_URL": sandbox.url,
        "KUBERNETES_URL": sandbox.url,
        "ANTHROPIC_API_KEY": API_KEY,
        "ANTHROPIC_BASE_URL": claude.url,
        # An idle entry is tried again within a few seconds.
        "INCIDENT_BOT_RECLAIM_AFTER": "2",
        "INCIDENT_BOT_WORKERS": "2",
    }


async def _stop(replicas: list[Replica]) -> dict[int, str]:
    """SIGTERM every replica; returns each one's log (stderr) by pid."""
    for replica in replicas:
        replica.process.send_signal(signal.SIGTERM)
    logs = {}
    for replica in replicas:
        _, err = await replica.process.communicate()
        logs[replica.process.pid] = err.decode()
    return logs


async def _held_run(store: RunStore, claude: ScriptedAnthropic, replica: Replica) -> Run:
    """Post an alert; returns its run once its driver waits on the held model call."""
    async with aiohttp.ClientSession() as http:
        assert await post_alert(http, replica, alert_body(1)) == 202
    await claude.received(2)  # the tools ran and were checkpointed; the model is held
    (run,) = await store.list_runs()
    return run


async def _ended(store: RunStore, run_id: str) -> Run | None:
    loaded = await store.load(run_id)
    return loaded if loaded.status.terminal else None


@pytest.fixture
async def client(outage_redis: RedisProcess) -> AsyncIterator[redis.Redis]:
    """A client of the server that goes down; closed however the test ends."""
    connection = redis.from_url(outage_redis.url, decode_responses=True)
    yield connection
    await connection.aclose()


def _lease_key(run_id: str) -> str:
    return f"incident-bot:lease:{{{run_id}}}"


@pytest.mark.slow
async def test_a_run_driven_through_a_redis_restart_finishes_with_its_one_driver(
    outage_redis: RedisProcess, client: redis.Redis, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    answer = asyncio.Event()
    store = RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    async with ScriptedAnthropic(_script(answer)) as claude:
        env = _env(outage_redis.url, sandbox, claude)
        env["INCIDENT_BOT_LEASE_SECONDS"] = str(LEASE_SECONDS)
        replicas = [await start_replica(tmp_path, **env) for _ in range(2)]
        try:
            run = await _held_run(store, claude, replicas[0])
            driver = await store.lease_holder(run.id)
            assert driver is not None

            outage_redis.stop()
            stopped_at = time.time()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for anything
            outage_redis.start()

            async def renewed_after_outage() -> bool | None:
                """The lease, still the driver's, reaches past where it ended before the
                outage: it was renewed once Redis was back."""
                try:
                    holder = await store.lease_holder(run.id)
                    left_ms = await client.pttl(_lease_key(run.id))
                except redis.ConnectionError:
                    return None
                assert holder == driver, f"lease moved from {driver} to {holder}"
                reaches = time.time() + left_ms / 1000 - stopped_at
                return reaches if reaches > LEASE_SECONDS else None

            reaches = await eventually(renewed_after_outage, within=LEASE_SECONDS + 10)
            print(f"after the outage the lease reaches {reaches:.1f}s past its start")
            answer.set()
            finished = await eventually(lambda: _ended(store, run.id), within=60)
        finally:
            logs = await _stop(replicas)

    driver_pid = int(driver.split(":")[1])
    failed_renewals = logs[driver_pid].count("lease renewal failed, retrying")
    print(f"renewals retried through the outage: {failed_renewals}")
    assert failed_renewals >= 1  # a renewal met the outage
    assert finished.status is RunStatus.CONCLUDED, finished.outcome
    assert finished.engine == "model"
    assert len(claude.requests) == 2  # no second driver asked the model again
    authors = [s.author for s in await store.transcript(run.id)]
    assert authors == ["alert", "briefing", "model", "tools", "model"]
    owners = {e.data["owner"] for e in await store.read_audit(run.id) if "owner" in e.data}
    assert owners == {driver.rsplit("/", 1)[0]}  # the driver's process (the lease: its drive)
    assert await store.lease_holder(run.id) is None


@pytest.mark.slow
async def test_a_driver_whose_lease_expired_in_an_outage_stops_at_its_next_write(
    outage_redis: RedisProcess, client: redis.Redis, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    answer = asyncio.Event()
    store = RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    async with ScriptedAnthropic(_script(answer, redrives=1)) as claude:
        env = _env(outage_redis.url, sandbox, claude)
        env["INCIDENT_BOT_LEASE_SECONDS"] = "1.5"  # shorter than the outage
        replicas = [await start_replica(tmp_path, **env)]
        try:
            run = await _held_run(store, claude, replicas[0])
            stale = await store.lease_holder(run.id)
            outage_redis.stop()
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage itself, not a wait for anything
            outage_redis.start()

            async def lease_gone() -> bool | None:
                try:
                    return True if await store.lease_holder(run.id) is None else None
                except redis.ConnectionError:
                    return None

            await eventually(lease_gone)
            answer.set()  # the stale driver gets its answer and tries to write it
            finished = await eventually(lambda: _ended(store, run.id), within=60)
        finally:
            logs = await _stop(replicas)

    log = logs[replicas[0].process.pid]
    assert "lease lost" in log
    assert "drive stopped: the run's lease was lost" in log
    assert finished.status is RunStatus.CONCLUDED, finished.outcome
    # The stale driver's answer was refused; the next delivery asked again, from the
    # checkpoint after the tools: nothing is in the transcript twice.
    assert len(claude.requests) == 3
    authors = [s.author for s in await store.transcript(run.id)]
    assert authors == ["alert", "briefing", "model", "tools", "model"]
    events = [e.event for e in await store.read_audit(run.id)]
    assert "drive_failed" not in events  # a lost lease is not a failed drive
    assert events.count("tool_call") == 1 and events.count("finished") == 1
    assert stale is not None and await store.lease_holder(run.id) is None
