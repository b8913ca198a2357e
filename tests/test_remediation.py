"""Decisions, the exactly-once action and verification, driven through the real run driver."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.deps import Deps, open_deps
from bot.errors import ProposalError
from bot.models import Check, Decision, Run, RunStatus
from bot.runs import record_decision, start_run
from bot.settings import Settings
from tests.factories import alert
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)


def _settings(redis_url: str, sandbox: RunningSandbox, **extra: Any) -> Settings:
    return Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
        INCIDENT_BOT_VERIFY_TIMEOUT=0.3,
        **extra,
    )


@pytest.fixture
async def deps(redis_url: str, sandbox: RunningSandbox) -> AsyncIterator[Deps]:
    async with open_deps(_settings(redis_url, sandbox)) as built:
        yield built


async def _proposed(deps: Deps) -> Run:
    run = await start_run(deps, alert(severity="critical"))
    run = await deps.driver().drive(run.id)
    assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
    return run


async def _decide(deps: Deps, run: Run, verdict: str, user: str = "U1", reason: str = "") -> bool:
    assert run.proposal is not None
    return await record_decision(
        deps,
        Decision(
            run_id=run.id,
            proposal_id=run.proposal.id,
            user=user,
            verdict=verdict,  # type: ignore[arg-type]
            reason=reason,
        ),
    )


async def test_without_a_decision_the_run_stays_paused_and_unleased(deps: Deps) -> None:
    run = await _proposed(deps)
    again = await deps.driver().drive(run.id)
    assert again.status is RunStatus.AWAITING_APPROVAL
    assert again.version == run.version  # nothing was written
    assert await deps.store.lease_holder(run.id) is None


async def test_a_reject_ends_the_run_with_its_reason_and_nothing_runs(
    deps: Deps, sandbox_state: Callable[[], Awaitable[dict[str, Any]]]
) -> None:
    run = await _proposed(deps)
    await _decide(deps, run, "reject", user="U2", reason="deploy is a hotfix, keep it")
    done = await deps.driver().drive(run.id)
    assert done.status is RunStatus.REJECTED
    assert done.outcome == "rejected by U2: deploy is a hotfix, keep it"
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 0


async def test_a_decision_on_a_finished_run_is_refused(deps: Deps) -> None:
    run = await _proposed(deps)
    await _decide(deps, run, "approve")
    await deps.driver().drive(run.id)
    with pytest.raises(ProposalError, match="not awaiting approval"):
        await _decide(deps, run, "approve", user="U9")


async def test_a_signal_that_does_not_recover_needs_attention(
    redis_url: str, sandbox: RunningSandbox
) -> None:
    async with open_deps(_settings(redis_url, sandbox)) as deps:
        run = await _proposed(deps)
        assert run.proposal is not None
        # A check that cannot pass: the error ratio is never negative.
        impossible = Check(query=run.proposal.verify.query, op="<", threshold=-1)  # type: ignore[union-attr]
        await deps.store.acquire_lease(run.id, "test", 30)
        run = await deps.store.checkpoint(
            run.model_copy(
                update={"proposal": run.proposal.model_copy(update={"verify": impossible})}
            ),
            owner="test",
        )
        await deps.store.release_lease(run.id, "test")
        await _decide(deps, run, "approve")
        done = await deps.driver().drive(run.id)
    assert done.status is RunStatus.NEEDS_ATTENTION
    assert "not recovered after 0.3s" in done.outcome
    assert "last value 0" in done.outcome


async def test_an_undecided_proposal_expires(redis_url: str, sandbox: RunningSandbox) -> None:
    settings = _settings(redis_url, sandbox, INCIDENT_BOT_APPROVAL_TIMEOUT=0)
    async with open_deps(settings) as deps:
        run = await start_run(deps, alert(severity="critical"))
        done = await deps.driver().drive(run.id)
        events = [e.event for e in await deps.store.read_audit(run.id)]
    assert done.status is RunStatus.EXPIRED
    assert done.proposal is not None
    assert "no decision within 0s" in done.outcome
    assert "proposal" in events and "action_started" not in events
