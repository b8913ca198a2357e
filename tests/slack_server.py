"""A local Slack for tests: the Web API, response URLs and a Socket Mode server.

`async with SlackServer() as slack:` serves on a free port; point the bot at
`slack.api_url` (`SLACK_API_URL`). The server checks the bot token (`invalid_auth`
otherwise), records every call, answers in Slack's shapes, keeps the messages it was
sent (updates apply in place, with their history), validates every message's blocks with
`slack_sdk.models.blocks` as Slack would (`invalid_blocks`, `msg_too_long`), and can
answer the next calls of a method with 429 and `Retry-After` (`rate_limit`) or with an
error (`fail`), or keep them waiting until the test lets them through (`hold`). Files
come through Slack's external upload flow (`slack_files.py`); `files(thread_ts)` lists
those uploaded into a thread, with their bytes.

Socket Mode: `apps.connections.open` (with the app token) hands out a `ws://` URL on this
server; `send_envelope(...)` sends an envelope to the connected client and
`envelope_ack(id)` waits for its acknowledgement.

Requests to the bot are signed with the real algorithm (`signed(...)`), and the payload
builders below produce what Slack sends: slash commands, `block_actions`,
`view_submission` and `app_mention` events.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from aiohttp import WSMsgType, web
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.signature import SignatureVerifier

from tests.servers import free_port
from tests.slack_files import File, SlackFiles

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-test-app-token"
SIGNING_SECRET = "test-signing-secret"
BOT_USER = "UBOT0001"
TEAM = "T0TEST001"
JsonDict = dict[str, Any]


@dataclass
class Call:
    """One Web API call as received."""

    method: str
    args: JsonDict
    at: float
    status: int = 200


@dataclass
class Message:
    """A message the bot posted, as it is now, with its earlier versions."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[JsonDict]
    history: list[JsonDict] = field(default_factory=list)

    def all_text(self) -> str:
        """The text and every text in the blocks, for assertions."""
        return self.text + "\n" + json.dumps(self.blocks, ensure_ascii=False)

    def action_ids(self) -> list[str]:
        """The action ids of the buttons in the message."""
        return [
            e.get("action_id", "")
            for b in self.blocks
            if b.get("type") == "actions"
            for e in b.get("elements", [])
        ]

    def button_value(self, action_id: str) -> str:
        """The value of the button with `action_id`."""
        for b in self.blocks:
            for e in b.get("elements", []) if b.get("type") == "actions" else []:
                if e.get("action_id") == action_id:
                    return str(e["value"])
        raise KeyError(action_id)


def validate_message(text: str, blocks: list[JsonDict]) -> str | None:
    """What Slack would refuse in a message (`invalid_blocks`, `msg_too_long`), or None."""
    if len(text) > 40_000:
        return "msg_too_long"
    if len(blocks) > 50:
        return "invalid_blocks"
    for raw in blocks:
        block = Block.parse(raw)
        if block is None:
            return "invalid_blocks"
        try:
            block.validate_json()
            for element in getattr(block, "elements", None) or []:
                if hasattr(element, "validate_json"):
                    element.validate_json()
        except SlackObjectFormationError:
            return "invalid_blocks"
    return None


class SlackServer:
    """The local Slack; see the module docstring."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.url}/api/"
        self.calls: list[Call] = []
        self.messages: dict[str, Message] = {}
        self.ephemeral: list[JsonDict] = []  # response_url posts and chat.postEphemeral
        self.problems: list[tuple[str, str]] = []  # (method, error) for refused messages
        self.usergroups: dict[str, tuple[str, list[str]]] = {}  # id -> (handle, users)
        self.views: list[JsonDict] = []
        self.envelope_acks: dict[str, JsonDict] = {}
        self._limits: dict[str, list[int]] = {}
        self._failures: dict[str, list[str]] = {}
        self._failing_text: dict[str, str] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._ts = itertools.count(1)
        self._changed = asyncio.Condition()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.uploads = SlackFiles(self.url)

    # -- lifecycle ---------------------------------------------------------------------
    async def __aenter__(self) -> SlackServer:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/socket-mode", self._socket)
        app.router.add_post("/upload/{file_id}", self._upload)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for ws in self._sockets:
            await ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- scripting and reading -----------------------------------------------------------
    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with 429 and `Retry-After`."""
        self._limits[method] = [retry_after] * times

    def fail(
        self, method: str, error: str = "fatal_error", times: int = 1, *, text: str = ""
    ) -> None:
        """Answer the next `times` calls of `method` (only those whose `text` contains
        `text`, if given) with `{"ok": false, "error": error}`."""
        self._failures[method] = [error] * times
        self._failing_text[method] = text

    def hold(self, method: str) -> asyncio.Event:
        """Keep every call of `method` unanswered until the returned event is set."""
        gate = self._held[method] = asyncio.Event()
        return gate

    def response_url(self) -> str:
        """A fresh response URL (as Slack puts in commands and interactions)."""
        return f"{self.url}/respond/{uuid.uuid4().hex}"

    def named(self, method: str) -> list[Call]:
        """The calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def thread(self, ts: str) -> list[Message]:
        """The replies in the thread of message `ts`, in order."""
        return [m for m in self.messages.values() if m.thread_ts == ts and m.ts != ts]

    def files(self, thread_ts: str) -> list[File]:
        """The files uploaded into the thread of message `thread_ts`, with their bytes."""
        return self.uploads.in_thread(thread_ts)

    def roots(self, channel: str | None = None) -> list[Message]:
        """Messages not in a thread (in `channel`)."""
        return [
            m
            for m in self.messages.values()
            if m.thread_ts is None and (channel is None or m.channel == channel)
        ]

    async def until(self, condition: Callable[[], Any], within: float = 20.0) -> Any:
        """Wait until `condition()` is truthy after some call; returns its value."""
        async with asyncio.timeout(within), self._changed:
            while not (value := condition()):
                await self._changed.wait()
            return value

    # -- the Web API ---------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: JsonDict = dict(request.query)
        if request.content_type == "application/json":
            args.update(await request.json())
        elif request.can_read_body:
            args.update(dict(await request.post()))
        call = Call(method=method, args=args, at=time.monotonic())
        limited = self._limits.get(method)
        if limited:
            call.status = 429
            await self._record(call)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(limited.pop(0))},
            )
        failures = self._failures.get(method)
        if failures and self._failing_text.get(method, "") in str(args.get("text") or ""):
            await self._record(call)
            return web.json_response({"ok": False, "error": failures.pop(0)})
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if request.headers.get("Authorization") != f"Bearer {expected}":
            await self._record(call)
            return web.json_response({"ok": False, "error": "invalid_auth"})
        gate = self._held.get(method)
        if gate is not None:
            await gate.wait()
        answer = self._answer(method, args)
        await self._record(call)
        return web.json_response(answer)

    def _answer(self, method: str, args: JsonDict) -> JsonDict:
        match method:
            case "auth.test":
                return {
                    "ok": True,
                    "url": "https://test.slack.com/",
                    "team": "test",
                    "team_id": TEAM,
                    "user": "incident-bot",
                    "user_id": BOT_USER,
                    "bot_id": "BBOT0001",
                }
            case "chat.postMessage" | "chat.update":
                return self._message(method, args)
            case "chat.postEphemeral":
                self.ephemeral.append(args)
                return {"ok": True, "message_ts": self._next_ts()}
            case "views.open":
                self.views.append(args)
                return {"ok": True, "view": {"id": f"V{len(self.views)}"}}
            case "usergroups.list":
                groups = [{"id": g, "handle": h} for g, (h, _) in self.usergroups.items()]
                return {"ok": True, "usergroups": groups}
            case "usergroups.users.list":
                found = self.usergroups.get(str(args.get("usergroup")))
                if found is None:
                    return {"ok": False, "error": "no_such_subteam"}
                return {"ok": True, "users": found[1]}
            case "conversations.replies":
                ts = str(args.get("ts"))
                thread = [m for m in self.messages.values() if m.ts == ts or m.thread_ts == ts]
                return {"ok": True, "messages": [{"ts": m.ts, "text": m.text} for m in thread]}
            case "chat.getPermalink":
                found = self.messages.get(str(args.get("message_ts")))
                if found is None or found.channel != args.get("channel"):
                    return {"ok": False, "error": "message_not_found"}
                message = found.ts.replace(".", "")
                link = f"https://test.slack.com/archives/{found.channel}/p{message}"
                return {"ok": True, "channel": found.channel, "permalink": link}
            case "files.getUploadURLExternal":
                return self.uploads.upload_url(args)
            case "files.completeUploadExternal":
                return self.uploads.complete(args)
            case "apps.connections.open":
                return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket-mode"}
        return {"ok": False, "error": "unknown_method"}

    def _message(self, method: str, args: JsonDict) -> JsonDict:
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        text = str(args.get("text") or "")
        problem = validate_message(text, blocks)
        if problem is not None:
            self.problems.append((method, problem))
            return {"ok": False, "error": problem}
        channel = str(args["channel"])
        if method == "chat.update":
            found = self.messages.get(str(args["ts"]))
            if found is None or found.channel != channel:
                return {"ok": False, "error": "message_not_found"}
            found.history.append({"text": found.text, "blocks": found.blocks})
            found.text, found.blocks = text, blocks
            return {"ok": True, "channel": channel, "ts": found.ts, "text": text}
        ts = self._next_ts()
        thread = args.get("thread_ts")
        self.messages[ts] = Message(
            channel=channel,
            ts=ts,
            thread_ts=str(thread) if thread else None,
            text=text,
            blocks=blocks,
        )
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": text, "ts": ts}}

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    async def _respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        problem = validate_message(str(body.get("text") or ""), body.get("blocks") or [])
        if problem is not None:
            self.problems.append(("response_url", problem))
        self.ephemeral.append(body)
        await self._record(Call(method="response_url", args=body, at=time.monotonic()))
        return web.Response(text="ok")

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        status, body = self.uploads.receive(file_id, await request.read())
        await self._record(
            Call(method="upload", args={"file_id": file_id}, at=time.monotonic(), status=status)
        )
        return web.Response(status=status, text=body)

    async def _record(self, call: Call) -> None:
        self.calls.append(call)
        async with self._changed:
            self._changed.notify_all()

    # -- Socket Mode ---------------------------------------------------------------------
    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {}})
        await self._record(Call(method="socket.hello", args={}, at=time.monotonic()))
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                ack = json.loads(message.data)
                self.envelope_acks[str(ack.get("envelope_id"))] = ack
                await self._record(Call(method="socket.ack", args=ack, at=time.monotonic()))
        return ws

    async def send_envelope(self, kind: str, payload: JsonDict) -> str:
        """Send an envelope to the connected client; returns its id."""
        await self.until(lambda: self._sockets)
        envelope_id = uuid.uuid4().hex
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": kind,
                "payload": payload,
                "accepts_response_payload": kind != "events_api",
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def envelope_ack(self, envelope_id: str, within: float = 10.0) -> JsonDict:
        """The client's acknowledgement of an envelope."""
        ack: JsonDict = await self.until(lambda: self.envelope_acks.get(envelope_id), within)
        return ack


# -- what Slack sends to the bot --------------------------------------------------------
def signed(body: str, *, secret: str = SIGNING_SECRET, age: float = 0.0) -> dict[str, str]:
    """Headers signing `body` as Slack does (`v0=` HMAC-SHA256 of `v0:timestamp:body`)."""
    timestamp = str(int(time.time() - age))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature}


def slash_command(text: str, *, user: str, channel: str, response_url: str) -> JsonDict:
    """The fields of a `/incident` slash command request."""
    return {
        "token": "deprecated-verification-token",
        "team_id": TEAM,
        "team_domain": "test",
        "channel_id": channel,
        "channel_name": "incidents",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/incident",
        "text": text,
        "api_app_id": "A0TEST001",
        "response_url": response_url,
        "trigger_id": f"trigger.{uuid.uuid4().hex}",
    }


def form(fields: JsonDict) -> str:
    """A form-encoded body."""
    return urlencode(fields)


def block_action(message: Message, action_id: str, *, user: str, response_url: str) -> str:
    """The form body of a button click on `message` (`payload=<block_actions JSON>`)."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TEST001",
        "token": "deprecated-verification-token",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": False,
        },
        "trigger_id": f"trigger.{uuid.uuid4().hex}",
        "channel": {"id": message.channel, "name": "incidents"},
        "message": {"type": "message", "ts": message.ts, "text": message.text},
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "decision",
                "text": {"type": "plain_text", "text": action_id.title()},
                "value": message.button_value(action_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)})


def view_submission(view: JsonDict, *, user: str, values: JsonDict) -> str:
    """The form body of a submitted modal (`view` as the bot opened it)."""
    payload = {
        "type": "view_submission",
        "team": {"id": TEAM, "domain": "test"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0TEST001",
        "trigger_id": f"trigger.{uuid.uuid4().hex}",
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view.get("private_metadata", ""),
            "state": {"values": values},
        },
    }
    return urlencode({"payload": json.dumps(payload)})


def app_mention(
    text: str, *, event_id: str, user: str, channel: str, ts: str, thread_ts: str | None = None
) -> str:
    """The JSON body of an `app_mention` event callback."""
    event: JsonDict = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return json.dumps(
        {
            "token": "deprecated-verification-token",
            "team_id": TEAM,
            "api_app_id": "A0TEST001",
            "event": event,
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        }
    )
