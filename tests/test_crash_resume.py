"""A real `incident-bot` process killed with SIGKILL; another process finishes its run."""

from __future__ import annotations

import shutil
import signal
from pathlib import Path

import aiohttp
import pytest

from bot.models import Run, RunStatus
from bot.store import RunStore
from tests.anthropic_server import API_KEY, ScriptedAnthropic, hang_after_tools_script
from tests.processes import bot_env, eventually, run_bot, start_bot
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

SHARED = Path(__file__).resolve().parent / "fixtures" / "alertmanager"


@pytest.fixture
def env(redis_url: str, sandbox: RunningSandbox) -> dict[str, str]:
    return bot_env(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_VERIFY_INTERVAL="0.2",
    )


@pytest.fixture
def alert_file(tmp_path: Path) -> Path:
    """The real Alertmanager body of a HighErrorRate alert for shop/checkout."""
    target = tmp_path / "alert.json"
    shutil.copy(SHARED / "firing-single.json", target)
    return target


async def _patches(sandbox: RunningSandbox) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.url}/sandbox/state") as r:
        state = await r.json()
    return int(state["deployments"]["shop/checkout"]["patches"])


async def _released(store: RunStore, run_id: str) -> bool | None:
    return True if await store.lease_holder(run_id) is None else None


async def _only_run(store: RunStore, status: RunStatus) -> Run | None:
    runs = await store.list_runs()
    return runs[0] if runs and runs[0].status is status else None


async def test_kill_while_awaiting_approval_then_approve_from_another_process(
    store: RunStore, env: dict[str, str], alert_file: Path, tmp_path: Path, sandbox: RunningSandbox
) -> None:
    triage = await start_bot("triage", str(alert_file), env=env, cwd=tmp_path)
    run = await eventually(lambda: _only_run(store, RunStatus.AWAITING_APPROVAL))
    assert run.proposal is not None and run.proposal.action == "kubernetes.rollback"
    # Nothing holds the run while it waits for a human.
    assert await eventually(lambda: _released(store, run.id))
    triage.send_signal(signal.SIGKILL)
    assert await triage.wait() == -signal.SIGKILL

    code, out, err = await run_bot(
        "runs", "approve", run.id, "--user", "alice", env=env, cwd=tmp_path
    )

    assert code == 0, err
    assert "approve by alice recorded" in out
    finished = await store.load(run.id)
    assert finished.status is RunStatus.RESOLVED, finished.outcome
    record = await store.action_record(run.id, run.proposal.id)
    assert record is not None and record.state == "succeeded"
    assert await _patches(sandbox) == 1
    events = [e.event for e in await store.read_audit(run.id)]
    assert events.count("action_started") == 1
    assert events.count("decision") == 1


async def test_approving_twice_executes_once(
    store: RunStore, env: dict[str, str], alert_file: Path, tmp_path: Path, sandbox: RunningSandbox
) -> None:
    code, out, _ = await run_bot("triage", str(alert_file), "--yes", env=env, cwd=tmp_path)
    assert code == 0 and "resolved" in out
    (run,) = await store.list_runs()
    code, _, err = await run_bot("runs", "approve", run.id, env=env, cwd=tmp_path)
    assert code == 1
    assert "resolved, not awaiting approval" in err
    assert await _patches(sandbox) == 1


async def test_kill_in_the_middle_of_an_investigation_then_resume(
    store: RunStore, env: dict[str, str], alert_file: Path, tmp_path: Path, sandbox: RunningSandbox
) -> None:
    # The model asks for two tools; its next call hangs until the process is killed.
    async with ScriptedAnthropic(hang_after_tools_script()) as claude:
        model_env = env | {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "INCIDENT_BOT_MODEL": "claude-sonnet-4-6",
            # The killed process's lease must expire before another may take the run.
            "INCIDENT_BOT_LEASE_SECONDS": "2",
        }
        triage = await start_bot("triage", str(alert_file), "--yes", env=model_env, cwd=tmp_path)
        await claude.received(2)  # the tool results were checkpointed before this call
        (run,) = await store.list_runs()
        assert run.status is RunStatus.INVESTIGATING
        authors = [s.author for s in await store.transcript(run.id)]
        assert authors == ["alert", "briefing", "model", "tools"]
        triage.send_signal(signal.SIGKILL)
        assert await triage.wait() == -signal.SIGKILL

        code, _, err = await run_bot("runs", "resume", run.id, "--yes", env=model_env, cwd=tmp_path)

    assert code == 0, err
    finished = await store.load(run.id)
    assert finished.status is RunStatus.RESOLVED, finished.outcome
    assert finished.engine == "model"
    authors = [s.author for s in await store.transcript(run.id)]
    assert authors == ["alert", "briefing", "model", "tools", "model"]  # the tools ran once
    assert len(claude.requests) == 3
    assert finished.proposal is not None
    record = await store.action_record(run.id, finished.proposal.id)
    assert record is not None and record.state == "succeeded"
    assert await _patches(sandbox) == 1
