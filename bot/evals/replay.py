"""A local Messages API that answers `POST /v1/messages` with recorded replies, in order.

The real `anthropic` SDK is pointed at it (base URL and any API key), so a recorded
transcript exercises the same model path as Claude. A request after the last reply, or
one that is not a Messages API request, is answered 400 (the SDK does not retry it) and
recorded in `problems`: the attempt then scores `error`.
"""

from __future__ import annotations

import itertools
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
        return {
            "id": f"msg_replay_{self.sent:04d}",
            "type": "message",
            "role": "assistant",
            "model": request["model"],
            "content": reply.content,
            "stop_reason": reply.stop_reason,
            "stop_sequence": None,
            "usage": reply.usage.model_dump(),
        }


_ids = itertools.count(1)


def _app(replay: Replay) -> web.Application:
    async def messages(request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        answer = replay.next_body(body if isinstance(body, dict) else {})
        if answer is None:
            problem = replay.problems[-1]
            return web.json_response(
                {"type": "error", "error": {"type": "invalid_request_error", "message": problem}},
                status=400,
                headers={"request-id": f"req_replay_{next(_ids):06d}"},
            )
        return web.json_response(answer, headers={"request-id": f"req_replay_{next(_ids):06d}"})

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


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
