"""A local Messages API that answers `POST /v1/messages` with recorded replies, in order.

The real `anthropic` SDK is pointed at it (base URL and any API key), so a recorded
transcript exercises the same model path as Claude. A request after the last reply, or
one that is not a Messages API request, is answered 400 (the SDK does not retry it) and
recorded in `problems`: the attempt then scores `error`.

Only the investigation's requests (they offer tools) take recorded replies. The fast
model's side requests (a compaction summary, the run's headline) offer none: they are
answered with a short text and no usage (nothing was spent).
`POST /v1/messages/count_tokens` answers characters / 4 of the request.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.evals.scenarios import Reply

API_KEY = "replay"  # any key works; the SDK needs one


@dataclass
class Replay:
    """The replies still to send, and what went wrong (empty when the replay matched)."""

    replies: Sequence[Reply]
    url: str = ""
    sent: int = 0
    problems: list[str] = field(default_factory=list)

    def next_body(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The Messages API body of the next reply, or None (recorded) when there is none."""
        if not isinstance(request.get("messages"), list) or not request.get("model"):
            self.problems.append(f"request {self.sent + 1} is not a Messages API request")
            return None
        if self.sent >= len(self.replies):
            self.problems.append(
                f"request {self.sent + 1}: the transcript has only {len(self.replies)} replies"
            )
            return None
        reply = self.replies[self.sent]
        self.sent += 1
        return _message(request, reply.content, reply.stop_reason, reply.usage.model_dump())


def _side_body(request: dict[str, Any]) -> dict[str, Any]:
    """A short text answer to a fast-model request, with no usage."""
    content = [{"type": "text", "text": "Replayed run: no summary was recorded."}]
    return _message(request, content, "end_turn", {"input_tokens": 0, "output_tokens": 0})


def _message(
    request: dict[str, Any], content: Any, stop_reason: str, usage: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": f"msg_replay_{next(_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


_ids = itertools.count(1)


def _app(replay: Replay) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        if body.get("model") and isinstance(body.get("messages"), list) and not body.get("tools"):
            return web.json_response(_side_body(body), headers=_request_id())
        answer = replay.next_body(body)
        if answer is None:
            problem = replay.problems[-1]
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error", "message": problem}},
                status=400,
                headers=_request_id(),
            )
        return web.json_response(answer, headers=_request_id())

    async def count_tokens(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        tokens = len(json.dumps(body)) // 4
        return web.json_response({"input_tokens": tokens}, headers=_request_id())

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    return app


def _request_id() -> dict[str, str]:
    return {"request-id": f"req_replay_{next(_ids):06d}"}


@asynccontextmanager
async def serve_replay(replies: Sequence[Reply]) -> AsyncIterator[Replay]:
    """Serve the replies on a free loopback port until the block ends."""
    replay = Replay(replies=replies)
    runner = web.AppRunner(_app(replay), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        replay.url = f"http://{host}:{port}"
        yield replay
    finally:
        await runner.cleanup()
