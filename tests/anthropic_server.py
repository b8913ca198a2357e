"""A scripted Anthropic Messages API for tests: `POST /v1/messages` replays a script.

A script is a list of `Exchange`s, one per expected request, in order. Each exchange may
`expect` things of its request (checks such as `tool_result(...)`, `user_text(...)`,
`offers_tools(...)`, or any callable) and says how to `respond`: a message built with
`tool_use(...)`, `text(...)` or `message(...)`, an Anthropic-shaped HTTP error built with
`error(...)`, or either of them held until an event is set (`hold(...)`, `hang()`).

Requests to the fast model (`fast_model`, the bot's `INCIDENT_BOT_FAST_MODEL`) are kept
apart: answered by the `fast` script when the test gives one, else by `auto_reply` (a short
text derived from the request), and recorded in `fast_requests`, never in `requests`, so
a script only lists the investigation's exchanges. `POST /v1/messages/count_tokens`
answers `count_of(body)` (or, with `count_fails`, an HTTP 500) and records the request in
`count_requests`.

The server fails loudly: a request the script did not expect (one too many, a failed
check, a wrong API key, a malformed transcript) is answered with an HTTP 4xx error that
the SDK does not retry, and recorded, so `assert_done()` (called when the `async with`
block ends) raises with the request that did not match.

In-process: `async with ScriptedAnthropic(script) as claude: ... claude.url ...`.
As a process (for crash tests): `python -m tests.anthropic_server --script rollback
--port 8765` prints `listening on http://127.0.0.1:8765` once it accepts connections;
`GET /_script/state` reports requests and failures, `POST /_script/release` lets go of
held requests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import itertools
import json
import re
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from anthropic.types import Message

from tests.servers import free_port

JsonDict = dict[str, Any]
# A check returns a problem (or raises AssertionError); None means the request is fine.
Check = Callable[["ScriptRequest"], str | None]

API_KEY = "test-key"
FAST_MODEL = "claude-haiku-4-5"  # the bot's default INCIDENT_BOT_FAST_MODEL
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_MAX_CACHE_BREAKPOINTS = 4
WAIT_SECONDS = 10.0
_ids = itertools.count(1)


# -- what the server records ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class ScriptRequest:
    """One request as the server received it."""

    index: int
    body: JsonDict
    headers: dict[str, str]

    @property
    def messages(self) -> list[JsonDict]:
        """The request's messages (`[]` when there are none)."""
        messages = self.body.get("messages")
        return messages if isinstance(messages, list) else []

    @property
    def tool_names(self) -> list[str]:
        """The names of the tools offered to the model."""
        return [t.get("name", "") for t in self.body.get("tools") or []]

    def blocks(self, message: int = -1) -> list[JsonDict]:
        """The content blocks of one message (the last by default)."""
        if not self.messages:
            return []
        return _blocks(self.messages[message])

    def tool_results(self) -> dict[str, JsonDict]:
        """The last message's tool_result blocks by tool_use id."""
        return {b["tool_use_id"]: b for b in self.blocks() if b.get("type") == "tool_result"}

    def describe(self) -> str:
        """The request for a failure message: its index and the newest message."""
        last = self.messages[-1] if self.messages else None
        return f"request #{self.index}; last message: {json.dumps(last)[:1500]}"


# -- what the script says --------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Reply:
    """An HTTP answer; with `hold`, sent only once the event is set."""

    status: int = 200
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)
    hold: asyncio.Event | None = None


@dataclass(frozen=True)
class Exchange:
    """One expected request: what to check of it, and the reply."""

    respond: Reply
    expect: Sequence[Check] = ()
    note: str = ""


def usage(
    input: int = 100, output: int = 20, *, cache_read: int = 0, cache_write: int = 0
) -> JsonDict:
    """A `usage` object as the API reports it."""
    return {
        "input_tokens": input,
        "output_tokens": output,
        "cache_read_input_tokens": cache_read,
        "cache_creation_input_tokens": cache_write,
        "cache_creation": {
            "ephemeral_5m_input_tokens": cache_write,
            "ephemeral_1h_input_tokens": 0,
        },
        "service_tier": "standard",
    }


def _default_usage() -> JsonDict:
    return usage()


def message(
    content: Sequence[JsonDict],
    *,
    stop_reason: str,
    usage: JsonDict | None = None,
    stop_details: JsonDict | None = None,
) -> Reply:
    """A Messages API response; `model` and `id` are filled in when it is sent."""
    body: JsonDict = {
        "id": "msg_placeholder",
        "type": "message",
        "role": "assistant",
        "model": "placeholder",
        "content": [dict(b) for b in content],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage if usage is not None else _default_usage(),
    }
    if stop_details is not None:
        body["stop_details"] = stop_details
    Message.model_validate(body)  # the SDK's own type: a wrong shape fails the script now
    return Reply(body=body)


def call(id: str, name: str, input: JsonDict | None = None) -> JsonDict:
    """A `tool_use` block."""
    return {"type": "tool_use", "id": id, "name": name, "input": input or {}}


def tool_use(
    *calls: JsonDict,
    text: str | None = None,
    stop_reason: str = "tool_use",
    usage: JsonDict | None = None,
) -> Reply:
    """A response calling tools (with an optional text block before the calls)."""
    content = ([{"type": "text", "text": text}] if text else []) + list(calls)
    return message(content, stop_reason=stop_reason, usage=usage)


def text(*texts: str, stop_reason: str = "end_turn", usage: JsonDict | None = None) -> Reply:
    """A response of text blocks."""
    return message(
        [{"type": "text", "text": t} for t in texts], stop_reason=stop_reason, usage=usage
    )


def error(
    status: int,
    type: str = "overloaded_error",
    msg: str = "Overloaded",
    *,
    retry_after_ms: int | None = None,
) -> Reply:
    """An Anthropic-shaped error; `retry_after_ms` sets the header the SDK's retry obeys."""
    headers = {"request-id": f"req_{next(_ids):08d}"}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    body = {"type": "error", "error": {"type": type, "message": msg}}
    return Reply(status=status, body=body, headers=headers)


def hold(reply: Reply, until: asyncio.Event) -> Reply:
    """The same reply, sent only once `until` is set (or the server is released)."""
    return Reply(status=reply.status, body=reply.body, headers=reply.headers, hold=until)


def hang() -> Reply:
    """A request that waits until released (then answers 529): a test kills its caller."""
    return hold(error(529), asyncio.Event())


# -- checks --------------------------------------------------------------------------------
def tool_result(id: str, *, is_error: bool = False, contains: str | None = None) -> Check:
    """The last user message answers tool_use `id`, with that `is_error` and text."""

    def check(request: ScriptRequest) -> str | None:
        result = request.tool_results().get(id)
        if request.messages[-1:] and request.messages[-1].get("role") != "user":
            return f"last message is not a user message (wanted a tool_result for {id})"
        if result is None:
            return f"no tool_result for {id} in the last message"
        if bool(result.get("is_error", False)) != is_error:
            return f"tool_result {id}: is_error is {result.get('is_error')}, wanted {is_error}"
        content = _text_of(result.get("content"))
        if contains is not None and contains not in content:
            return f"tool_result {id} lacks {contains!r}: {content[:600]}"
        return None

    return check


def user_text(contains: str) -> Check:
    """The last message is the user's and has a text block containing `contains`."""

    def check(request: ScriptRequest) -> str | None:
        if not request.messages or request.messages[-1].get("role") != "user":
            return "the last message is not a user message"
        texts = [b.get("text", "") for b in request.blocks() if b.get("type") == "text"]
        if not any(contains in t for t in texts):
            return f"no text containing {contains!r} in the last message: {texts}"
        return None

    return check


def offers_tools(*names: str) -> Check:
    """The request's `tools` include all `names`."""

    def check(request: ScriptRequest) -> str | None:
        missing = [n for n in names if n not in request.tool_names]
        return f"tools {missing} not offered (offered: {request.tool_names})" if missing else None

    return check


def last_assistant(content: Sequence[JsonDict]) -> Check:
    """The last message is the assistant's and starts with exactly `content`."""

    def check(request: ScriptRequest) -> str | None:
        if not request.messages or request.messages[-1].get("role") != "assistant":
            return "the last message is not the assistant's"
        sent = strip_cache_control(request.blocks())[: len(content)]
        if sent != list(content):
            return f"assistant content sent back changed: {sent} != {list(content)}"
        return None

    return check


def well_formed(request: ScriptRequest) -> str | None:
    """The checks the real API makes of a request's shape (see `request_problems`)."""
    problems = request_problems(request.body)
    return "; ".join(problems) if problems else None


def request_problems(body: JsonDict) -> list[str]:
    """What the real Messages API would reject in this request body."""
    problems: list[str] = []
    if not isinstance(body.get("model"), str) or not body.get("model"):
        problems.append("no model")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        problems.append("max_tokens must be a positive integer")
    if body.get("stream"):
        problems.append("streaming requests are not scripted")
    for tool in body.get("tools") or []:
        if not _TOOL_NAME.match(str(tool.get("name", ""))):
            problems.append(f"tool name {tool.get('name')!r} does not match {_TOOL_NAME.pattern}")
        if (tool.get("input_schema") or {}).get("type") != "object":
            problems.append(f"tool {tool.get('name')!r}: input_schema must be an object schema")
    breakpoints = json.dumps(body).count('"cache_control"')
    if breakpoints > _MAX_CACHE_BREAKPOINTS:
        problems.append(f"{breakpoints} cache_control blocks (at most 4)")
    return problems + transcript_problems(body.get("messages"))


def transcript_problems(messages: Any) -> list[str]:
    """Role alternation, non-empty content, and every tool_use answered in the next message."""
    if not isinstance(messages, list) or not messages:
        return ["no messages"]
    problems: list[str] = []
    if messages[0].get("role") != "user":
        problems.append("the first message is not the user's")
    pending: list[str] = []
    seen_ids: set[str] = set()
    for i, msg in enumerate(messages):
        role, blocks = msg.get("role"), _blocks(msg)
        last = i == len(messages) - 1
        if i and role == messages[i - 1].get("role"):
            problems.append(f"messages {i - 1} and {i} are both {role}")
        if not blocks and not (last and role == "assistant"):
            problems.append(f"message {i} ({role}) has empty content")
        for b in blocks:
            if b.get("type") == "text" and not b.get("text", "").strip():
                problems.append(f"message {i} has an empty text block")
            if b.get("type") in ("thinking", "redacted_thinking") and "cache_control" in b:
                problems.append(f"message {i}: cache_control on a thinking block")
        if role == "user":
            problems += _answers(i, blocks, pending)
            pending = []
        elif role == "assistant":
            pending = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            problems += [f"tool_use id {d} used twice" for d in pending if d in seen_ids]
            seen_ids.update(pending)
        else:
            problems.append(f"message {i} has role {role!r}")
    if pending:
        problems.append(f"tool_use {pending} in the last message are never answered")
    return problems


def _answers(i: int, blocks: list[JsonDict], pending: list[str]) -> list[str]:
    kinds = [b.get("type") for b in blocks]
    ids = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
    problems = [f"tool_use {p} has no tool_result in message {i}" for p in pending if p not in ids]
    problems += [
        f"message {i}: tool_result for unknown tool_use {d}" for d in ids if d not in pending
    ]
    if len(set(ids)) != len(ids):
        problems.append(f"message {i} answers a tool_use twice")
    others = [k for k, kind in enumerate(kinds) if kind != "tool_result"]
    if ids and others and others[0] < len(ids):
        problems.append(f"message {i}: another block before its tool_result blocks")
    return problems


def count_of(body: JsonDict) -> int:
    """The scripted `count_tokens` answer: the words and punctuation marks of the
    request's system prompt, tools and messages (a tokenizer's order of magnitude)."""
    sent = json.dumps([body.get("system"), body.get("tools"), body.get("messages")])
    return len(re.findall(r"\w+|[^\w\s]", sent))


def auto_reply(request: ScriptRequest) -> Reply:
    """The fast model's default answer: `In short: ` and the first line of the request's
    data (its second line of text, outside any envelope marker)."""
    lines = [
        line.strip()
        for block in request.blocks()
        if block.get("type") == "text"
        for line in str(block.get("text", "")).splitlines()
        if line.strip() and not line.strip().startswith(("<untrusted", "</untrusted"))
    ]
    line = lines[1] if len(lines) > 1 else (lines[0] if lines else "nothing to report")
    return text(f"In short: {line[:100]}", usage=usage(count_of(request.body), 15))


def strip_cache_control(blocks: Iterable[JsonDict]) -> list[JsonDict]:
    """Blocks without their `cache_control` markers (which move from turn to turn)."""
    return [{k: v for k, v in b.items() if k != "cache_control"} for b in blocks]


def _blocks(msg: JsonDict) -> list[JsonDict]:
    content = msg.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content or "")


async def _body_of(request: web.Request) -> JsonDict:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        body = {"unparsed": raw.decode(errors="replace")}
    return body


def _credential(request: web.Request) -> str | None:
    """The API key: `x-api-key`, or the `Authorization: Bearer` header the SDK 2.x sends."""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def _run_check(check: Check, request: ScriptRequest) -> str | None:
    try:
        return check(request)
    except AssertionError as exc:
        return str(exc) or f"{getattr(check, '__name__', check)} failed"


# -- the server --------------------------------------------------------------------------------
class ScriptedAnthropic:
    """A local Messages API that replays `script` and records every request."""

    def __init__(
        self,
        script: Iterable[Exchange],
        *,
        api_key: str = API_KEY,
        port: int | None = None,
        always: Sequence[Check] = (well_formed,),
        announce: Callable[[str], None] | None = None,
        fast_model: str = FAST_MODEL,
        fast: Iterable[Exchange] | None = None,
        count_fails: bool = False,
    ) -> None:
        self.script = list(script)
        self.fast_model = fast_model
        self.fast_script = None if fast is None else list(fast)
        self.fast_requests: list[ScriptRequest] = []
        self.count_requests: list[ScriptRequest] = []
        self.count_fails = count_fails
        self._fast_used = 0
        self.api_key = api_key
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[ScriptRequest] = []
        self.failures: list[str] = []
        self._always = tuple(always)
        self._announce = announce
        self._used = 0
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedAnthropic:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        # A mismatch explains whatever the test tripped over next, so it wins (chained).
        if self.failures or exc_type is None:
            self.assert_done()

    async def start(self) -> None:
        """Listen on 127.0.0.1:`port`."""
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get("/_script/state", self._state)
        app.router.add_post("/_script/release", self._release)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        """Let go of held requests and stop listening."""
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def release(self) -> None:
        """Answer every held request now."""
        for exchange in [*self.script, *(self.fast_script or ())]:
            if exchange.respond.hold is not None:
                exchange.respond.hold.set()

    async def received(self, count: int) -> ScriptRequest:
        """Wait (at most `WAIT_SECONDS`) until `count` requests arrived; returns the last."""
        async with asyncio.timeout(WAIT_SECONDS), self._arrived:
            await self._arrived.wait_for(lambda: len(self.requests) >= count)
        return self.requests[count - 1]

    def assert_done(self, *, all_used: bool = True) -> None:
        """Raise when a request did not match the script, or (`all_used`) some went unused."""
        if self.failures:
            raise AssertionError("scripted Anthropic API:\n" + "\n".join(self.failures))
        if all_used and self.fast_script is not None and self._fast_used < len(self.fast_script):
            raise AssertionError(
                f"scripted Anthropic API: {len(self.fast_requests)} fast-model requests, but "
                f"{len(self.fast_script)} fast exchanges scripted"
            )
        if all_used and self._used < len(self.script):
            unused = [e.note or f"exchange #{i}" for i, e in enumerate(self.script)][self._used :]
            raise AssertionError(
                f"scripted Anthropic API: {len(self.requests)} requests, but "
                f"{len(self.script)} exchanges scripted; never requested: {unused}"
            )

    async def _messages(self, request: web.Request) -> web.Response:
        body = await _body_of(request)
        if body.get("model") == self.fast_model:
            return await self._fast(request, body)
        recorded = ScriptRequest(index=len(self.requests), body=body, headers=dict(request.headers))
        self.requests.append(recorded)
        self._say(f"request {recorded.index}")
        # Match the request to its exchange before the first await: order is arrival order.
        outcome = self._match(request, recorded)
        async with self._arrived:
            self._arrived.notify_all()
        if isinstance(outcome, web.Response):
            return outcome
        if outcome.hold is not None:
            self._say(f"holding request {recorded.index}")
            await outcome.hold.wait()
        return web.json_response(
            self._body(outcome, body), status=outcome.status, headers=outcome.headers
        )

    async def _fast(self, request: web.Request, body: JsonDict) -> web.Response:
        """A fast-model request: the `fast` script's next reply, else `auto_reply`."""
        recorded = ScriptRequest(
            index=len(self.fast_requests), body=body, headers=dict(request.headers)
        )
        self.fast_requests.append(recorded)
        self._say(f"fast request {recorded.index}")
        outcome = self._refused(request, recorded) or self._match_fast(recorded)
        if isinstance(outcome, web.Response):
            return outcome
        if outcome.hold is not None:
            await outcome.hold.wait()
        return web.json_response(
            self._body(outcome, body), status=outcome.status, headers=outcome.headers
        )

    def _match_fast(self, recorded: ScriptRequest) -> Reply | web.Response:
        if self.fast_script is None:
            problems = [p for c in self._always if (p := _run_check(c, recorded))]
            if problems:
                return self._fail(recorded, 400, "invalid_request_error", "; ".join(problems))
            return auto_reply(recorded)
        if self._fast_used >= len(self.fast_script):
            return self._fail(
                recorded,
                400,
                "invalid_request_error",
                f"unexpected fast-model request: only {len(self.fast_script)} scripted",
            )
        exchange = self.fast_script[self._fast_used]
        self._fast_used += 1
        problems = [p for c in (*self._always, *exchange.expect) if (p := _run_check(c, recorded))]
        if problems:
            label = exchange.note or f"fast exchange #{self._fast_used - 1}"
            return self._fail(
                recorded, 400, "invalid_request_error", f"{label}: " + "; ".join(problems)
            )
        return exchange.respond

    async def _count_tokens(self, request: web.Request) -> web.Response:
        body = await _body_of(request)
        recorded = ScriptRequest(
            index=len(self.count_requests), body=body, headers=dict(request.headers)
        )
        self.count_requests.append(recorded)
        refused = self._refused(request, recorded)
        if refused is not None:
            return refused
        if self.count_fails:  # asked for by the test: not a failure of the script
            failure = {"type": "error", "error": {"type": "api_error", "message": "unavailable"}}
            return web.json_response(failure, status=500, headers={"x-should-retry": "false"})
        return web.json_response({"input_tokens": count_of(body)})

    def _refused(self, request: web.Request, recorded: ScriptRequest) -> web.Response | None:
        """The error for a request without the API key or the version header."""
        if _credential(request) != self.api_key:
            return self._fail(
                recorded, 401, "authentication_error", "invalid x-api-key (or bearer token)"
            )
        if "anthropic-version" not in request.headers:
            return self._fail(recorded, 400, "invalid_request_error", "no anthropic-version")
        return None

    def _match(self, request: web.Request, recorded: ScriptRequest) -> Reply | web.Response:
        """The scripted reply for this request, or the error answering a mismatch."""
        refused = self._refused(request, recorded)
        if refused is not None:
            return refused
        if self._used >= len(self.script):
            return self._fail(
                recorded,
                400,
                "invalid_request_error",
                f"unexpected request: only {len(self.script)} exchanges scripted",
            )
        exchange = self.script[self._used]
        self._used += 1
        problems = [p for c in (*self._always, *exchange.expect) if (p := _run_check(c, recorded))]
        if problems:
            label = exchange.note or f"exchange #{self._used - 1}"
            return self._fail(
                recorded, 400, "invalid_request_error", f"{label}: " + "; ".join(problems)
            )
        return exchange.respond

    def _body(self, reply: Reply, request_body: JsonDict) -> JsonDict:
        if reply.status != 200:
            return reply.body
        filled = copy.deepcopy(reply.body)
        filled["id"] = f"msg_{next(_ids):024d}"
        filled["model"] = request_body.get("model", "unknown")
        return filled

    def _fail(self, recorded: ScriptRequest, status: int, kind: str, why: str) -> web.Response:
        self.failures.append(f"{why}\n  {recorded.describe()}")
        self._say(f"failure: {why}")
        body = {"type": "error", "error": {"type": kind, "message": f"scripted API: {why}"}}
        return web.json_response(body, status=status, headers={"x-should-retry": "false"})

    async def _unknown(self, request: web.Request) -> web.Response:
        why = f"unexpected {request.method} {request.path}"
        self.failures.append(why)
        body = {"type": "error", "error": {"type": "not_found_error", "message": why}}
        return web.json_response(body, status=404, headers={"x-should-retry": "false"})

    async def _state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "scripted": len(self.script),
                "used": self._used,
                "failures": self.failures,
                "requests": [r.body for r in self.requests],
                "fast_requests": [r.body for r in self.fast_requests],
            }
        )

    async def _release(self, request: web.Request) -> web.Response:
        self.release()
        return web.json_response({"released": True})

    def _say(self, line: str) -> None:
        if self._announce is not None:
            self._announce(line)


# -- named scripts (bad-deploy) for the standalone process -------------------------------------
RATIO_QUERY = (
    'sum(rate(http_requests_total{namespace="shop",service="checkout",code=~"5.."}[5m]))'
    ' / sum(rate(http_requests_total{namespace="shop",service="checkout"}[5m]))'
)


def propose_input(**overrides: Any) -> JsonDict:
    """Arguments of `propose_remediation` rolling shop/checkout back to revision 1."""
    arguments: JsonDict = {
        "action": "kubernetes.rollback",
        "arguments": {"namespace": "shop", "deployment": "checkout", "to_revision": 1},
        "target": "deployment shop/checkout",
        "rationale": "The 5xx ratio rose to 12% right after revision 2 (v2.4.0) rolled out.",
        "risk": "low",
        "expected_effect": "The 5xx ratio falls below 1% within minutes.",
        "summary": "checkout v2.4.0 fails 12% of requests. Roll back to v2.3.1.",
        "findings": [{"summary": "5xx ratio is 12%", "evidence": "prometheus_query: 0.12"}],
        "verify": {"query": RATIO_QUERY, "op": "<", "threshold": 0.05},
    }
    arguments.update(overrides)
    return arguments


def rollback_script() -> list[Exchange]:
    """Query the ratio and the rollout history in one turn, then propose the rollback."""
    return [
        Exchange(
            tool_use(
                call("toolu_ratio", "prometheus_query", {"query": RATIO_QUERY}),
                call(
                    "toolu_history",
                    "kubernetes_rollout_history",
                    {"namespace": "shop", "deployment": "checkout"},
                ),
                text="Checking the error ratio and recent rollouts.",
            ),
            expect=[offers_tools("prometheus_query", "propose_remediation", "conclude")],
            note="investigate",
        ),
        Exchange(
            tool_use(call("toolu_propose", "propose_remediation", propose_input())),
            expect=[
                tool_result("toolu_ratio", contains="0.12"),
                tool_result("toolu_history", contains="v2.3.1"),
            ],
            note="propose",
        ),
    ]


def hang_then_rollback_script() -> list[Exchange]:
    """The first call hangs (its process is killed); a resumed run then follows `rollback`."""
    return [Exchange(hang(), note="hang"), *rollback_script()]


def hang_after_tools_script() -> list[Exchange]:
    """Tools run, the second call hangs; the resumed run sends the same results, proposes."""
    first, second = rollback_script()
    return [first, Exchange(hang(), expect=second.expect, note="hang"), second]


def overloaded_script() -> list[Exchange]:
    """529 to the first call and its two retries."""
    return [Exchange(error(529), note=f"overloaded #{i}") for i in range(3)]


SCRIPTS: dict[str, Callable[[], list[Exchange]]] = {
    "rollback": rollback_script,
    "hang-then-rollback": hang_then_rollback_script,
    "hang-after-tools": hang_after_tools_script,
    "overloaded": overloaded_script,
}


async def serve(script: str, port: int, api_key: str) -> None:
    """Serve a named script until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    def announce(line: str) -> None:
        print(line, flush=True)

    server = ScriptedAnthropic(SCRIPTS[script](), api_key=api_key, port=port, announce=announce)
    await server.start()
    try:
        print(f"listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve."""
    parser = argparse.ArgumentParser(prog="python -m tests.anthropic_server")
    parser.add_argument("--script", choices=sorted(SCRIPTS), required=True)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--api-key", default=API_KEY)
    args = parser.parse_args(argv)
    asyncio.run(serve(args.script, args.port, args.api_key))


if __name__ == "__main__":
    main()
