"""The post-incident report: `runs report` (Markdown and JSON) of a run driven through the
scripted model, the sandbox and an approval; `runs show` with times; the report uploaded
once into the run's Slack thread; the per-run histograms, observed once per run."""

from __future__ import annotations

import json
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

from bot.models import Run, RunStatus, ToolCallPart, ToolResultPart
from bot.report_markdown import duration
from bot.runs import start_run
from bot.slack.refs import MessageRefs
from bot.slack.report_file import post_report
from bot.store import RunStore
from tests.anthropic_server import rollback_script
from tests.processes import bot_env, run_bot
from tests.slack_files import File
from tests.slack_helpers import (
    APPROVER,
    POLICY,
    SHOP_CHANNEL,
    bot_app,
    proposed,
    run_in,
)
from tests.slack_helpers import bot_env as slack_env
from tests.slack_server import SlackServer
from tests.test_investigation_model import ALERT, Harness, harness
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

RUNBOOKS = Path(__file__).resolve().parent.parent / "policies" / "runbooks"
ONCALL = "S0ONCALL1"
APPROVED_BY = "U024BE7LH"  # the user `Harness.approve` records
# The stages of an approved, executed and verified run, in the order they happen.
STAGES = ["alert", "model", "tool", "findings", "proposal", "decision", "action", "verification"]


async def resolved_run(h: Harness) -> Run:
    """The scripted investigation, approved: rolled back and verified."""
    waiting = await h.investigate()
    assert waiting.status is RunStatus.AWAITING_APPROVAL
    done = await h.approve(waiting)
    assert done.status is RunStatus.RESOLVED, done.outcome
    return done


async def expected_tool_titles(store: RunStore, run: Run) -> list[str]:
    """What each tool call should read as: its tool's summary, else tool and status."""
    steps = await store.transcript(run.id)
    names = {p.id: p.name for s in steps for p in s.content if isinstance(p, ToolCallPart)}
    titles = []
    for step in steps:
        for part in step.content:
            if isinstance(part, ToolResultPart):
                status = json.loads(part.content).get("status")
                titles.append(part.summary or f"{names[part.tool_use_id]}: {status}")
    return titles


def first_positions(stages: list[str]) -> list[int]:
    return [stages.index(stage) for stage in STAGES]


async def test_runs_report_tells_every_stage_in_order_with_cost_and_approver(
    redis_url: str, tmp_path: Path
) -> None:
    async with harness(redis_url, rollback_script()) as h:
        run = await resolved_run(h)
        tool_titles = await expected_tool_titles(h.deps.store, run)
    env = bot_env(REDIS_URL=redis_url)

    code, out, err = await run_bot(
        "runs", "report", run.id, "--format", "json", env=env, cwd=tmp_path
    )
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    timeline = report["timeline"]
    stages = [e["stage"] for e in timeline]
    times = [datetime.fromisoformat(e["at"]) for e in timeline]
    assert times == sorted(times), "the timeline is in time order"
    assert first_positions(stages) == sorted(first_positions(stages)), stages
    assert stages[-1] == "end" and timeline[-1]["title"].startswith("Resolved")
    assert [e["offset_seconds"] for e in timeline] == sorted(e["offset_seconds"] for e in timeline)
    assert [e["title"] for e in timeline if e["stage"] == "tool"] == tool_titles
    assert all(e["detail"].startswith(("prometheus_query {", "kubernetes_rollout_history {"))
               for e in timeline if e["stage"] == "tool")  # fmt: skip
    model_calls = [e for e in timeline if e["stage"] == "model"]
    assert len(model_calls) == run.api_calls >= 2  # the investigation's two, and any other
    assert all(e["seconds"] is not None for e in model_calls)

    header = report["header"]
    assert header["status"] == "resolved"
    assert header["service"] == "checkout" and header["namespace"] == "shop"
    started, ended = (
        datetime.fromisoformat(header["started"]),
        datetime.fromisoformat(header["ended"]),
    )
    assert header["to_end_seconds"] == pytest.approx((ended - started).total_seconds())
    assert (
        0
        <= header["to_proposal_seconds"]
        <= header["to_action_seconds"]
        <= header["to_end_seconds"]
    )
    assert report["cost"]["total_tokens"] == run.usage.total > 0
    assert report["cost"]["dollars"] == pytest.approx(run.cost_dollars) and run.cost_dollars > 0
    assert report["cost"]["tool_calls"] == 2
    assert [d["user"] for d in report["decisions"]] == [APPROVED_BY]
    assert report["action"]["action"] == "kubernetes.rollback"
    assert report["action"]["state"] == "succeeded"
    assert report["verification"].startswith("Verified: ")
    assert report["proposal"]["verify"]["threshold"] == 0.05
    assert report["thread"] is None  # never posted to Slack

    code, markdown, err = await run_bot("runs", "report", run.id, env=env, cwd=tmp_path)
    assert code == 0, err
    assert markdown.startswith(f"# Incident report: {ALERT.title}")
    for expected in (
        "## Timeline",
        "## Findings",
        "## Proposal",
        f"Approved by {APPROVED_BY} via cli",
        "`kubernetes.rollback`: **succeeded**",
        "Verified: ",
        "## Cost and tokens",
        f"${run.cost_dollars:.4f}",
        f"{run.usage.total:,} tokens",
        "Time to resolve",
        "## Tool calls (raw)",
        *tool_titles,
    ):
        assert expected in markdown, f"{expected!r} missing from:\n{markdown}"
    rows = re.findall(r"^\| (\d\d:\d\d:\d\d) \| [+-]", markdown, flags=re.MULTILINE)
    assert len(rows) == len(timeline) and rows == sorted(rows)


async def test_runs_show_prints_times_and_offsets_not_stream_ids(
    redis_url: str, tmp_path: Path
) -> None:
    async with harness(redis_url, rollback_script()) as h:
        run = await resolved_run(h)
        audit = await h.deps.store.read_audit(run.id)
    code, out, err = await run_bot(
        "runs", "show", run.id, env=bot_env(REDIS_URL=redis_url), cwd=tmp_path
    )
    assert code == 0, err
    lines = out.split("audit (UTC, since the start):\n", 1)[1].splitlines()
    assert len(lines) == len(audit)
    for line, event in zip(lines, audit, strict=True):
        assert event.id not in line
        assert re.match(rf"^    {event.at:%H:%M:%S}\.\d{{3}} +[+-][\d.]+ (ms|s|min) ", line), line
        assert f"  {event.event}  " in line
    assert not re.search(r"\b\d{13}-\d+\b", out), "no audit stream ids"


async def test_report_of_an_unknown_run_is_a_clear_error(redis_url: str, tmp_path: Path) -> None:
    code, out, err = await run_bot(
        "runs", "report", "run-missing", env=bot_env(REDIS_URL=redis_url), cwd=tmp_path
    )
    assert code == 1
    assert "no run 'run-missing'" in err
    assert "Traceback" not in err + out


def sample(h: Harness, name: str, **labels: str) -> float:
    value = h.deps.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def test_per_run_histograms_are_observed_once_when_a_run_ends(redis_url: str) -> None:
    async with harness(redis_url, rollback_script()) as h:
        run = await resolved_run(h)
        resolved = {"status": "resolved"}
        assert sample(h, "incident_bot_run_tool_calls_count", **resolved) == 1
        assert sample(h, "incident_bot_run_tool_calls_sum", **resolved) == run.tool_calls == 2
        assert sample(h, "incident_bot_run_model_calls_sum", **resolved) == run.api_calls >= 2
        assert sample(h, "incident_bot_run_cost_dollars_sum", **resolved) == pytest.approx(
            run.cost_dollars
        )
        lasted = (run.updated_at - run.created_at).total_seconds()
        assert sample(h, "incident_bot_run_duration_seconds_sum", **resolved) == pytest.approx(
            lasted
        )
        assert sample(h, "incident_bot_runs_ended_total", escalated="false") == 1
        assert sample(h, "incident_bot_runs_finished_total", outcome="resolved") == 1

        # Written terminal again (a repair, a redraw): not a second end.
        checkpoints = h.deps.driver().checkpoints
        await h.deps.store.acquire_lease(run.id, h.deps.owner, 30)
        await checkpoints.write(await h.deps.store.load(run.id))
        assert sample(h, "incident_bot_run_tool_calls_count", **resolved) == 1
        assert sample(h, "incident_bot_runs_ended_total", escalated="false") == 1
        assert sample(h, "incident_bot_runs_finished_total", outcome="resolved") == 1

        # A run that ends needing a person counts as escalated.
        other = await start_run(h.deps, ALERT)
        await h.deps.store.acquire_lease(other.id, h.deps.owner, 30)
        await checkpoints.write(other.model_copy(update={"status": RunStatus.NEEDS_ATTENTION}))
        assert sample(h, "incident_bot_runs_ended_total", escalated="true") == 1
        assert sample(h, "incident_bot_run_tool_calls_count", status="needs_attention") == 1
        assert sample(h, "incident_bot_run_tool_calls_sum", status="needs_attention") == 0


async def test_the_report_is_uploaded_once_into_the_thread_when_the_run_ends(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
) -> None:
    env = slack_env(redis_url, slack, policy_dir, sandbox)
    async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
        run_id, proposal = await proposed(bot, slack, store)
        assert reports_in(slack, proposal.thread_ts or "") == []  # not before the run ends
        await bot.click(slack, proposal, "approve", user=APPROVER)
        run = await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        [root] = slack.roots(SHOP_CHANNEL)
        [file] = await slack.until(lambda: reports_in(slack, root.ts) or None)

        # Another replica that shows the ended run again uploads nothing more.
        async with bot_app(env) as other:
            assert other.deps.slack is not None
            client = redis.from_url(redis_url, decode_responses=True)
            refs = MessageRefs(client, prefix="incident-bot:", retention_seconds=3600)
            await post_report(other.deps, refs, other.deps.slack, run)
            await client.aclose()
    assert reports_in(slack, root.ts) == [file]

    assert file.filename == f"incident-{run_id}.md"
    assert file.channel == SHOP_CHANNEL and file.thread_ts == root.ts
    assert file.data is not None
    text = file.data.decode()
    assert text.startswith("# Incident report: ")
    assert f"Approved by {APPROVER} via slack" in text
    assert "Resolved" in text and "Verified: " in text
    permalink = f"https://test.slack.com/archives/{SHOP_CHANNEL}/p{root.ts.replace('.', '')}"
    assert f"| Slack thread | {permalink} |" in text
    assert f"incident-bot runs report {run_id}" in file.initial_comment


async def test_an_expired_run_reports_its_expiry_and_whom_it_paged(
    redis_url: str, slack: SlackServer, sandbox: RunningSandbox, store: RunStore, tmp_path: Path
) -> None:
    policy = tmp_path / "escalating-policy"
    policy.mkdir()
    routing = f"routing:\n  default_escalate: {ONCALL}\n"
    (policy / "policy.yaml").write_text(POLICY.replace("routing:\n", routing))
    shutil.copytree(RUNBOOKS, policy / "runbooks")
    env = slack_env(redis_url, slack, policy, sandbox)
    # No time to decide: the drive that makes the proposal finds it past its timeout.
    async with bot_app(env, INCIDENT_BOT_WORKERS="1", INCIDENT_BOT_APPROVAL_TIMEOUT="0") as bot:
        run_id = (await bot.alert())["run_id"]
        await run_in(store, run_id, RunStatus.EXPIRED)
        [root] = slack.roots(SHOP_CHANNEL)
        [file] = await slack.until(lambda: reports_in(slack, root.ts) or None)
    assert file.data is not None
    text = file.data.decode()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " | +" in line]
    stages = [row.split(" | ")[2] for row in rows]
    assert stages.index("proposal") < stages.index("end")
    assert "escalation" in stages and "decision" not in stages
    assert f"Paged {ONCALL}" in text and "## Escalation" in text
    assert "Expired: no decision within 0s" in text
    assert "Time to end" in text and "Time to decision" not in text


def reports_in(slack: SlackServer, thread_ts: str) -> list[File]:
    """The Markdown files uploaded into the thread (charts are PNG files)."""
    return [f for f in slack.files(thread_ts) if f.filename.endswith(".md")]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.85, "850 ms"), (4.24, "4.2 s"), (14, "14 s"), (134, "2 min 14 s"), (120, "2 min"),
     (3780, "1 h 3 min"), (187_200, "2 d 4 h"), (-62, "-1 min 2 s")],
)  # fmt: skip
def test_durations_read_as_people_say_them(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown
