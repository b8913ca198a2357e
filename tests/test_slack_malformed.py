"""Malformed signed requests to `POST /slack/events` get a 4xx or an ephemeral answer,
never a 5xx and never a traceback, and the bot keeps answering valid requests after each.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.slack_helpers import OUTSIDER, SHOP_CHANNEL, SlackBot, bot_app, bot_env
from tests.slack_server import (
    SIGNING_SECRET,
    TEAM,
    JsonDict,
    SlackServer,
    app_mention,
    form,
    signed,
    slash_command,
)

pytest_plugins = ("tests.slack_fixtures", "tests.sandbox_fixtures")

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def _click(value: str = '{"run": "run-000000000000", "proposal": "prop-0"}') -> JsonDict:
    """A `block_actions` payload clicking Approve with `value`."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": OUTSIDER, "username": "outsider", "team_id": TEAM},
        "api_app_id": "A0TEST001",
        "trigger_id": f"trigger.{time.monotonic_ns()}",
        "channel": {"id": SHOP_CHANNEL, "name": "incidents"},
        "response_url": "",  # set per request
        "actions": [{"type": "button", "action_id": "approve", "value": value}],
    }


def _view(metadata: str) -> JsonDict:
    return {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": OUTSIDER, "username": "outsider", "team_id": TEAM},
        "trigger_id": f"trigger.{time.monotonic_ns()}",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "reject_reason",
            "private_metadata": metadata,
        },
    }


_KEEP = object()


def _event(event: object = _KEEP, *, drop: str = "") -> str:
    """An `app_mention` callback with another `event`, or without the field `drop`."""
    body: JsonDict = json.loads(
        app_mention(
            "why?", event_id="Ev0BAD", user=OUTSIDER, channel=SHOP_CHANNEL, ts="1700000001.1"
        )
    )
    if event is not _KEEP:
        body["event"] = event
    return json.dumps({k: v for k, v in body.items() if k != drop})


def _payload(payload: object) -> str:
    return urlencode({"payload": json.dumps(payload)})


def _without(payload: JsonDict, *keys: str) -> JsonDict:
    return {k: v for k, v in payload.items() if k not in keys}


@dataclass(frozen=True)
class Row:
    """One malformed request and what it must get."""

    name: str
    body: Callable[[SlackServer], bytes | str]
    status: int
    content_type: str = FORM
    ephemeral: str | None = None  # a text the person is told (response_url)
    headers: dict[str, str] = field(default_factory=dict)


def _with_url(payload: JsonDict) -> Callable[[SlackServer], str]:
    return lambda slack: _payload(payload | {"response_url": slack.response_url()})


def _command(**fields: str | None) -> Callable[[SlackServer], str]:
    def body(slack: SlackServer) -> str:
        base = slash_command(
            "investigate x", user=OUTSIDER, channel=SHOP_CHANNEL, response_url=slack.response_url()
        )
        return form({k: v for k, v in (base | fields).items() if v is not None})

    return body


ROWS = [
    Row("block_actions with no actions", _with_url(_click() | {"actions": []}), 400),
    Row("block_actions without actions", _with_url(_without(_click(), "actions")), 400),
    Row("block_actions action without action_id", _with_url(_click() | {"actions": [{}]}), 400),
    Row("block_actions actions not a list", _with_url(_click() | {"actions": "approve"}), 400),
    Row("block_actions without user", _with_url(_without(_click(), "user")), 400),
    Row("payload not JSON", lambda _: urlencode({"payload": "{not json"}), 400),
    Row("payload a JSON list", lambda _: _payload([1, 2]), 400),
    Row("payload a JSON string", lambda _: _payload("block_actions"), 400),
    Row(
        "button value not JSON",
        _with_url(_click("approve-it")),
        200,
        ephemeral="not a button or form incident-bot made",
    ),
    Row(
        "button value JSON the bot did not write",
        _with_url(_click('{"run": 7, "proposal": ["x"]}')),
        200,
        ephemeral="not a button or form incident-bot made",
    ),
    Row(
        "button naming an unknown run",
        _with_url(_click('{"run": "run-nosuchrun000", "proposal": "prop-0"}')),
        200,
        ephemeral="This run no longer exists",
    ),
    Row("view_submission with bad private_metadata", lambda _: _payload(_view("{{{")), 200),
    Row("view_submission without view", lambda _: _payload(_without(_view(""), "view")), 400),
    Row(
        "view_submission with a view without type",
        lambda _: _payload(_view("") | {"view": {"callback_id": "reject_reason"}}),
        400,
    ),
    Row(
        "view_closed with a string view",
        lambda _: _payload({"type": "view_closed", "view": "x"}),
        400,
    ),
    Row(
        "attachment action without actions",
        lambda _: _payload({"type": "interactive_message", "callback_id": "c", "actions": []}),
        400,
    ),
    Row(
        "workflow step edit without its step",
        lambda _: _payload({"type": "workflow_step_edit", "callback_id": "c"}),
        400,
    ),
    Row("event_callback without event", lambda _: _event(drop="event"), 400, JSON),
    Row("event_callback with a null event", lambda _: _event(None), 400, JSON),
    Row("event_callback with a string event", lambda _: _event("app_mention"), 400, JSON),
    Row(
        "app_mention without channel",
        lambda _: _event({"type": "app_mention", "ts": "1.2", "text": "hi"}),
        400,
        JSON,
    ),
    Row("event_callback without event_id", lambda _: _event(drop="event_id"), 400, JSON),
    Row("unknown event type", lambda _: _event({"type": "reaction_added"}), 404, JSON),
    Row("slash command without command", _command(command=None), 404),
    Row("slash command without user_id", _command(user_id=None), 400),
    Row("slash command without trigger_id", _command(trigger_id=None), 400),
    Row("unknown command", _command(command="/deploy"), 200, ephemeral=None),
    Row("form body that is not urlencoded", lambda _: "%%%&&==;;\x7f\x01", 404),
    Row("JSON that is not an object", lambda _: "[1, 2, 3]", 400, JSON),
    Row("JSON body that is not JSON", lambda _: "{ nope", 400, JSON),
    Row("JSON body with a wrong content type", lambda _: _event(), 415, "text/plain"),
    Row("body that is not UTF-8", lambda _: b'{"type": "\xff\xfe"}', 401, JSON),
    Row("huge body", lambda _: "payload=" + "x" * (2 * 1024 * 1024), 413),
    Row(
        "timestamp that is not a number",
        lambda _: "{}",
        401,
        JSON,
        headers={"X-Slack-Request-Timestamp": "abc"},
    ),
]


def _signed_bytes(body: bytes) -> dict[str, str]:
    """Slack's signature over raw bytes (the SDK's signer takes text only)."""
    timestamp = str(int(time.time()))
    digest = hmac.new(
        SIGNING_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256
    ).hexdigest()
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": f"v0={digest}"}


async def _post(bot: SlackBot, row: Row, body: bytes | str) -> tuple[int, str]:
    if isinstance(body, bytes):
        headers = _signed_bytes(body)
    else:
        headers = signed(body)
    headers |= row.headers | {"Content-Type": row.content_type}
    raw = body if isinstance(body, bytes) else body.encode()
    data = io.BytesIO(raw) if len(raw) > 1024 * 1024 else raw  # aiohttp warns otherwise
    async with bot.client.post("/slack/events", data=data, headers=headers) as response:
        return response.status, await response.text()


async def test_malformed_signed_requests_get_no_5xx_and_the_bot_stays_healthy(
    redis_url: str, slack: SlackServer, policy_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    statuses: dict[str, int] = {}
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        for row in ROWS:
            answered = len(slack.ephemeral)
            status, text = await _post(bot, row, row.body(slack))
            statuses[row.name] = status
            assert status < 500, (row.name, status, text)
            if status >= 400 and status != 413:
                assert json.loads(text)["error"], row.name  # says what was wrong
            if row.ephemeral is not None:
                [told] = await slack.until(lambda a=answered: slack.ephemeral[a:] or None)
                assert row.ephemeral in told["text"], (row.name, told)
                assert told["response_type"] == "ephemeral"

            # Still healthy: a valid command is answered right after.
            status, text = await bot.command(slack, "help", user=OUTSIDER)
            assert status == 200, row.name
            assert "/incident investigate" in json.loads(text)["text"], row.name

    assert statuses == {row.name: row.status for row in ROWS}
    assert len(ROWS) >= 12
    crashes = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert crashes == [], [r.getMessage() for r in crashes]


async def test_the_modal_says_when_its_metadata_is_not_the_bots_and_an_unknown_command_is_named(
    redis_url: str, slack: SlackServer, policy_dir: Path
) -> None:
    async with bot_app(bot_env(redis_url, slack, policy_dir, None)) as bot:
        status, text, _ = await bot.send(_payload(_view('{"run": "r"}')))
        assert status == 200
        answer = json.loads(text)
        assert answer["response_action"] == "errors"
        assert "not a button or form incident-bot made" in answer["errors"]["reason"]

        status, text = await _post(
            bot, Row("", _command(), 200), _command(command="/deploy")(slack)
        )
        assert status == 200
        answer = json.loads(text)
        assert answer["response_type"] == "ephemeral"
        assert "does not answer `/deploy`" in answer["text"]
    assert not slack.named("chat.postMessage")
