"""Helpers for Slack tests: the bot's app with the local Slack, signed sends, waits.

The fixtures are in `tests/slack_fixtures.py`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.models import Run, RunStatus
from bot.server import DEPS, create_app
from bot.settings import Settings
from bot.store import RunStore
from tests.processes import eventually
from tests.slack_server import (
    BOT_TOKEN,
    SIGNING_SECRET,
    Message,
    SlackServer,
    block_action,
    form,
    signed,
    slash_command,
)
from tools.sandbox import RunningSandbox

ALERTMANAGER = Path(__file__).resolve().parent / "fixtures" / "alertmanager"
WEBHOOK_TOKEN = "webhook-token-for-slack-tests"
SHOP_CHANNEL = "C0SHOP001"
DEFAULT_CHANNEL = "C0DEFAULT1"
APPROVER = "UAPPROVER1"
SRE_MEMBER = "USRE00001"
OUTSIDER = "UOUTSIDER1"

POLICY = f"""
approval_timeout_seconds: 3600
actions:
  - action: kubernetes.rollback
    match: {{namespace: shop}}
    approvals: 1
    approvers: {{users: [{APPROVER}], groups: ["@sre"]}}
routing:
  default: {DEFAULT_CHANNEL}
  routes:
    - match: {{namespace: shop}}
      channel: {SHOP_CHANNEL}
"""

Client = TestClient[web.Request, web.Application]


def bot_env(
    redis_url: str, slack: SlackServer, policy_dir: Path, sandbox: RunningSandbox | None
) -> dict[str, str]:
    """The environment of a bot talking to the local Slack (and the sandbox)."""
    env = {
        "REDIS_URL": redis_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "INCIDENT_BOT_POLICY_DIR": str(policy_dir),
        "INCIDENT_BOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "INCIDENT_BOT_SLACK_MIN_INTERVAL": "0.05",
        "INCIDENT_BOT_VERIFY_INTERVAL": "0.2",
    }
    if sandbox is not None:
        env |= {"PROMETHEUS_URL": sandbox.url, "KUBERNETES_URL": sandbox.url}
    return env


@asynccontextmanager
async def bot_app(env: dict[str, str], **more: str) -> AsyncIterator[SlackBot]:
    """The bot's aiohttp app on a test server, with `env` (workers: 0 unless given)."""
    settings = Settings.model_validate({"INCIDENT_BOT_WORKERS": "0"} | env | more)
    async with TestClient(TestServer(create_app(settings))) as client:
        yield SlackBot(client)


class SlackBot:
    """The bot's HTTP side as Slack and Alertmanager reach it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.deps = client.server.app[DEPS]

    async def send(
        self, body: str, *, json_body: bool = False, headers: dict[str, str] | None = None
    ) -> tuple[int, str, float]:
        """POST a signed body to /slack/events; returns status, body and seconds taken."""
        content_type = "application/json" if json_body else "application/x-www-form-urlencoded"
        all_headers = {"Content-Type": content_type, **signed(body), **(headers or {})}
        started = time.monotonic()
        async with self.client.post("/slack/events", data=body, headers=all_headers) as r:
            text = await r.text()
        return r.status, text, time.monotonic() - started

    async def command(self, slack: SlackServer, text: str, *, user: str) -> tuple[int, str]:
        """`/incident <text>` from `user` in the shop channel."""
        fields = slash_command(
            text, user=user, channel=SHOP_CHANNEL, response_url=slack.response_url()
        )
        status, body, _ = await self.send(form(fields))
        return status, body

    async def click(
        self, slack: SlackServer, message: Message, action: str, *, user: str
    ) -> tuple[int, float]:
        """A signed button click; returns the status and the seconds until the ack."""
        body = block_action(message, action, user=user, response_url=slack.response_url())
        status, _, seconds = await self.send(body)
        return status, seconds

    async def alert(self, name: str = "firing-single.json") -> dict[str, Any]:
        """POST an Alertmanager notification to the webhook."""
        async with self.client.post(
            "/webhooks/alertmanager",
            data=(ALERTMANAGER / name).read_bytes(),
            headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"},
        ) as response:
            assert response.status == 202
            answer: dict[str, Any] = await response.json()
            return answer


def proposal_in(slack: SlackServer) -> Message | None:
    """The proposal message with its buttons, once posted."""
    return next((m for m in slack.messages.values() if "approve" in m.action_ids()), None)


async def run_in(store: RunStore, run_id: str, *states: RunStatus, within: float = 30) -> Run:
    """Wait until the run is in one of `states`."""

    async def reached() -> Run | None:
        run = await store.load(run_id)
        return run if run.status in states else None

    return await eventually(reached, within=within)


async def proposed(bot: SlackBot, slack: SlackServer, store: RunStore) -> tuple[str, Message]:
    """Post the alert to `bot`; its run's id and proposal message, once the run awaits
    approval."""
    run_id: str = (await bot.alert())["run_id"]
    proposal = await slack.until(lambda: proposal_in(slack))
    await run_in(store, run_id, RunStatus.AWAITING_APPROVAL)
    return run_id, proposal


async def sandbox_patches(sandbox: RunningSandbox) -> int:
    """How many times the sandbox's checkout deployment was written."""
    async with aiohttp.ClientSession() as http, http.get(f"{sandbox.url}/sandbox/state") as r:
        state = await r.json()
    patches: int = state["deployments"]["shop/checkout"]["patches"]
    return patches


Probe = Callable[[], Awaitable[Any]]


def shown_texts(version: dict[str, Any]) -> list[str]:
    """What a person reads in one version of a message (`Message.history` entries, or
    `{"text": ..., "blocks": ...}`): its text and every text object in its blocks."""
    found = [str(version.get("text", ""))]

    def walk(value: object) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("text"), str):
                found.append(value["text"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(version.get("blocks", []))
    return found
