"""The Bolt `AsyncApp`: listeners registered on one explicit app, served in HTTP mode at
`POST /slack/events` of the bot's aiohttp app, or over Socket Mode.

HTTP mode verifies every request's signature (`SLACK_SIGNING_SECRET`; a wrong signature
or a timestamp older than five minutes gets 401). Socket Mode (`SLACK_APP_TOKEN`, with
`incident-bot serve --socket-mode`) needs no public URL. Slack retries an event it thinks
was not delivered; the `drop_retried_events` middleware makes each `event_id` count once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.response import BoltResponse

from bot.deps import Deps
from bot.errors import ConfigError
from bot.slack.approvers import GroupMembers
from bot.slack.blocks import APPROVE, REJECT, REJECT_MODAL
from bot.slack.commands import Commands
from bot.slack.interactions import Interactions
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads

log = logging.getLogger(__name__)

EVENT_SEEN_SECONDS = 24 * 3600  # Slack retries within minutes; keep ids a day


@dataclass(frozen=True, kw_only=True)
class SlackSurface:
    """The running Slack channel: the Bolt app and the thread listener."""

    bolt: AsyncApp
    threads: SlackThreads
    http_mode: bool


SLACK = web.AppKey("slack", SlackSurface)


def create_bolt(deps: Deps, threads: SlackThreads, refs: MessageRefs) -> AsyncApp:
    """The Bolt app with every listener registered explicitly."""
    assert deps.slack is not None  # noqa: S101 - only built when Slack is configured
    secret = deps.settings.slack_signing_secret
    app = AsyncApp(
        name="incident-bot",
        client=deps.slack,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=secret is not None,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    app.use(drop_retried_events(deps))
    commands = Commands(deps, threads, refs)
    interactions = Interactions(deps, threads, GroupMembers(deps.slack), refs)
    app.command("/incident")(commands.incident)
    app.event("app_mention")(commands.mention)
    app.action(APPROVE)(interactions.approve)
    app.action(REJECT)(interactions.reject)
    app.view(REJECT_MODAL)(interactions.reject_submitted)
    return app


Next = Callable[[], Awaitable[BoltResponse]]


def drop_retried_events(deps: Deps) -> Callable[..., Awaitable[BoltResponse]]:
    """Middleware: an event whose `event_id` was seen before is acked and dropped."""
    redis = deps.store.redis
    prefix = deps.settings.key_prefix

    async def drop_retried(body: dict[str, Any], next_: Next) -> BoltResponse:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id:
            key = f"{prefix}slack:event:{event_id}"
            if not await redis.set(key, "1", nx=True, ex=EVENT_SEEN_SECONDS):
                log.info("slack: dropped a repeated event", extra={"event_id": event_id})
                return BoltResponse(status=200, body="")
        return await next_()

    return drop_retried


async def slack_events(request: web.Request) -> web.StreamResponse:
    """`POST /slack/events`: events, slash commands and interactivity (HTTP mode)."""
    surface = request.app.get(SLACK)
    if surface is None or not surface.http_mode:
        return web.json_response({"error": "slack http mode is not configured"}, status=404)
    bolt_response = await surface.bolt.async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


@asynccontextmanager
async def open_slack(deps: Deps) -> AsyncIterator[SlackSurface | None]:
    """The Slack channel when `SLACK_BOT_TOKEN` is set (else None), with Socket Mode
    connected when asked for; disconnected and flushed on exit."""
    settings = deps.settings
    if deps.slack is None:
        if settings.slack_socket_mode:
            raise ConfigError("--socket-mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
        yield None
        return
    refs = MessageRefs(
        deps.store.redis, prefix=settings.key_prefix, retention_seconds=settings.retention_seconds
    )
    threads = SlackThreads(deps, deps.slack, refs)
    bolt = create_bolt(deps, threads, refs)
    socket_mode = settings.slack_socket_mode or (
        settings.slack_app_token is not None and settings.slack_signing_secret is None
    )
    if socket_mode and settings.slack_app_token is None:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token)")
    if not socket_mode and settings.slack_signing_secret is None:
        raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET (or use Socket Mode)")
    async with AsyncExitStack() as stack:
        stack.push_async_callback(threads.close)
        if socket_mode:
            assert settings.slack_app_token is not None  # noqa: S101 - checked above
            handler = AsyncSocketModeHandler(
                bolt, settings.slack_app_token.get_secret_value(), web_client=deps.slack
            )
            await handler.connect_async()  # type: ignore[no-untyped-call]
            stack.push_async_callback(handler.close_async)
            log.info("slack: connected in Socket Mode")
        yield SlackSurface(
            bolt=bolt, threads=threads, http_mode=settings.slack_signing_secret is not None
        )
