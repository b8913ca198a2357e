"""Poison work: an entry whose drive raises every time is parked after 3 deliveries, and
`incident-bot runs retry` queues it again. Real Redis, a real `serve`, the real CLI."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from bot.deps import Deps, open_deps
from bot.models import Run, RunStatus
from bot.runs import start_run
from bot.settings import Settings
from bot.store import RunStore
from tests.factories import alert
from tests.processes import bot_env, eventually, run_bot
from tests.replica_helpers import start_replica
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    settings = Settings(REDIS_URL=redis_url, PROMETHEUS_URL=sandbox.url, KUBERNETES_URL=sandbox.url)
    async with open_deps(settings) as built:
        await built.queue.ensure_group()
        yield built


def _transcript_key(store: RunStore, run_id: str) -> str:
    return f"{store.run_key(run_id)}:transcript"


async def _status(store: RunStore, run_id: str, status: RunStatus) -> Run | None:
    run = await store.load(run_id)
    return run if run.status is status else None


async def _end_needing_attention(store: RunStore, run: Run) -> None:
    """End a run `needs_attention` the way a driver does: a fenced write under its lease."""
    await store.acquire_lease(run.id, "test-driver", 5)
    await store.checkpoint(
        run.model_copy(update={"status": RunStatus.NEEDS_ATTENTION, "outcome": "by hand"}),
        owner="test-driver",
    )
    await store.release_lease(run.id, "test-driver")


async def test_delivery_counts_come_with_entries_and_a_lease_held_elsewhere_is_not_one(
    deps: Deps,
) -> None:
    queue = deps.queue
    await queue.enqueue("run-a", "start")
    (first,) = await queue.read("replica-1/0", count=1, block_ms=100)
    assert first.deliveries == 1
    (second,) = await queue.reclaim("replica-2/0", min_idle_ms=0, count=1)
    assert (second.id, second.deliveries) == (first.id, 2)
    await queue.touch("replica-2/0", second)  # keeping an entry is not a delivery
    (third,) = await queue.reclaim("replica-3/0", min_idle_ms=0, count=1)
    assert third.deliveries == 3
    await queue.uncount("replica-3/0", third)  # handed out, but its run was leased elsewhere
    (again,) = await queue.reclaim("replica-1/0", min_idle_ms=0, count=1)
    assert again.deliveries == 3


async def test_a_drive_that_always_raises_is_parked_after_3_deliveries_and_retried(
    deps: Deps, store: RunStore, redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    run = await start_run(deps, alert(severity="critical"))
    key = _transcript_key(store, run.id)
    # A transcript entry that is not JSON: every drive raises as it reads the transcript.
    await store.redis.rpush(key, '{"index": 0, "role": "user", "content": [')
    await deps.queue.enqueue(run.id, "start")
    replica = await start_replica(
        tmp_path,
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_WORKERS="1",
        INCIDENT_BOT_RECLAIM_AFTER="0.5",
    )
    env = bot_env(REDIS_URL=redis_url)
    try:
        parked = await eventually(
            lambda: _status(store, run.id, RunStatus.NEEDS_ATTENTION), within=60
        )
        audit = await store.read_audit(run.id)
        failures = [e.data for e in audit if e.event == "drive_failed"]
        at_ms = [
            int(e.id.split("-")[0]) for e in audit if e.event in ("drive_failed", "dead_lettered")
        ]
        print(
            f"deliveries {[f['deliveries'] for f in failures]}, parked after "
            f"{(at_ms[-1] - at_ms[0]) / 1000:.2f}s"
        )
        assert [f["deliveries"] for f in failures] == [1, 2, 3]
        assert all("ValidationError" in f["error"] for f in failures)
        (dead,) = [e.data for e in audit if e.event == "dead_lettered"]
        assert dead["deliveries"] == 3 and dead["status"] == "queued"
        assert "ValidationError" in dead["error"]
        assert dead["owner"] == failures[-1]["owner"]
        assert parked.outcome.startswith("parked after 3 failed drives: ValidationError")
        (letter,) = await deps.queue.dead_letters(run.id)
        assert (letter.deliveries, letter.status, letter.reason) == (3, "queued", "start")
        assert "ValidationError" in letter.error
        # Acknowledged and removed from the queue; nothing holds the run.
        assert await deps.queue.depth() == 0
        assert await store.lease_holder(run.id) is None
        async with aiohttp.ClientSession() as http, http.get(f"{replica.url}/metrics") as r:
            page = await r.text()
        assert "incident_bot_dead_letters_total 1.0" in page

        # The cause is fixed (the entry removed); the operator retries the run.
        await store.redis.delete(key)
        code, out, err = await run_bot("runs", "retry", run.id, env=env, cwd=tmp_path)
        assert code == 0, err
        assert f"Run {run.id} is queued again (queued)" in out
        assert "after 3 failed drives" in out
        proposed = await eventually(
            lambda: _status(store, run.id, RunStatus.AWAITING_APPROVAL), within=60
        )
        assert proposed.proposal is not None
        assert await deps.queue.dead_letters(run.id) == []
        assert await store.redis.ttl(key) == -1  # the retried run no longer expires
        assert run.id in {r.id for r in await store.list_runs(active_only=True)}
        events = [e.event for e in await store.read_audit(run.id)]
        assert events.count("retried") == 1 and events.count("dead_lettered") == 1
    finally:
        replica.process.send_signal(signal.SIGTERM)
        await replica.process.wait()


async def test_runs_retry_refuses_unknown_and_unparked_runs(
    deps: Deps, store: RunStore, redis_url: str, tmp_path: Path
) -> None:
    env = bot_env(REDIS_URL=redis_url)
    code, _, err = await run_bot("runs", "retry", "run_nope", env=env, cwd=tmp_path)
    assert code == 1
    assert err.strip() == "incident-bot: no run 'run_nope'"

    queued = await start_run(deps, alert(severity="critical"))
    code, _, err = await run_bot("runs", "retry", queued.id, env=env, cwd=tmp_path)
    assert code == 1
    assert f"run {queued.id} is queued, not needs_attention" in err
    assert "Traceback" not in err

    attention = await start_run(deps, alert(severity="critical"))
    await _end_needing_attention(store, attention)
    code, _, err = await run_bot("runs", "retry", attention.id, env=env, cwd=tmp_path)
    assert code == 1
    assert "its queue entry was never dead-lettered" in err
    assert (await store.load(attention.id)).status is RunStatus.NEEDS_ATTENTION
    assert await deps.queue.depth() == 0  # nothing was queued
