"""Exactly once: 50 concurrent resumes of one approved proposal, from two processes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis

from bot.deps import open_deps
from bot.models import Decision, RunStatus
from bot.runs import record_decision, start_run
from bot.settings import Settings
from tests.factories import alert
from tests.processes import ROOT, bot_env
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox

PER_PROCESS = 25


@pytest.fixture
async def slow_sandbox() -> AsyncIterator[RunningSandbox]:
    """Answers in 50 ms, so resumes pile up while the action is in flight."""
    scenario = load_scenario("bad-deploy").model_copy(
        update={"latency_seconds": 0.05, "recovery_seconds": 0}
    )
    async with run_sandbox(scenario) as sandbox:
        yield sandbox


async def test_fifty_concurrent_resumes_in_two_processes_execute_once(
    redis_url: str, slow_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "PROMETHEUS_URL": slow_sandbox.url,
        "KUBERNETES_URL": slow_sandbox.url,
        "INCIDENT_BOT_VERIFY_INTERVAL": "0.05",
    }
    async with open_deps(Settings.model_validate(env)) as deps:
        run = await start_run(deps, alert(severity="critical"))
        run = await deps.driver().drive(run.id)
        assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
        await record_decision(
            deps,
            Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve"),
        )
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.resume_storm",
                run.id,
                str(PER_PROCESS),
                env=bot_env(**env),
                cwd=ROOT,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        # redis-py 8 reads with a 5 s socket timeout by default; BLPOP waits longer.
        signals = redis.from_url(redis_url, socket_timeout=60)
        try:
            for _ in processes:  # both are connected and waiting
                assert await signals.blpop(["storm:ready"], timeout=30) is not None
            await signals.rpush("storm:go", "go", "go")
            outputs = [await asyncio.wait_for(p.communicate(), 60) for p in processes]
        finally:
            await signals.aclose()
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        finished = await deps.store.load(run.id)
        events = [e.event for e in await deps.store.read_audit(run.id)]
        record = await deps.store.action_record(run.id, run.proposal.id)

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert json.loads(out) == ["resolved"] * PER_PROCESS
    assert finished.status is RunStatus.RESOLVED, finished.outcome
    assert events.count("action_started") == 1 and events.count("action_succeeded") == 1
    assert record is not None and record.state == "succeeded"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{slow_sandbox.url}/sandbox/state") as response:
            state = await response.json()
    assert state["deployments"]["shop/checkout"]["patches"] == 1
