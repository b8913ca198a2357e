"""Following a run from the terminal while it waits for more than one approval."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import redis.asyncio as redis

from bot.deps import open_deps
from bot.models import Decision, Run, RunStatus
from bot.runs import follow, record_decision, start_run
from bot.settings import Settings
from tests.factories import alert
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

ROOT = Path(__file__).resolve().parent.parent
TWO_APPROVALS = "actions:\n  - action: kubernetes.rollback\n    approvals: 2\n"


def _decision(run: Run, user: str) -> Decision:
    assert run.proposal is not None
    return Decision(run_id=run.id, proposal_id=run.proposal.id, user=user, verdict="approve")


async def _set_calls(client: redis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_set", {}).get("calls", 0))


async def test_one_of_two_approvals_does_not_make_the_follower_spin(
    redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "policies" / "runbooks", policy / "runbooks")
    (policy / "policy.yaml").write_text(TWO_APPROVALS)
    settings = Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=str(policy),
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
    )
    async with open_deps(settings) as deps:
        run = await deps.driver().drive((await start_run(deps, alert(severity="critical"))).id)
        assert run.status is RunStatus.AWAITING_APPROVAL
        await record_decision(deps, _decision(run, "U1"))
        weighed = asyncio.Event()

        async def waiting_for_more(_: Run) -> bool:
            weighed.set()  # the follower's drive weighed U1's approval and let go
            return True

        following = asyncio.create_task(follow(deps.driver(), deps, run.id, waiting_for_more))
        await asyncio.wait_for(weighed.wait(), 10)
        # Until a second approval arrives there is nothing to drive. A follower that
        # drove again on every poll would take the lease (a SET) in this window.
        await deps.store.redis.config_resetstat()
        await asyncio.sleep(0.6)  # a measuring window longer than one poll, not a wait
        assert await _set_calls(deps.store.redis) == 0
        await record_decision(deps, _decision(run, "U2"))
        finished = await asyncio.wait_for(following, 30)
    assert finished.status is RunStatus.RESOLVED, finished.outcome
