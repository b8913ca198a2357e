"""No secret leaves a tool result: runs that meet every secret of the corpus (in Kubernetes
events, pod logs, termination messages, alert labels and annotations, and the model's own
text) leave none of them in any request the local Slack server received, any request the
scripted Messages API received, the bot's log output, or any key or value in Redis."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as redis
import yaml

from bot.logs import configure_logging
from bot.models import RunStatus
from bot.store import RunStore
from tests.anthropic_server import (
    API_KEY,
    Exchange,
    ScriptedAnthropic,
    call,
    propose_input,
    tool_result,
    tool_use,
)
from tests.slack_files import File
from tests.slack_helpers import (
    APPROVER,
    WEBHOOK_TOKEN,
    SlackBot,
    bot_app,
    bot_env,
    proposal_in,
    run_in,
)
from tests.slack_server import Message, SlackServer
from tools.sandbox import load_scenario, run_sandbox
from tools.sandbox.scenario_parts import EventSpec, PodProfile

pytest_plugins = ("tests.slack_fixtures",)

FIXTURES = Path(__file__).parent / "fixtures" / "secrets"
CORPUS: list[dict[str, Any]] = yaml.safe_load((FIXTURES / "secrets.yaml").read_text())
PER_OBJECT = 8  # events per object: each `kubernetes_events` call reads one object's


def _planted(where: set[str]) -> list[dict[str, Any]]:
    return [entry for entry in CORPUS if entry["where"] in where]


IN_ALERT = _planted({"annotation"})
IN_MODEL = _planted({"model_text"})
IN_EVENTS = [e for e in CORPUS if e not in IN_ALERT and e not in IN_MODEL]
IN_LOGS = _planted({"log"})
OBJECTS = [f"leak-{i}" for i in range(0, len(IN_EVENTS), PER_OBJECT)]


def _scenario() -> Any:
    """bad-deploy, with the corpus in events of `leak-*` pods and in the bad pods' logs."""
    scenario = load_scenario("bad-deploy")
    events = [
        EventSpec(
            namespace="shop",
            kind="Pod",
            name=OBJECTS[i // PER_OBJECT],
            type="Warning",
            reason="Leaked",
            message=entry["text"],
            at=-60,
        )
        for i, entry in enumerate(IN_EVENTS)
    ]
    logs = [f"level=error {e['text']}" for e in IN_LOGS]
    pods = dict(scenario.pods)
    bad = "registry.example/checkout:v2.4.0"
    pods[bad] = (pods.get(bad) or PodProfile()).model_copy(
        update={"logs": logs, "log_interval_seconds": 0.5}
    )
    return scenario.model_copy(
        update={"recovery_seconds": 0, "events": [*scenario.events, *events], "pods": pods}
    )


def _alert_body() -> dict[str, Any]:
    path = Path(__file__).parent / "fixtures" / "alertmanager" / "firing-single.json"
    body: dict[str, Any] = json.loads(path.read_text())
    alert = body["alerts"][0]
    alert["labels"]["database"] = IN_EVENTS[0]["text"][:200]
    alert["annotations"] |= {f"note_{i}": e["text"] for i, e in enumerate(IN_ALERT)}
    return body


def _script() -> list[Exchange]:
    """A model that reads every leaking object's events, then repeats secrets itself."""
    calls = [
        call(f"toolu_ev{i}", "kubernetes_events", {"namespace": "shop", "kind": "Pod", "name": n})
        for i, n in enumerate(OBJECTS)
    ]
    prose = "\n".join(e["text"] for e in IN_MODEL)
    findings = [
        {"summary": "what the events show", "evidence": f"kubernetes_events: {e['text']}"}
        for e in IN_MODEL
    ]
    proposal = propose_input(rationale=prose, summary=prose[:2000], findings=findings)
    return [
        Exchange(tool_use(*calls, text="Reading the events of the failing pods."), note="read"),
        Exchange(
            tool_use(call("toolu_propose", "propose_remediation", proposal), text=prose),
            expect=[tool_result("toolu_ev0", contains="[REDACTED:")],
            note="propose",
        ),
    ]


@contextmanager
def _bot_log() -> Iterator[io.StringIO]:
    """Everything the bot logs, at DEBUG, as the JSON lines `serve --log-level debug`
    writes (the root logger's handlers are put back afterwards)."""
    out = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("debug", out)
    try:
        yield out
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a value, and inside any JSON those strings hold: a secret
    cannot hide behind an escaping."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        yield value
        if value[:1] in '{["':
            try:
                yield from _strings(json.loads(value))
            except ValueError:
                pass
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple | set):
        for item in value:
            yield from _strings(item)


async def _everything_in_redis(url: str) -> list[Any]:
    """Every key and every value of every type."""
    client = redis.from_url(url)
    found: list[Any] = []
    try:
        async for key in client.scan_iter(count=500):
            kind = (await client.type(key)).decode()
            if kind == "string":
                value: Any = await client.get(key)
            elif kind == "hash":
                value = await client.hgetall(key)
            elif kind == "list":
                value = await client.lrange(key, 0, -1)
            elif kind == "set":
                value = await client.smembers(key)
            elif kind == "zset":
                value = await client.zrange(key, 0, -1)
            elif kind == "stream":
                value = [fields for _, fields in await client.xrange(key)]
            else:
                value = kind
            found.append([key, value])
    finally:
        await client.aclose()
    return found


def _leaks(text: str) -> list[str]:
    return [s for entry in CORPUS for s in entry["secrets"] if s in text]


def _text(file: File) -> bool:
    """Whether an uploaded file is text (the report), not a chart."""
    return file.data is not None and file.filename.endswith(".md")


def _proposal_of(slack: SlackServer, run_id: str) -> Message | None:
    """The run's proposal message with its buttons, once posted."""
    with_buttons = [m for m in slack.messages.values() if "approve" in m.action_ids()]
    return next((m for m in with_buttons if run_id in m.button_value("approve")), None)


async def _post(bot: SlackBot, body: dict[str, Any]) -> str:
    async with bot.client.post(
        "/webhooks/alertmanager",
        json=body,
        headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
    ) as response:
        assert response.status == 202
        run_id: str = (await response.json())["run_id"]
        return run_id


async def test_no_secret_of_the_corpus_leaves_the_bot(
    redis_url: str, slack: SlackServer, policy_dir: Path, store: RunStore
) -> None:
    async with (
        run_sandbox(_scenario()) as sandbox,
        ScriptedAnthropic(_script()) as claude,
    ):
        env = bot_env(redis_url, slack, policy_dir, sandbox) | {"LOKI_URL": sandbox.url}
        with _bot_log() as log:
            # The runbook planner's run: the shipped runbook quotes the commonest error log
            # line in a finding (this is where a password reached Slack before).
            planner_alert = _alert_body() | {"groupKey": '{}:{alertname="HighErrorRate", p="1"}'}
            async with bot_app(env, INCIDENT_BOT_WORKERS="1") as bot:
                planned_id = await _post(bot, planner_alert)
                planned = await run_in(store, planned_id, RunStatus.AWAITING_APPROVAL, within=60)
                await slack.until(lambda: proposal_in(slack), within=30)
            # The model's run: events, alert text and the model's own words; approved in Slack.
            model = {"ANTHROPIC_API_KEY": API_KEY, "ANTHROPIC_BASE_URL": claude.url}
            async with bot_app(env | model, INCIDENT_BOT_WORKERS="1") as bot:
                run_id = await _post(bot, _alert_body())
                await run_in(store, run_id, RunStatus.AWAITING_APPROVAL, within=60)
                proposal = await slack.until(lambda: _proposal_of(slack, run_id), within=30)
                assert (await bot.click(slack, proposal, "approve", user=APPROVER))[0] == 200
                done = await run_in(store, run_id, RunStatus.RESOLVED, within=60)
        claude.assert_done()
        seen = {
            "Slack requests": [[c.args for c in slack.calls], slack.ephemeral],
            "Slack files": [f.data.decode() for f in slack.uploads.files.values() if _text(f)],
            "Messages API requests": [r.body for r in claude.requests],
            "bot log": log.getvalue().splitlines(),
            "Redis": await _everything_in_redis(redis_url),
        }
    texts = {where: "\n".join(_strings(value)) for where, value in seen.items()}
    secrets = [s for entry in CORPUS for s in entry["secrets"]]
    leaked = {where: _leaks(text) for where, text in texts.items()}
    print(
        f"\nsecret corpus: {len(CORPUS)} texts, {len(secrets)} secrets planted; "
        + "; ".join(f"{where}: {len(found)} leaked" for where, found in leaked.items())
        + f"; {texts['Redis'].count('[REDACTED:')} placeholders in Redis"
    )
    assert leaked == {where: [] for where in seen}
    # The runs really met the corpus: the model read the events, the planner the logs.
    assert done.status is RunStatus.RESOLVED
    assert any("[REDACTED:" in f.summary for f in planned.findings), planned.findings
    assert "[REDACTED:" in texts["Messages API requests"]
    assert "[REDACTED:" in texts["Slack requests"]
