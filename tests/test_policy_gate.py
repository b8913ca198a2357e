"""The policy at work in runs: a forbidden proposal is never offered and a forged approval
executes nothing; only the approvers the policy names count; the `policy` commands."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from bot.deps import Deps, open_deps
from bot.errors import ProposalError
from bot.models import Decision, Run, RunStatus, Step
from bot.runs import record_decision, start_run
from bot.settings import Settings
from tests.factories import alert
from tests.processes import bot_env, run_bot
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

ROOT = Path(__file__).resolve().parent.parent
FORBID_SHOP = """\
actions:
  - action: "*"
    match: {namespace: shop}
    effect: forbid
    reason: shop is changed by its own team only
  - action: kubernetes.rollback
"""
TWO_APPROVERS = """\
actions:
  - action: kubernetes.rollback
    approvals: 2
    approvers: {users: [UALICE, UBOB], groups: ["@sre"]}
"""


def _policy_dir(tmp_path: Path, policy: str) -> Path:
    """A policy file and the shipped runbooks (high-error-rate proposes a rollback)."""
    directory = tmp_path / "policy"
    shutil.copytree(ROOT / "policies" / "runbooks", directory / "runbooks")
    (directory / "policy.yaml").write_text(policy)
    return directory


def _settings(redis_url: str, sandbox: RunningSandbox, directory: Path) -> Settings:
    return Settings(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=directory,
        INCIDENT_BOT_VERIFY_INTERVAL=0.05,
    )


def _decision(run: Run, user: str, groups: Sequence[str] = ()) -> Decision:
    assert run.proposal is not None
    return Decision(
        run_id=run.id, proposal_id=run.proposal.id, user=user, verdict="approve", groups=[*groups]
    )


async def _forge(deps: Deps, run: Run, status: RunStatus) -> Run:
    """Write the run in `status` behind the bot's back (a bug, a hand edit, an attacker)."""
    await deps.store.acquire_lease(run.id, "forger", 30)
    forged = await deps.store.checkpoint(run.model_copy(update={"status": status}), owner="forger")
    await deps.store.release_lease(run.id, "forger")
    return forged


async def test_a_forbidden_proposal_is_never_offered_and_forged_approvals_execute_nothing(
    redis_url: str,
    sandbox: RunningSandbox,
    tmp_path: Path,
    sandbox_state: Callable[[], Awaitable[Any]],
) -> None:
    seen: list[RunStatus] = []

    async def channel(run: Run, steps: Sequence[Step]) -> None:
        seen.append(run.status)  # what any channel (Slack, terminal) is shown

    settings = _settings(redis_url, sandbox, _policy_dir(tmp_path, FORBID_SHOP))
    async with open_deps(settings) as deps:
        run = await start_run(deps, alert(severity="critical"))
        done = await deps.driver(channel).drive(run.id)
        assert done.status is RunStatus.NEEDS_ATTENTION
        assert done.proposal is not None and done.proposal.action == "kubernetes.rollback"
        assert done.outcome == (
            "kubernetes.rollback on deployment shop/checkout was not offered for approval: "
            "forbidden: shop is changed by its own team only"
        )
        assert RunStatus.AWAITING_APPROVAL not in seen  # so no Approve button, anywhere
        with pytest.raises(ProposalError, match="not awaiting approval"):
            await record_decision(deps, _decision(done, "UALICE"))

        # Forged: the run put back to awaiting approval, an approval written straight to Redis.
        forged = await _forge(deps, done, RunStatus.AWAITING_APPROVAL)
        assert await deps.store.record_decision(_decision(forged, "UALICE"))
        after = await deps.driver().drive(run.id)
        assert after.status is RunStatus.NEEDS_ATTENTION
        assert after.outcome.startswith("kubernetes.rollback was not executed: forbidden")

        # Forged straight to executing: the executor asks the policy again.
        await _forge(deps, after, RunStatus.EXECUTING)
        last = await deps.driver().drive(run.id)
        assert last.status is RunStatus.NEEDS_ATTENTION
        assert last.outcome.startswith("kubernetes.rollback was not executed: forbidden")
        assert await deps.store.action_record(run.id, done.proposal.id) is None
        events = [e.event for e in await deps.store.read_audit(run.id)]
    assert "action_started" not in events
    assert events.count("proposal_forbidden") == 2 and "action_refused" in events
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 0


async def test_only_the_named_approvers_count_and_two_are_needed(
    redis_url: str,
    sandbox: RunningSandbox,
    tmp_path: Path,
    sandbox_state: Callable[[], Awaitable[Any]],
) -> None:
    settings = _settings(redis_url, sandbox, _policy_dir(tmp_path, TWO_APPROVERS))
    async with open_deps(settings) as deps:
        run = await start_run(deps, alert(severity="critical"))
        run = await deps.driver().drive(run.id)
        assert run.status is RunStatus.AWAITING_APPROVAL
        with pytest.raises(ProposalError, match=r"UMALLORY may not decide on kubernetes\.rollback"):
            await record_decision(deps, _decision(run, "UMALLORY"))
        # A decision that bypassed the check (forged into Redis) does not count either.
        await deps.store.record_decision(_decision(run, "UMALLORY"))
        assert await record_decision(deps, _decision(run, "UALICE"))
        assert (await deps.driver().drive(run.id)).status is RunStatus.AWAITING_APPROVAL
        assert await record_decision(deps, _decision(run, "UCAROL", groups=["sre"]))
        done = await deps.driver().drive(run.id)
    assert done.status is RunStatus.RESOLVED, done.outcome
    assert (await sandbox_state())["deployments"]["shop/checkout"]["patches"] == 1


async def test_the_terminal_shows_no_approval_for_a_forbidden_proposal(
    redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    env = bot_env(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        KUBERNETES_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=str(_policy_dir(tmp_path, FORBID_SHOP)),
    )
    alert_file = tmp_path / "alert.json"
    shutil.copy(ROOT / "tests/fixtures/alertmanager/firing-single.json", alert_file)
    code, out, err = await run_bot("triage", str(alert_file), env=env, cwd=tmp_path)
    assert code == 2, err
    assert "[needs_attention]" in out and "[awaiting_approval]" not in out
    assert "was not offered for approval: forbidden" in out
    assert "runs approve" not in out and "Proposed action" not in out


async def test_policy_check_and_explain_from_the_command_line(tmp_path: Path) -> None:
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "policy.yaml").write_text(
        "actions:\n"
        "  - action: kubernetes.rollback\n"
        "    approvals: two\n"
        "  - action: kubernetes.restrat\n"
        "freezes:\n"
        "  - name: friday\n"
        "    weekly: {days: [fri], start: '16:00', end: '23:00'}\n"
        "    override_aprovals: 2\n"
    )
    code, out, err = await run_bot("policy", "check", str(directory), env=bot_env(), cwd=tmp_path)
    assert code == 1
    policy_file = directory / "policy.yaml"
    assert out.splitlines() == [
        f"{policy_file}:3: actions[0].approvals: Input should be a valid integer, "
        "unable to parse string as an integer (got 'two')",
        f"{policy_file}:4: actions[1].action: unknown action 'kubernetes.restrat'; known: "
        "alertmanager.silence, kubernetes.restart, kubernetes.rollback, kubernetes.scale, "
        "webhook.call (got 'kubernetes.restrat')",
        f"{policy_file}:8: freezes[0].override_aprovals: Extra inputs are not permitted",
    ]
    assert "3 problem(s)" in err

    good = _policy_dir(tmp_path, TWO_APPROVERS)
    code, out, _ = await run_bot("policy", "check", str(good), env=bot_env(), cwd=tmp_path)
    runbooks = len(list((good / "runbooks").glob("*.yaml")))
    assert code == 0 and "ok (policy.yaml): 1 action rule(s)" in out
    assert f"{runbooks} runbook(s)" in out
    code, out, _ = await run_bot(
        "policy",
        "explain",
        "kubernetes.rollback",
        "--labels",
        "namespace=shop",
        "severity=critical",
        "--at",
        "2026-11-27T10:00:00+00:00",
        env=bot_env(INCIDENT_BOT_POLICY_DIR=str(good)),
        cwd=tmp_path,
    )
    assert code == 0
    assert out.splitlines() == [
        "kubernetes.rollback for namespace=shop severity=critical at 2026-11-27 10:00 UTC",
        "  target:    not given (--args JSON); taken to be in the alert's namespace",
        f"  rule:      actions[0] allow kubernetes.rollback ({good / 'policy.yaml'}:2)",
        "  allowed:   yes",
        "  approvals: 2 from users UALICE, UBOB or groups sre",
        "  freeze:    none in force",
        "  timeout:   3600s without a decision -> expired",
        "  why:       needs 2 approval(s) from users UALICE, UBOB or groups @sre",
    ]
