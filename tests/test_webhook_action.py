"""`webhook.call`: a signed POST with the proposal as idempotency key; https unless the
policy says `insecure: true`; no redirect followed; only a redacted snippet of the answer
kept; and a real bot process killed with SIGKILL while the POST is in flight, which is never
sent a second time."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as redis
from aiohttp import web
from pydantic import JsonValue

from bot.models import Run, RunStatus
from bot.store import RunStore
from tests.policy_helpers import policy_dir
from tests.processes import bot_env, eventually, run_bot, start_bot
from tools.actions import WEBHOOK, ActionContext, ActionError, WebhookEndpoint, WebhookInput
from tools.actions.webhook import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    SNIPPET_CHARS,
    TIMESTAMP_HEADER,
    signature_valid,
)
from tools.sandbox import RunningSandbox

pytest_plugins = ("tests.sandbox_fixtures",)

SECRET = "hook-secret-5e1d"
SHARED = Path(__file__).resolve().parent / "fixtures" / "alertmanager"


@dataclass
class Receiver:
    """The team's automation endpoint: records each POST; answers `status` with `answer`
    (and a `Location` when `redirect_to` is set), or holds every request until the test
    ends when `hold` is set."""

    url: str = ""
    status: int = 200
    answer: JsonValue = field(default_factory=lambda: {"ran": True})
    redirect_to: str | None = None
    hold: bool = False
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        self.arrived.set()
        if self.hold:
            await self.release.wait()
        headers = {"Location": self.redirect_to} if self.redirect_to else None
        return web.json_response(self.answer, status=self.status, headers=headers)


@asynccontextmanager
async def _receiving() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/flush", hook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    hook.url = f"http://{host}:{port}/hooks/flush"
    try:
        yield hook
    finally:
        hook.release.set()
        await runner.cleanup()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with _receiving() as hook:
        yield hook


@pytest.fixture
async def elsewhere() -> AsyncIterator[Receiver]:
    """A second receiver, which a redirect points at."""
    async with _receiving() as hook:
        yield hook


def _context(
    http: aiohttp.ClientSession, receiver: Receiver, *, insecure: bool = True
) -> ActionContext:
    # The local receivers speak plain http, which the policy must allow explicitly.
    endpoint = WebhookEndpoint(
        name="flush", url=receiver.url, secret=SECRET.encode(), insecure=insecure
    )
    return ActionContext(
        http=http, kubernetes=None, prometheus_url=None, webhooks={"flush": endpoint}
    ).for_proposal("run-1", "prop-1")


async def test_the_post_is_signed_and_keyed_by_the_proposal(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    ctx = _context(http, receiver)
    args = WebhookInput(webhook="flush", payload={"cache": "checkout"})
    assert await WEBHOOK.dry_run(ctx, args) == (
        f'webhook flush: not called -> POST {receiver.url} once with payload {{"cache": '
        '"checkout"} (HMAC-SHA256 signed, Idempotency-Key = proposal id)'
    )
    assert await WEBHOOK.execute(ctx, args, "prop-1") == (
        f'webhook flush: POST {receiver.url} answered 200 {{"ran": true}}'
    )
    ((headers, body),) = receiver.requests
    assert headers[IDEMPOTENCY_HEADER] == "prop-1"
    assert signature_valid(
        SECRET.encode(), headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )
    assert not signature_valid(b"other", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert json.loads(body) == {
        "run_id": "run-1",
        "proposal_id": "prop-1",
        "webhook": "flush",
        "payload": {"cache": "checkout"},
    }
    receiver.status = 500
    with pytest.raises(ActionError, match="answered 500"):
        await WEBHOOK.execute(ctx, args, "prop-2")
    with pytest.raises(ActionError, match=r"webhook 'rm-rf' is not listed .*listed: flush"):
        await WEBHOOK.execute(ctx, WebhookInput(webhook="rm-rf"), "prop-3")


async def test_a_redirect_is_not_followed(
    http: aiohttp.ClientSession, receiver: Receiver, elsewhere: Receiver
) -> None:
    receiver.status, receiver.redirect_to = 302, elsewhere.url

    with pytest.raises(ActionError) as refused:
        await WEBHOOK.execute(_context(http, receiver), WebhookInput(webhook="flush"), "prop-1")

    assert str(refused.value) == (
        f"webhook flush: POST {receiver.url} answered 302, a redirect to {elsewhere.url} "
        "that is not followed: list the final URL in the policy instead"
    )
    assert len(receiver.requests) == 1
    assert elsewhere.requests == []


async def test_plain_http_is_refused_unless_the_policy_marks_it_insecure(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    ctx = _context(http, receiver, insecure=False)
    args = WebhookInput(webhook="flush")
    refusal = (
        f"webhook flush: {receiver.url} is not https; only a webhook the policy marks "
        "`insecure: true` may use plain http"
    )

    for attempt in (WEBHOOK.dry_run(ctx, args), WEBHOOK.execute(ctx, args, "prop-1")):
        with pytest.raises(ActionError) as refused:
            await attempt
        assert str(refused.value) == refusal
    assert receiver.requests == []


@pytest.mark.parametrize(
    "answer",
    [
        {"token": "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"},
        {"callback": "https://deploy:hunter2-s3cret@automation.internal/hooks"},
    ],
)
async def test_the_answer_is_reported_as_a_redacted_snippet(
    http: aiohttp.ClientSession, receiver: Receiver, answer: JsonValue
) -> None:
    secret = "xoxb-1234567890" if "token" in str(answer) else "hunter2-s3cret"
    receiver.answer = answer
    ctx = _context(http, receiver)
    args = WebhookInput(webhook="flush")

    done = await WEBHOOK.execute(ctx, args, "prop-1")
    receiver.status = 500
    with pytest.raises(ActionError) as failed:
        await WEBHOOK.execute(ctx, args, "prop-2")

    for detail in (done, str(failed.value)):
        assert secret not in detail
        assert "[REDACTED:" in detail
    assert done.startswith(f"webhook flush: POST {receiver.url} answered 200 ")
    assert str(failed.value).startswith(f"webhook flush: POST {receiver.url} answered 500: ")


async def test_only_the_start_of_a_long_answer_is_kept(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    receiver.answer = {"log": "x" * 100_000}

    done = await WEBHOOK.execute(_context(http, receiver), WebhookInput(webhook="flush"), "p")

    snippet = done.removeprefix(f"webhook flush: POST {receiver.url} answered 200 ")
    assert snippet == '{"log": "' + "x" * (SNIPPET_CHARS - 9)


async def _started(store: RunStore) -> Run | None:
    runs = await store.list_runs()
    if not runs or runs[0].proposal is None:
        return None
    record = await store.action_record(runs[0].id, runs[0].proposal.id)
    return runs[0] if record is not None and record.state == "started" else None


async def test_kill_9_while_the_webhook_is_in_flight_leaves_needs_attention_and_no_second_call(
    receiver: Receiver, redis_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    receiver.hold = True
    directory = policy_dir(
        tmp_path,
        policy=(
            "actions:\n  - action: webhook.call\n"
            f"webhooks:\n  - {{name: flush, url: '{receiver.url}', insecure: true}}\n"
        ),
        alertname="HighErrorRate",
        action="webhook.call",
        arguments={"webhook": "flush", "payload": {"service": "{{ labels.service }}"}},
    )
    env = bot_env(
        REDIS_URL=redis_url,
        PROMETHEUS_URL=sandbox.url,
        INCIDENT_BOT_POLICY_DIR=str(directory),
        INCIDENT_BOT_ACTIONS_WEBHOOK_SECRET=SECRET,
        INCIDENT_BOT_LEASE_SECONDS="1",
    )
    alert_file = tmp_path / "alert.json"
    shutil.copy(SHARED / "firing-single.json", alert_file)
    client = redis.from_url(redis_url, decode_responses=True)
    store = RunStore(client, prefix="incident-bot:", retention_seconds=3600)
    try:
        triage = await start_bot("triage", str(alert_file), "--yes", env=env, cwd=tmp_path)
        await asyncio.wait_for(receiver.arrived.wait(), 30)
        run = await eventually(lambda: _started(store))
        triage.send_signal(signal.SIGKILL)
        assert await triage.wait() == -signal.SIGKILL

        code, out, err = await run_bot("runs", "resume", run.id, env=env, cwd=tmp_path)

        finished = await store.load(run.id)
        events = [e.event for e in await store.read_audit(run.id)]
    finally:
        await client.aclose()
    assert code == 2, (out, err)
    assert finished.status is RunStatus.NEEDS_ATTENTION
    assert "webhook.call was started by" in finished.outcome
    assert "it was not run again" in finished.outcome
    assert "Idempotency-Key" in finished.outcome  # what observing could say
    assert len(receiver.requests) == 1
    assert events.count("action_started") == 1 and "action_interrupted" in events
