"""Incident memory: a finished run leaves a record; a later run of the same alert reads it
in its first request, its Slack thread lists it under "Similar past incidents" with a
link to the earlier thread, and `incident-bot runs similar` prints it. Records expire
with the retention, pass the redactor, and rank same alert and service first.

Real parts throughout: Redis, the bot's aiohttp app with its worker, the local Slack,
the scripted Messages API, the bad-deploy sandbox.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from bot.fencing import CLOSE
from bot.guidance import MEMORY_INTRO
from bot.memory import IncidentMemory
from bot.metrics import Metrics
from bot.models import Finding, Run, RunStatus, utcnow
from bot.slack.refs import MessageRefs
from bot.store import RunStore
from tests import factories, processes
from tests.anthropic_server import API_KEY, ScriptedAnthropic, rollback_script
from tests.slack_helpers import (
    APPROVER,
    SHOP_CHANNEL,
    bot_app,
    bot_env,
    proposal_in,
    run_in,
)
from tests.slack_server import SlackServer
from tests.test_guidance import first_user_texts
from tests.test_investigation_model import MODEL, conclude
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

PREFIX = "incident-bot:"


def memory_of(store: RunStore, retention_seconds: int = 3600) -> IncidentMemory:
    """The memory the bot writes (default prefix), with its own metrics."""
    return IncidentMemory(
        store.redis, prefix=PREFIX, retention_seconds=retention_seconds, metrics=Metrics()
    )


def ended(minutes_ago: float, **labels: str) -> Run:
    """A resolved run of `factories.alert(**labels)` that ended `minutes_ago`."""
    return factories.run(**labels).model_copy(
        update={
            "status": RunStatus.RESOLVED,
            "updated_at": utcnow() - timedelta(minutes=minutes_ago),
            "summary": f"ended {minutes_ago} minutes ago",
        }
    )


async def test_a_second_run_of_a_resolved_alert_carries_the_first_runs_record(
    redis_url: str,
    slack: SlackServer,
    policy_dir: Path,
    sandbox: RunningSandbox,
    store: RunStore,
    tmp_path: Path,
) -> None:
    refs = MessageRefs(store.redis, prefix=PREFIX, retention_seconds=3600)
    async with ScriptedAnthropic([*rollback_script(), conclude()]) as claude:
        env = bot_env(redis_url, slack, policy_dir, sandbox) | {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "INCIDENT_BOT_MODEL": MODEL,
        }
        async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
            first = (await bot.alert())["run_id"]
            proposal = await slack.until(lambda: proposal_in(slack))
            await run_in(store, first, RunStatus.AWAITING_APPROVAL)
            assert (await bot.click(slack, proposal, "approve", user=APPROVER))[0] == 200
            await run_in(store, first, RunStatus.RESOLVED, within=60)
            memory = bot.deps.memory
            await processes.eventually(lambda: store.redis.get(memory.record_key(first)))

            # The group resolves, then fires again: a new run of the same alert.
            assert (await bot.alert("resolved-single.json"))["outcome"] == "resolved"
            again = await bot.alert()
            second = again["run_id"]
            assert again["outcome"] == "started" and second != first
            await run_in(store, second, RunStatus.CONCLUDED)
            thread = (await refs.load(second))["thread_ts"]
            [note] = await slack.until(
                lambda: [m for m in slack.thread(thread) if m.text.startswith("Similar")]
            )

    # Its first request carries the first run's record, fenced as untrusted data.
    first_thread = (await refs.load(first))["thread_ts"]
    texts = first_user_texts(claude.requests[2])
    assert MEMORY_INTRO in texts
    [record] = [t for t in texts if t.startswith('<untrusted source="memory">')]
    assert f"Run {first} (resolved)" in record
    assert "Action: kubernetes.rollback on deployment shop/checkout" in record
    assert f"approved by {APPROVER}" in record
    assert "checkout v2.4.0 fails 12% of requests" in record
    assert record.endswith(CLOSE)

    # Its thread lists it, with a link to the first run's thread; the first run had none.
    shown = note.all_text()
    assert "Similar past incidents" in shown and first in shown and "Resolved" in shown
    link = f"https://test.slack.com/archives/{SHOP_CHANNEL}/p{first_thread.replace('.', '')}"
    assert f"<{link}|thread>" in shown
    assert "kubernetes.rollback" in shown
    assert not [m for m in slack.thread(first_thread) if m.text.startswith("Similar")]

    # And `runs similar` prints it, in text and in JSON.
    env = processes.bot_env(REDIS_URL=redis_url)
    code, out, err = await processes.run_bot("runs", "similar", second, env=env, cwd=tmp_path)
    assert code == 0, err
    assert out.startswith(f"{first}  resolved")
    assert "action: kubernetes.rollback on deployment shop/checkout" in out
    code, out, err = await processes.run_bot(
        "runs", "similar", second, "--json", env=env, cwd=tmp_path
    )
    assert code == 0, err
    [listed] = json.loads(out)
    assert (listed["run_id"], listed["status"]) == (first, "resolved")
    assert (listed["channel"], listed["thread_ts"]) == (SHOP_CHANNEL, first_thread)
    assert listed["approved_by"] == [APPROVER]


async def test_records_expire_with_the_retention_and_are_redacted(store: RunStore) -> None:
    memory = memory_of(store, retention_seconds=600)
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    run = ended(1).model_copy(
        update={"findings": [Finding(summary=f"the config holds the token {token}")]}
    )
    await memory.remember(run)

    raw = await store.redis.get(memory.record_key(run.id))
    assert raw is not None and token not in raw
    assert "the config holds the token [REDACTED:github_token]" in raw
    for key in (
        memory.record_key(run.id),
        memory.index_key("alertname", "HighErrorRate"),
        memory.index_key("service", "checkout"),
    ):
        assert 590 <= await store.redis.ttl(key) <= 600, key

    # A run that ended before the retention window is trimmed from the indexes at once.
    stale = ended(11)
    await memory.remember(stale)
    listed = await memory.similar(factories.run())
    assert [r.run_id for r in listed] == [run.id]


async def test_redactions_in_records_are_counted(store: RunStore) -> None:
    metrics = Metrics()
    memory = IncidentMemory(store.redis, prefix=PREFIX, retention_seconds=600, metrics=metrics)
    await memory.remember(ended(1).model_copy(update={"outcome": "password=hunter2x9 leaked"}))
    counted = metrics.registry.get_sample_value(
        "incident_bot_redactions_total", {"kind": "password", "where": "memory"}
    )
    assert counted == 1.0


async def test_similar_ranks_same_alert_and_service_first_then_same_service(
    store: RunStore,
) -> None:
    memory = memory_of(store)
    older_same = ended(30)
    newer_same = ended(20)
    other_alert = ended(5, alertname="HighLatency")  # the newest, but another alert
    other_service = ended(1, service="payments")  # the same alert on another service
    current = ended(0)
    for run in (older_same, newer_same, other_alert, other_service, current):
        await memory.remember(run)

    ranked = [r.run_id for r in await memory.similar(current)]
    assert ranked == [newer_same.id, older_same.id, other_alert.id]
    assert [r.run_id for r in await memory.similar(current, limit=2)] == ranked[:2]
    for_latency = await memory.similar(factories.run(alertname="HighLatency"))
    assert [r.run_id for r in for_latency] == [other_alert.id, current.id, newer_same.id]

    # Writing a record again leaves one record and one index entry per run.
    await memory.remember(newer_same)
    assert await store.redis.zcard(memory.index_key("service", "checkout")) == 4
    assert [r.run_id for r in await memory.similar(current)] == ranked
