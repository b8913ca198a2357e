"""`kill -9` of `serve` at random moments across the lifecycle of many runs.

Each run is one alert group (its own deployment `shop/checkout-N` in one sandbox, which
counts the patches each deployment gets). `serve` is a real subprocess on a real Redis; for
each run it is killed once with SIGKILL at a random moment of one phase (investigating,
awaiting approval, executing: between the action's `started` record and its outcome,
verifying), then started again. Every run must end, no deployment may be patched twice, and
at least 95% of the runs (19 of 20; all of a shorter soak) must end `resolved`: an
interrupted rollback is reconciled from its annotation on the deployment.

`INCIDENT_BOT_SOAK_RUNS` runs (6 by default; `make soak` runs 20) with the moments drawn
from `INCIDENT_BOT_SOAK_SEED` (printed, so a failure can be replayed). The random delay
after a phase is reached is the moment of the kill, not a synchronisation: every wait for
a state polls Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from bot.deps import Deps, open_deps
from bot.errors import ProposalError
from bot.models import Decision, Run, RunStatus
from bot.runs import record_decision
from bot.settings import Settings
from tests.processes import bot_env, start_bot
from tests.replica_helpers import TOKEN, alert_body
from tests.servers import free_port
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.sandbox.scenario import Scenario

pytestmark = pytest.mark.slow

RUNS = int(os.environ.get("INCIDENT_BOT_SOAK_RUNS", "6"))
SEED = int(os.environ.get("INCIDENT_BOT_SOAK_SEED", "20261201"))
PHASES = ("investigating", "awaiting_approval", "executing", "verifying")
# How long after a phase is seen the kill may land (seconds): about the phase's length
# with the sandbox's latency below, so some kills land just after it.
WINDOWS = {"investigating": 0.1, "awaiting_approval": 0.5, "executing": 0.08, "verifying": 0.5}
T = TypeVar("T")


def _scenario(runs: int) -> Scenario:
    """bad-deploy with one checkout deployment (and its 5xx signal) per run."""
    base = load_scenario("bad-deploy")
    (checkout,) = base.deployments
    deployments, signals = [], []
    for n in range(runs):
        name = f"checkout-{n}"
        deployments.append(checkout.model_copy(update={"name": name, "labels": {"app": name}}))
        labels = {"namespace": "shop", "service": name}
        signals.append(
            {
                "match": [f'service="{name}"', "http_requests_total", '(code|status)=~"5'],
                "labels": labels,
                "follows": f"shop/{name}",
                "values": base.signals[0].values,
            }
        )
        signals.append(
            {"match": [f'service="{name}"', "http_requests_total"], "labels": labels, "value": 250}
        )
    return Scenario.model_validate(
        base.model_dump()
        | {
            "deployments": [d.model_dump() for d in deployments],
            "signals": signals,
            # Long enough that each phase can be hit, short enough for the suite.
            "latency_seconds": 0.03,
            "recovery_seconds": 1.0,
            "events": [],
        }
    )


def _body(n: int) -> dict[str, Any]:
    body = alert_body(n)
    name = f"checkout-{n}"
    body["groupKey"] = f'{{}}:{{alertname="HighErrorRate", service="{name}"}}'
    body["groupLabels"]["service"] = name
    body["commonLabels"]["service"] = name
    for alert in body["alerts"]:
        alert["labels"]["service"] = name
    return body


class Serve:
    """One `incident-bot serve` at a time on a fixed port; its output is drained (a full
    pipe would stall it) and its tail kept for a failure message."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._env = env | {"INCIDENT_BOT_PORT": str(self.port)}
        self._cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.tail: list[str] = []
        self._drains: list[asyncio.Task[None]] = []

    async def start(self, http: aiohttp.ClientSession) -> float:
        """Start it and wait until `/readyz` answers 200; returns the seconds that took."""
        began = time.monotonic()
        self.process = process = await start_bot("serve", env=self._env, cwd=self._cwd)
        for stream in (process.stdout, process.stderr):
            assert stream is not None
            self._drains.append(asyncio.create_task(self._drain(stream)))

        async def ready() -> bool | None:
            if process.returncode is not None:
                raise RuntimeError(f"serve exited with {process.returncode}: {self.tail[-20:]}")
            try:
                async with http.get(f"{self.url}/readyz") as response:
                    return True if response.status == 200 else None
            except aiohttp.ClientConnectionError:
                return None

        await poll(ready, within=60)
        return time.monotonic() - began

    async def _drain(self, stream: asyncio.StreamReader) -> None:
        async for line in stream:
            self.tail = [*self.tail[-200:], line.decode(errors="replace").rstrip()]

    async def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        assert await self.process.wait() == -signal.SIGKILL
        await asyncio.gather(*self._drains)
        self._drains.clear()

    async def stop(self) -> None:
        """SIGTERM at the end of the soak (SIGKILL if it does not go)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        await asyncio.gather(*self._drains, return_exceptions=True)


async def poll(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 60, every: float = 0.005
) -> T:
    """`eventually` with a finer interval: phases here last tens of milliseconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {within}s")
        await asyncio.sleep(every)


@dataclass
class Soak:
    """What the soak did and saw."""

    deps: Deps
    serve: Serve
    http: aiohttp.ClientSession
    killed_in: Counter[str] = field(default_factory=Counter)
    restarts: list[float] = field(default_factory=list)

    async def run_of(self, n: int) -> Run | None:
        service = f"checkout-{n}"
        runs = await self.deps.store.list_runs()
        return next((r for r in runs if r.alert.labels.get("service") == service), None)

    async def status_of(self, run_id: str) -> RunStatus:
        return (await self.deps.store.load(run_id)).status

    async def reached(self, run_id: str, *states: RunStatus) -> Run:
        async def probe() -> Run | None:
            run = await self.deps.store.load(run_id)
            return run if run.status in states or run.status.terminal else None

        return await poll(probe)

    async def approve(self, run_id: str) -> None:
        """Approve the proposal once the run waits for it (as a Slack click would)."""
        run = await self.reached(run_id, RunStatus.AWAITING_APPROVAL)
        if run.status is not RunStatus.AWAITING_APPROVAL or run.proposal is None:
            return
        with contextlib.suppress(ProposalError):  # decided already (a repeat)
            await record_decision(
                self.deps,
                Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve"),
            )

    async def started_action(self, run_id: str) -> Run:
        async def probe() -> Run | None:
            run = await self.deps.store.load(run_id)
            if run.status.terminal or run.status is RunStatus.VERIFYING:
                return run
            if run.proposal is None:
                return None
            record = await self.deps.store.action_record(run_id, run.proposal.id)
            return run if record is not None else None

        return await poll(probe)

    async def kill_and_restart(self, run_id: str, delay: float) -> None:
        await asyncio.sleep(delay)  # the random moment, not a synchronisation
        status = await self.status_of(run_id)
        if status is RunStatus.EXECUTING:
            run = await self.deps.store.load(run_id)
            assert run.proposal is not None
            record = await self.deps.store.action_record(run_id, run.proposal.id)
            label = f"executing ({record.state if record else 'no action record yet'})"
        else:
            label = status.value
        await self.serve.kill()
        self.killed_in[label] += 1
        self.restarts.append(await self.serve.start(self.http))

    async def one_run(self, n: int, phase: str, delay: float) -> Run:
        async with self.http.post(
            f"{self.serve.url}/webhooks/alertmanager",
            json=_body(n),
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as response:
            assert response.status == 202, await response.text()
        run = await poll(lambda: self.run_of(n))
        if phase == "investigating":
            await self.reached(run.id, RunStatus.INVESTIGATING, RunStatus.AWAITING_APPROVAL)
            await self.kill_and_restart(run.id, delay)
            await self.approve(run.id)
        elif phase == "awaiting_approval":
            await self.reached(run.id, RunStatus.AWAITING_APPROVAL)
            await self.kill_and_restart(run.id, delay)
            await self.approve(run.id)
        elif phase == "executing":
            await self.approve(run.id)
            await self.started_action(run.id)
            await self.kill_and_restart(run.id, delay)
        else:
            await self.approve(run.id)
            await self.reached(run.id, RunStatus.VERIFYING)
            await self.kill_and_restart(run.id, delay)
        return await self.reached(run.id)  # terminal


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    async with run_sandbox(_scenario(RUNS)) as running:
        yield running


async def test_kill_9_at_random_moments_every_run_ends_once_applied_and_resolved(
    redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    plan = [PHASES[n % len(PHASES)] for n in range(RUNS)]
    rng.shuffle(plan)
    delays = [rng.uniform(0, WINDOWS[phase]) for phase in plan]
    print(f"\nsoak: {RUNS} runs, seed {SEED} (INCIDENT_BOT_SOAK_SEED replays it)")
    env = bot_env(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_HOST="127.0.0.1",
        INCIDENT_BOT_WEBHOOK_TOKEN=TOKEN,
        # A killed process's lease and queue entry are taken over after about a second.
        INCIDENT_BOT_LEASE_SECONDS="1",
        INCIDENT_BOT_RECLAIM_AFTER="1",
        # An interrupted action is executed again once its record is this old.
        INCIDENT_BOT_ACTION_TIMEOUT="2",
        INCIDENT_BOT_VERIFY_INTERVAL="0.1",
        INCIDENT_BOT_VERIFY_TIMEOUT="30",
        INCIDENT_BOT_LOG_LEVEL="WARNING",
    )
    settings = Settings.model_validate(
        {"REDIS_URL": redis_url, "PROMETHEUS_URL": sandbox.url, "KUBERNETES_URL": sandbox.url}
    )
    began = time.monotonic()
    async with open_deps(settings) as deps, aiohttp.ClientSession() as http:
        serve = Serve(env, tmp_path)
        soak = Soak(deps=deps, serve=serve, http=http)
        await serve.start(http)
        try:
            ended = [
                await soak.one_run(n, phase, delay)
                for n, (phase, delay) in enumerate(zip(plan, delays, strict=True))
            ]
        finally:
            await serve.stop()
        reconciled: Counter[str] = Counter()
        for run in ended:
            for event in await deps.store.read_audit(run.id):
                if event.event == "action_reconciled":
                    reconciled[str(event.data["effect"])] += 1
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.url}/sandbox/state") as r:
        state = await r.json()
    patches = Counter(state["deployments"][f"shop/checkout-{n}"]["patches"] for n in range(RUNS))
    outcomes = Counter(run.status.value for run in ended)

    print(f"soak: kills aimed at {dict(Counter(plan))}")
    print(f"soak: kills landed in {dict(soak.killed_in)}")
    print(f"soak: runs ended {dict(outcomes)}")
    print(f"soak: deployments by patches applied {dict(patches)}")
    print(f"soak: interrupted actions reconciled as {dict(reconciled)}")
    print(
        f"soak: {len(soak.restarts)} restarts (mean {sum(soak.restarts) / len(soak.restarts):.1f}s"
        f" to ready), {time.monotonic() - began:.1f}s in all"
    )
    for run in ended:
        if run.status is not RunStatus.RESOLVED:
            print(f"soak: {run.id} ended {run.status.value}: {run.outcome}")
    assert all(run.status.terminal for run in ended)
    assert max(patches) <= 1, "an action was applied twice"
    # At least 19 of 20, i.e. 95% (rounded up: every one of a shorter soak).
    assert outcomes["resolved"] >= math.ceil(RUNS * 0.95), outcomes
    resolved = [n for n, run in enumerate(ended) if run.status is RunStatus.RESOLVED]
    assert all(state["deployments"][f"shop/checkout-{n}"]["patches"] == 1 for n in resolved)
