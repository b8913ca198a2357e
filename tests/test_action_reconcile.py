"""A run that finds its action `started` by a process that died reconciles it from the mark
the action leaves on its target: applied -> verified and resolved; not applied -> executed
once under the same record; unknown -> needs_attention. Driven through the real run driver
against the sandbox's Kubernetes API and a real Redis."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.deps import Deps, open_deps
from bot.models import ActionRecord, Decision, Run, RunStatus, utcnow
from bot.runs import record_decision, start_run
from bot.settings import Settings
from tests.factories import alert
from tools.actions import ROLLBACK, RollbackInput
from tools.sandbox import RunningSandbox
from tools.sandbox.scenario_parts import Fault

pytest_plugins = ("tests.sandbox_fixtures",)

State = Callable[[], Awaitable[dict[str, Any]]]
ACTION_TIMEOUT = 1.5


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    settings = Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
        INCIDENT_BOT_VERIFY_TIMEOUT=5,
        INCIDENT_BOT_ACTION_TIMEOUT=ACTION_TIMEOUT,
    )
    async with open_deps(settings) as built:
        yield built


async def _interrupted(deps: Deps, *, ago: float = 60) -> Run:
    """An approved rollback whose action a dead process claimed `ago` seconds ago and
    never finished."""
    run = await start_run(deps, alert(severity="critical"))
    run = await deps.driver().drive(run.id)
    assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
    await record_decision(
        deps, Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    )
    await deps.store.acquire_lease(run.id, "dead-process", 30)
    executing = await deps.store.checkpoint(
        run.model_copy(update={"status": RunStatus.EXECUTING}), owner="dead-process"
    )
    await deps.store.begin_action(
        ActionRecord(
            run_id=run.id,
            proposal_id=run.proposal.id,
            action=run.proposal.action,
            arguments=run.proposal.arguments,
            state="started",
            owner="dead-process",
            started_at=utcnow() - timedelta(seconds=ago),
        )
    )
    await deps.store.release_lease(run.id, "dead-process")  # its lease expired
    return executing


async def _reconciled(deps: Deps, run_id: str) -> list[dict[str, Any]]:
    """The `action_reconciled` audit events: what was observed and done."""
    keys = ("action", "effect", "then")
    return [
        {k: e.data[k] for k in keys}
        for e in await deps.store.read_audit(run_id)
        if e.event == "action_reconciled"
    ]


def _counted(deps: Deps, outcome: str) -> float:
    value = deps.metrics.registry.get_sample_value(
        "incident_bot_actions_total", {"action": "kubernetes.rollback", "outcome": outcome}
    )
    return value or 0.0


async def test_an_applied_effect_is_verified_and_resolves_without_a_second_patch(
    deps: Deps, sandbox_state: State
) -> None:
    run = await _interrupted(deps)
    assert run.proposal is not None
    # The dead process's patch landed (template and annotation) before it died.
    args = RollbackInput.model_validate(run.proposal.arguments)
    context = deps.action_context.for_proposal(run.id, run.proposal.id)
    await ROLLBACK.execute(context, args, run.proposal.id)

    done = await deps.driver().drive(run.id)

    assert done.status is RunStatus.RESOLVED, done.outcome
    assert "its mark on the target shows it took effect" in done.outcome
    assert "verified" in done.outcome
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 1
    record = await deps.store.action_record(run.id, run.proposal.id)
    assert record is not None and record.state == "succeeded"
    assert await _reconciled(deps, run.id) == [
        {"action": "kubernetes.rollback", "effect": "applied", "then": "verifying"}
    ]
    assert _counted(deps, "reconciled_applied") == 1


async def test_an_effect_not_applied_is_executed_once_under_the_same_record(
    deps: Deps, sandbox_state: State
) -> None:
    run = await _interrupted(deps)
    assert run.proposal is not None
    started = await deps.store.action_record(run.id, run.proposal.id)

    done = await deps.driver().drive(run.id)
    again = await deps.driver().drive(run.id)  # a later drive changes nothing

    assert done.status is RunStatus.RESOLVED, done.outcome
    assert again.status is RunStatus.RESOLVED and again.version == done.version
    checkout = (await sandbox_state())["deployments"]["shop/checkout"]
    assert (checkout["patches"], checkout["revision"]) == (1, 3)
    record = await deps.store.action_record(run.id, run.proposal.id)
    assert record is not None and started is not None
    assert (record.state, record.started_at, record.owner) == (
        "succeeded",
        started.started_at,
        "dead-process",
    )
    events = [e.event for e in await deps.store.read_audit(run.id)]
    assert events.count("action_succeeded") == 1 and "action_started" not in events
    assert await _reconciled(deps, run.id) == [
        {"action": "kubernetes.rollback", "effect": "not_applied", "then": "executing again"}
    ]
    assert _counted(deps, "reexecuted") == 1 and _counted(deps, "succeeded") == 1


async def test_a_record_younger_than_the_action_timeout_is_given_the_rest_of_it(
    deps: Deps, sandbox_state: State
) -> None:
    # Claimed just now: its execution may still be under way (a driver that lost its
    # lease), so it is executed again only once it surely ended.
    run = await _interrupted(deps, ago=0)
    began = time.monotonic()

    done = await deps.driver().drive(run.id)

    assert done.status is RunStatus.RESOLVED, done.outcome
    assert time.monotonic() - began >= ACTION_TIMEOUT - 0.1
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 1


async def test_an_unknown_effect_needs_attention_and_nothing_runs(
    deps: Deps, sandbox: RunningSandbox, sandbox_state: State
) -> None:
    run = await _interrupted(deps)
    # From now on the deployment cannot be read (the API refuses it).
    sandbox.world.scenario = sandbox.world.scenario.model_copy(
        update={
            "faults": [Fault(path="/deployments/checkout$", method="GET", status=403, times=None)]
        }
    )

    done = await deps.driver().drive(run.id)

    assert done.status is RunStatus.NEEDS_ATTENTION
    assert "whether it took effect cannot be told, so it was not run again" in done.outcome
    assert "could not observe the target" in done.outcome
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 0
    assert await _reconciled(deps, run.id) == [
        {"action": "kubernetes.rollback", "effect": "unknown", "then": "needs_attention"}
    ]
    assert _counted(deps, "interrupted") == 1


async def test_an_execution_is_bounded_in_all_by_the_action_timeout(
    deps: Deps, sandbox: RunningSandbox
) -> None:
    run = await start_run(deps, alert(severity="critical"))
    run = await deps.driver().drive(run.id)
    assert run.proposal is not None
    await record_decision(
        deps, Decision(run_id=run.id, proposal_id=run.proposal.id, user="U1", verdict="approve")
    )
    # Each call answers within the timeout, but the rollback's three calls together do not.
    sandbox.world.scenario = sandbox.world.scenario.model_copy(
        update={"latency_seconds": ACTION_TIMEOUT / 2.5}
    )

    done = await deps.driver().drive(run.id)

    assert done.status is RunStatus.FAILED
    assert done.outcome == (
        f"kubernetes.rollback failed: kubernetes.rollback did not finish within {ACTION_TIMEOUT:g}s"
    )
