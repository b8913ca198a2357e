"""`incident-bot runs replay`: a recorded run replayed by today's code, with no backend.

Each run is recorded for real (the sandbox, the scripted Messages API, real Redis); the
replay then runs (as its own process, or the command's handler in this one) with every
backend and the model configured, and the sandbox's and the scripted server's request
logs show that none of them was asked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as redis

from bot.cli_replay import runs_replay
from bot.dedup import AlertGroups
from bot.demo import demo_alert
from bot.deps import TOOLSETS, Deps, open_deps
from bot.models import Alert, Decision, Run, RunStatus, Step, ToolResultPart, utcnow
from bot.runbook import CALL_PREFIX, RunbookPlanner, load_runbooks
from bot.runs import record_decision, start_run
from bot.settings import Settings
from bot.steps import AwaitApproval, Finish, Turn
from tests import factories
from tests.anthropic_server import (
    API_KEY,
    RATIO_QUERY,
    Exchange,
    call,
    hold,
    rollback_script,
    tool_use,
    user_text,
)
from tests.processes import bot_env, run_bot
from tests.test_grounding import alert_with_expression, propose_for, proposing
from tests.test_investigation_model import ALERT, MODEL, conclude, harness
from tools.sandbox import RunningSandbox, load_scenario, run_sandbox
from tools.toolset import index_tools

POLICIES = Path(__file__).resolve().parent.parent / "policies"


@dataclass(frozen=True, kw_only=True)
class Recorded:
    """The deps a run was recorded with, and the sandbox that served it."""

    deps: Deps
    sandbox: RunningSandbox

    async def planner_run(self, *, resolve: bool = False) -> Run:
        """The demo alert investigated by the runbook planner (and, with `resolve`,
        approved and resolved)."""
        run = await start_run(self.deps, demo_alert(self.sandbox.url), trigger="demo")
        run = await self.deps.driver().drive(run.id)
        assert run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None
        if not resolve:
            return run
        decision = Decision(
            run_id=run.id, proposal_id=run.proposal.id, user="U024BE7LH", verdict="approve"
        )
        assert await record_decision(self.deps, decision)
        run = await self.deps.driver().drive(run.id)
        assert run.status is RunStatus.RESOLVED
        return run


@contextlib.asynccontextmanager
async def recording(redis_url: str) -> AsyncIterator[Recorded]:
    """Deps without a model, every backend served by the bad-deploy sandbox."""
    scenario = load_scenario("bad-deploy").model_copy(update={"recovery_seconds": 0.2})
    async with run_sandbox(scenario) as sandbox:
        settings = Settings(
            REDIS_URL=redis_url, INCIDENT_BOT_VERIFY_INTERVAL=0.2, INCIDENT_BOT_VERIFY_TIMEOUT=10
        ).pointed_at_sandbox(sandbox.url)
        async with open_deps(settings) as deps:
            yield Recorded(deps=deps, sandbox=sandbox)


def member(pod: str) -> Alert:
    """An alert of the checkout 5xx group, for one pod."""
    return ALERT.model_copy(
        update={
            "group_key": "group:checkout-5xx",
            "fingerprint": f"fp-{pod}",
            "labels": {**ALERT.labels, "pod": pod},
        }
    )


def backends(sandbox: RunningSandbox) -> dict[str, str]:
    """Every backend pointed at the sandbox: a replay must ask none of them."""
    url = sandbox.url
    return {"PROMETHEUS_URL": url, "KUBERNETES_URL": url, "ALERTMANAGER_URL": url, "LOKI_URL": url}


async def replay(
    capsys: pytest.CaptureFixture[str], run_id: str, *, as_json: bool = False, **env: str
) -> tuple[int, str, str]:
    """`incident-bot runs replay RUN_ID` in this process, with these settings."""
    capsys.readouterr()
    args = argparse.Namespace(run_id=run_id, json=as_json)
    code = await runs_replay(args, Settings(**env))
    out, err = capsys.readouterr()
    return code, out, err


async def scratch_keys(redis_url: str) -> list[bytes]:
    """Keys a replay left behind under its scratch prefix."""
    client = redis.from_url(redis_url)
    try:
        return [key async for key in client.scan_iter(match="incident-bot:replay:*")]
    finally:
        await client.aclose()


def policy_copy(tmp_path: Path, runbook: str, old: str, new: str) -> Path:
    """The shipped policies with one deliberate change to one runbook."""
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(POLICIES / "default.yaml", directory)
    shutil.copytree(POLICIES / "runbooks", directory / "runbooks")
    path = directory / "runbooks" / runbook
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))
    return directory


async def test_a_planner_run_replays_identical_without_a_request(
    redis_url: str, tmp_path: Path
) -> None:
    async with recording(redis_url) as rec:
        run = await rec.planner_run(resolve=True)
        transcript = await rec.deps.store.transcript(run.id)
        asked = len(rec.sandbox.requests.entries)

        # As a user runs it: its own process, with every backend configured.
        env = bot_env(REDIS_URL=redis_url, **backends(rec.sandbox))
        code, out, err = await run_bot("runs", "replay", run.id, env=env, cwd=tmp_path)
        assert code == 0, out + err
        calls = sum(len(s.tool_calls()) for s in transcript)
        assert calls == 5
        assert out.strip() == (
            f"{run.id}: identical: {len(transcript)} steps, {calls} tool calls, same proposal "
            '(kubernetes.rollback {"deployment":"checkout","namespace":"shop","to_revision":1})'
        )
        assert len(rec.sandbox.requests.entries) == asked
        # The record is as it was, and the replay's scratch run is gone.
        assert (await rec.deps.store.load(run.id)).version == run.version
        assert await rec.deps.store.transcript(run.id) == transcript
        assert await scratch_keys(redis_url) == []


async def test_a_model_run_replays_identical_without_asking_the_model(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with harness(redis_url, rollback_script()) as h:
        run = await start_run(h.deps, ALERT)
        run = await h.deps.driver().drive(run.id)
        assert run.status is RunStatus.AWAITING_APPROVAL
        transcript = await h.deps.store.transcript(run.id)
        model_requests = len(h.claude.requests)
        backend_requests = len(h.sandbox.requests.entries)

        code, out, err = await replay(
            capsys,
            run.id,
            as_json=True,
            REDIS_URL=redis_url,
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=h.claude.url,
            INCIDENT_BOT_MODEL=MODEL,
            **backends(h.sandbox),
        )
        assert code == 0, out + err
        shown = json.loads(out)
        assert shown["identical"] is True
        assert shown["divergence"] is None
        assert (shown["steps"], shown["tool_calls"]) == (len(transcript), 2)
        assert shown["ending"].startswith("same proposal (kubernetes.rollback")
        assert len(h.claude.requests) == model_requests
        assert len(h.sandbox.requests.entries) == backend_requests
        assert await scratch_keys(redis_url) == []

        # Today's budget allows one model call: the planner takes over where the record's
        # model went on.
        code, out, err = await replay(
            capsys,
            run.id,
            REDIS_URL=redis_url,
            INCIDENT_BOT_MODEL=MODEL,
            INCIDENT_BOT_MAX_STEPS="1",
        )
        assert code == 1, out + err
        at = [s.index for s in transcript if s.author == "model"][1]
        assert out.startswith(
            f"{run.id}: diverged: step {at}: the record has a model reply (propose_remediation); "
            "today's code has a runbook planner turn calling prometheus_query, "
        ), out
        assert len(h.claude.requests) == model_requests


async def test_alert_updates_come_back_before_the_model_turn_that_saw_them(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    released = asyncio.Event()
    script = [
        Exchange(
            hold(
                tool_use(call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY})), released
            )
        ),
        conclude(expect=[user_text("Alert group update"), user_text("pod=checkout-2")]),
    ]
    async with harness(redis_url, script) as h:
        groups = AlertGroups(h.deps, h.deps.queue)
        started = await groups.admit([member("checkout-1")])
        assert started.run_id is not None
        drive = asyncio.create_task(h.deps.driver().drive(started.run_id))
        await h.claude.received(1)
        # While the model answers its first request, a second pod joins the group.
        await groups.admit([member("checkout-1"), member("checkout-2")])
        released.set()
        run = await drive
        transcript = await h.deps.store.transcript(run.id)
        assert [s.author for s in transcript] == [
            "alert",
            "briefing",
            "model",
            "tools",
            "alert",
            "model",
        ]

        code, out, err = await replay(capsys, run.id, REDIS_URL=redis_url)
        assert code == 0, out + err
        assert f"{run.id}: identical: 6 steps, 1 tool call, same conclusion (concluded)" in out


@pytest.mark.parametrize(
    ("old", "new", "expected", "where"),
    [
        (
            "      minutes: 15\n      limit: 500",
            "      minutes: 30\n      limit: 500",
            "diverged: step 1: different arguments: the record calls logs_query "
            '{"limit":500,"minutes":15,',
            ("arguments", 1),
        ),
        (
            "      show_lines: 5\nfindings:",
            "      show_lines: 5\n  - id: alerts\n    tool: alertmanager.alerts\nfindings:",
            "diverged: step 1: a tool call the record does not have: today's code calls "
            "alertmanager_alerts {}",
            ("tool_call", 1),
        ),
        (
            '{value: steps.error_ratio.data.0.value, op: ">", threshold: 0.05}',
            '{value: steps.error_ratio.data.0.value, op: ">", threshold: 0.5}',
            "diverged: a different turn (record: propose kubernetes.rollback "
            '{"deployment":"checkout","namespace":"shop","to_revision":1}; '
            "today: conclude (concluded))",
            ("turn", None),
        ),
    ],
    ids=["step-arguments", "new-step", "finding-threshold"],
)
async def test_a_changed_runbook_is_reported_where_it_diverges(
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    old: str,
    new: str,
    expected: str,
    where: tuple[str, int | None],
) -> None:
    async with recording(redis_url) as rec:
        run = await rec.planner_run()
        asked = len(rec.sandbox.requests.entries)
        env = {"REDIS_URL": redis_url, **backends(rec.sandbox)}
        code, out, err = await replay(capsys, run.id, **env)
        assert code == 0, out + err  # unchanged, it replays identical

        changed = policy_copy(tmp_path, "high-error-rate.yaml", old, new)
        code, out, err = await replay(capsys, run.id, INCIDENT_BOT_POLICY_DIR=str(changed), **env)
        assert code == 1, out + err
        assert out.startswith(f"{run.id}: {expected}"), out
        code, out, err = await replay(
            capsys, run.id, as_json=True, INCIDENT_BOT_POLICY_DIR=str(changed), **env
        )
        assert code == 1, out + err
        divergence = json.loads(out)["divergence"]
        assert (divergence["kind"], divergence["step"]) == where
        assert divergence["message"].startswith(expected.removeprefix("diverged: "))
        assert len(rec.sandbox.requests.entries) == asked
        assert await scratch_keys(redis_url) == []


async def test_an_unknown_or_unfinished_run_cannot_be_replayed(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = bot_env(REDIS_URL=redis_url)
    code, out, err = await run_bot("runs", "replay", "run-missing", env=env, cwd=tmp_path)
    assert code == 2
    assert "no run 'run-missing'" in err
    assert "Traceback" not in err + out

    async with recording(redis_url) as rec:
        queued = await start_run(rec.deps, demo_alert(rec.sandbox.url), trigger="demo")
    code, out, err = await replay(capsys, queued.id, as_json=True, REDIS_URL=redis_url)
    assert code == 2
    why = f"run {queued.id} cannot be replayed: it is queued and has not been investigated yet"
    assert why in err
    assert json.loads(out) == {"run_id": queued.id, "replayable": False, "error": why}


async def test_a_replay_that_fails_midway_leaves_no_scratch_keys(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with recording(redis_url) as rec:
        run = await rec.planner_run()
        # The deployment step now waits for its own result: the planner gives up on its
        # second turn, after the scratch run has steps.
        broken = policy_copy(
            tmp_path,
            "high-error-rate.yaml",
            'name: "{{ labels.service }}"',
            'name: "{{ steps.deployment.data.name }}"',
        )
        code, out, err = await replay(
            capsys, run.id, REDIS_URL=redis_url, INCIDENT_BOT_POLICY_DIR=str(broken)
        )
    assert code == 2, out + err
    assert "runbook high-error-rate: steps refer to each other in a cycle" in err
    assert await scratch_keys(redis_url) == []


async def test_the_planner_judges_rollout_age_at_its_clock() -> None:
    """A replay judges `age_under_minutes` at the record's time, not at the wall clock."""
    rolled_out = utcnow() - timedelta(days=3)
    results = {
        "error_ratio": {"status": "ok", "data": [{"value": 0.12}]},
        "error_trend": {"status": "ok", "data": {"series": []}},
        "deployment": {"status": "ok", "data": {}},
        "history": {
            "status": "ok",
            "data": [
                {"revision": 2, "created": rolled_out.isoformat(), "images": ["checkout:v2"]},
                {"revision": 1, "images": ["checkout:v1"]},
            ],
        },
        "error_logs": {"status": "ok", "data": {}},
    }
    tools = index_tools(TOOLSETS)

    async def turn_at(now: datetime) -> Turn:
        planner = RunbookPlanner(load_runbooks(), tools, clock=lambda: now)
        subject = factories.run(service="checkout")
        first = await planner.next_turn(subject, [])
        answers = Step(
            index=1,
            role="user",
            author="tools",
            content=[
                ToolResultPart(tool_use_id=f"{CALL_PREFIX}{name}", content=json.dumps(result))
                for name, result in results.items()
            ],
        )
        return (await planner.next_turn(subject, [*first.steps, answers])).turn

    then = await turn_at(rolled_out + timedelta(minutes=30))
    assert isinstance(then, AwaitApproval)
    assert then.proposal.arguments["to_revision"] == 1
    assert isinstance(await turn_at(utcnow()), Finish)


async def test_a_replaced_verification_check_replays_from_the_record(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bot replaced an already-healthy check before offering the proposal: the replay
    answers that from the record (no Prometheus, no warning) and reports identical; a
    record whose note differs from today's verdict is a `verify` divergence."""
    healthy = {"query": RATIO_QUERY, "op": "<", "threshold": 0.5}
    async with harness(redis_url, proposing(healthy)) as h:
        run = await propose_for(h, alert_with_expression(h))
        assert run.proposal is not None and "already healthy" in run.proposal.verify_note
        backend_requests = len(h.sandbox.requests.entries)

        code, out, err = await replay(
            capsys, run.id, REDIS_URL=redis_url, INCIDENT_BOT_MODEL=MODEL, **backends(h.sandbox)
        )
        assert code == 0, out + err
        assert "identical" in out and err == ""
        assert len(h.sandbox.requests.entries) == backend_requests

        # Another recorded note for the same check: today's replay (answering from the
        # audit event) says the check differs.
        changed = run.proposal.model_copy(update={"verify_note": "an older note"})
        stored = await h.deps.store.load(run.id)
        await h.deps.store.redis.hset(
            h.deps.store.run_key(run.id),
            "doc",
            stored.model_copy(update={"proposal": changed}).model_dump_json(),
        )
        code, out, err = await replay(capsys, run.id, REDIS_URL=redis_url, INCIDENT_BOT_MODEL=MODEL)
        assert code == 1, out + err
        assert "a different verification check" in out and "an older note" in out
