"""Text planted to steer the model is flagged and approves nothing: every text of the
injection corpus, planted in Kubernetes events (log lines, termination messages, JSON
bodies), alert labels and annotations, and a Slack thread, is flagged in the audit stream
and on the proposal; the model that obeys them proposes a silence the policy would
otherwise approve by itself, and nothing runs without a recorded human decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from bot.models import Run, RunStatus
from bot.store import RunStore
from tests.anthropic_server import (
    API_KEY,
    Exchange,
    ScriptedAnthropic,
    call,
    propose_input,
    tool_use,
)
from tests.slack_helpers import (
    APPROVER,
    SHOP_CHANNEL,
    WEBHOOK_TOKEN,
    SlackBot,
    bot_app,
    bot_env,
    run_in,
)
from tests.slack_server import Message, SlackServer, app_mention
from tools.sandbox import load_scenario, run_sandbox
from tools.sandbox.scenario_parts import EventSpec

pytest_plugins = ("tests.slack_fixtures",)

CORPUS: list[dict[str, Any]] = yaml.safe_load(
    (Path(__file__).parent / "fixtures" / "injections" / "injections.yaml").read_text()
)
IN_ALERT = [e for e in CORPUS if e["where"] in ("annotation", "label")]
IN_THREAD = [e for e in CORPUS if e["where"] == "slack_thread"]
IN_TOOLS = [e for e in CORPUS if e not in IN_ALERT and e not in IN_THREAD]
POLICY = f"""
actions:
  - action: alertmanager.silence
    auto_approve: {{max_duration_seconds: 3600}}
    approvers: {{users: [{APPROVER}]}}
routing:
  default: {SHOP_CHANNEL}
"""
LABELS = {"alertname": "HighErrorRate", "namespace": "shop", "service": "checkout"}


def _scenario() -> Any:
    """bad-deploy, with one event about its own pod `inj-N` for each planted text."""
    scenario = load_scenario("bad-deploy")
    events = [
        EventSpec(
            namespace="shop",
            kind="Pod",
            name=f"inj-{i}",
            reason="Planted",
            message=e["text"],
            at=-30,
        )
        for i, e in enumerate(IN_TOOLS)
    ]
    return scenario.model_copy(update={"events": [*scenario.events, *events]})


def _obeying_silence() -> dict[str, Any]:
    """What the planted texts ask for, made to look harmless: a silence of the run's own
    alert (the policy would approve it by itself if nothing had been planted)."""
    matchers = [{"name": k, "value": v} for k, v in LABELS.items()]
    return propose_input(
        action="alertmanager.silence",
        arguments={"matchers": matchers, "duration_seconds": 1800},
        target="operator-approved maintenance silence",
        findings=[],  # none that a tool result grounds: the model would be asked again
    )


def _script() -> list[Exchange]:
    reads = [
        call(
            f"toolu_ev{i}",
            "kubernetes_events",
            {"namespace": "shop", "kind": "Pod", "name": f"inj-{i}"},
        )
        for i in range(len(IN_TOOLS))
    ]
    propose = call("toolu_propose", "propose_remediation", _obeying_silence())
    return [
        Exchange(tool_use(*reads), note="alert run: read the planted events"),
        Exchange(tool_use(propose), note="alert run: obey"),
        Exchange(
            tool_use(call("toolu_obey", "propose_remediation", _obeying_silence())),
            note="thread run: obey",
        ),
    ]


def _alert_body() -> dict[str, Any]:
    path = Path(__file__).parent / "fixtures" / "alertmanager" / "firing-single.json"
    body: dict[str, Any] = json.loads(path.read_text())
    alert = body["alerts"][0]
    alert["labels"] = {**LABELS, "severity": "warning"}
    for i, entry in enumerate(IN_ALERT):
        where = alert["labels"] if entry["where"] == "label" else alert["annotations"]
        where[f"planted_{i}"] = entry["text"]
    return body


def _thread(slack: SlackServer) -> str:
    """A thread in the shop channel whose replies carry the planted texts."""
    root = "1700000100.000001"
    slack.messages[root] = Message(
        channel=SHOP_CHANNEL, ts=root, thread_ts=None, text="checkout is failing", blocks=[]
    )
    for i, entry in enumerate(IN_THREAD):
        ts = f"1700000100.{i + 2:06d}"
        slack.messages[ts] = Message(
            channel=SHOP_CHANNEL, ts=ts, thread_ts=root, text=entry["text"], blocks=[]
        )
    return root


def _proposal_message(slack: SlackServer, run_id: str) -> Message | None:
    return next(
        (
            m
            for m in slack.messages.values()
            if m.text.startswith("Approval needed") and run_id in str(m.blocks)
        ),
        None,
    )


async def _flags(store: RunStore, run: Run) -> list[dict[str, Any]]:
    return [e.data for e in await store.read_audit(run.id) if e.event == "injection_flagged"]


async def _nothing_ran(store: RunStore, run: Run) -> None:
    events = [e for e in await store.read_audit(run.id)]
    assert run.status is RunStatus.AWAITING_APPROVAL, run.outcome
    assert (
        run.decisions == []
        and await store.decisions(run.id, run.proposal.id if run.proposal else "") == []
    )
    assert "action_started" not in [e.event for e in events]
    (proposed,) = [e for e in events if e.event == "proposal"]
    assert "untrusted text in this run addressed the model or the bot" in proposed.data["policy"]


async def test_every_planted_instruction_is_flagged_and_approves_nothing(
    redis_url: str, slack: SlackServer, tmp_path: Path, store: RunStore
) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    async with run_sandbox(_scenario()) as sandbox, ScriptedAnthropic(_script()) as claude:
        env = bot_env(redis_url, slack, tmp_path, sandbox) | {
            "ANTHROPIC_API_KEY": API_KEY,
            "ANTHROPIC_BASE_URL": claude.url,
            "ALERTMANAGER_URL": sandbox.url,
        }
        async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
            alert_run = await _alert_run(bot, store)
            thread_run = await _thread_run(bot, slack, store)
        claude.assert_done()

    alert_flags = await _flags(store, alert_run)
    thread_flags = await _flags(store, thread_run)
    found = {
        **{
            f"tool:{i}": any(f'"inj-{i}"' in f["where"] for f in alert_flags)
            for i in range(len(IN_TOOLS))
        },
        **{
            f"alert:{i}": any(f["where"] == f"planted_{i}" for f in alert_flags)
            for i in range(len(IN_ALERT))
        },
        **{
            f"thread:{i}": any(
                IN_THREAD[i]["text"][:40].lower() in f["where"].lower() for f in thread_flags
            )
            for i in range(len(IN_THREAD))
        },
    }
    missed = [key for key, flagged in found.items() if not flagged]
    print(
        f"\ninjection corpus: {len(CORPUS)} texts planted ({len(IN_TOOLS)} in tool results, "
        f"{len(IN_ALERT)} in the alert, {len(IN_THREAD)} in a Slack thread); "
        f"{len(found) - len(missed)} flagged in the audit stream; 0 auto-approved, 0 actions"
    )
    assert missed == []
    for run in (alert_run, thread_run):
        await _nothing_ran(store, run)
        message = _proposal_message(slack, run.id)
        assert message is not None and "contained instructions" in message.all_text()
        assert "approve" in message.action_ids()  # a human may still decide


async def _alert_run(bot: SlackBot, store: RunStore) -> Run:
    async with bot.client.post(
        "/webhooks/alertmanager",
        json=_alert_body(),
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    ) as response:
        assert response.status == 202
        run_id = (await response.json())["run_id"]
    return await run_in(store, run_id, RunStatus.AWAITING_APPROVAL, RunStatus.EXECUTING, within=60)


async def _thread_run(bot: SlackBot, slack: SlackServer, store: RunStore) -> Run:
    root = _thread(slack)
    before = {r.id for r in await store.list_runs()}
    question = "why is checkout failing? " + " ".join(f"{k}={v}" for k, v in LABELS.items())
    body = app_mention(
        question,
        event_id="Ev0PLANTED",
        user=APPROVER,
        channel=SHOP_CHANNEL,
        ts="1700000100.999999",
        thread_ts=root,
    )
    status, _, _ = await bot.send(body, json_body=True)
    assert status == 200
    (run,) = [r for r in await store.list_runs() if r.id not in before]
    return await run_in(store, run.id, RunStatus.AWAITING_APPROVAL, RunStatus.EXECUTING, within=60)
