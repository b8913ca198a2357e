"""The Bolt `AsyncApp`: listeners registered on one explicit app, served in HTTP mode at
`POST /slack/events` of the bot's aiohttp app, or over Socket Mode.

HTTP mode verifies every request's signature (`SLACK_SIGNING_SECRET`; a wrong signature
or a timestamp older than five minutes gets 401). Socket Mode (`SLACK_APP_TOKEN`, with
`incident-bot serve --socket-mode`) needs no public URL. With `INCIDENT_BOT_SLACK_EVENTS`
false the process takes neither (an intake-only replica: Slack hands the events to the
others) and only posts through the Web API; `POST /slack/events` then answers 404.

Bolt answers a request when its listener returns (`process_before_response`): commands
and clicks ack at once and hand their work to `AfterAck` (once per `trigger_id`, so a
replayed signed request acts not at all); an event is answered once it was handled, 503
when that failed, so Slack retries it (`deliveries.py`). A body the listeners could not
read gets 400 (`payloads.py`), one Bolt cannot parse 400 here, never a 500.

Besides `/incident`, mentions and clicks, the app reads `message` events: alerting apps'
messages in the policy's `slack_alerts` channels start runs (`alert_messages.py`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.deps import Deps
from bot.errors import ConfigError
from bot.settings import Settings
from bot.slack.alert_messages import AlertMessages
from bot.slack.approvers import GroupMembers
from bot.slack.blocks import APPROVE, REJECT, REJECT_MODAL
from bot.slack.commands import Commands
from bot.slack.deliveries import AfterAck, Deliveries
from bot.slack.interactions import Interactions
from bot.slack.payloads import problem
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads

log = logging.getLogger(__name__)

# What Slack sends: events as JSON, commands and interactivity as forms.
_CONTENT_TYPES = {"application/json", "application/x-www-form-urlencoded"}
NO_EVENTS = "this replica takes no Slack events (INCIDENT_BOT_SLACK_EVENTS=false)"

EventsMode = Literal["http", "socket"]


@dataclass(frozen=True, kw_only=True)
class SlackSurface:
    """The running Slack channel: the thread listener, and, when this process takes
    Slack's events, the Bolt app and (HTTP mode) the signature check of `POST /slack/events`."""

    bolt: AsyncApp | None
    threads: SlackThreads
    verifier: SignatureVerifier | None


SLACK = web.AppKey("slack", SlackSurface)


class SlackApp(AsyncApp):
    """Bolt's app, refusing (400) a body its listeners could not read before Bolt reads
    it (`payloads.py`): in HTTP mode after the route checked the signature, and in Socket
    Mode, whose handler dispatches here too."""

    async def async_dispatch(self, req: AsyncBoltRequest) -> BoltResponse:
        """Dispatch `req` to the listeners, unless it is malformed."""
        found = problem(req.body)
        if found is None:
            return await super().async_dispatch(req)
        log.warning("slack: refused a malformed request: %s", found)
        return BoltResponse(status=400, body={"error": found})


def create_bolt(
    deps: Deps,
    threads: SlackThreads,
    refs: MessageRefs,
    after_ack: AfterAck,
    deliveries: Deliveries,
) -> AsyncApp:
    """The Bolt app with every listener registered explicitly."""
    assert deps.slack is not None  # noqa: S101 - only built when Slack is configured
    secret = deps.settings.slack_signing_secret
    app = SlackApp(
        name="incident-bot",
        client=deps.slack,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=secret is not None,
        process_before_response=True,
        logger=logging.getLogger("bot.slack.bolt"),
    )
    members = GroupMembers(deps.slack)
    commands = Commands(deps, threads, refs, members, after_ack, deliveries)
    interactions = Interactions(deps, threads, members, refs, after_ack)
    alert_messages = AlertMessages(deps, threads, refs, after_ack, deliveries)
    app.command("/incident")(commands.incident)
    app.command(re.compile(r".*"))(commands.unknown)
    app.event("app_mention")(commands.mention)
    app.event("message")(alert_messages.message)
    app.action(APPROVE)(interactions.approve)
    app.action(REJECT)(interactions.reject)
    app.view(REJECT_MODAL)(interactions.reject_submitted)
    return app


async def slack_events(request: web.Request) -> web.StreamResponse:
    """`POST /slack/events`: events, slash commands and interactivity (HTTP mode).

    The signature is checked here first, so that a signed body Bolt cannot parse (a
    payload that is not JSON, or not an object) gets 400 and a forged one 401; Bolt
    checks it again. Bodies past the app's size limit get 413 from aiohttp.
    """
    surface = request.app.get(SLACK)
    if surface is None or surface.bolt is None or surface.verifier is None:
        return web.json_response({"error": "slack http mode is not configured"}, status=404)
    body = await request.read()
    if not _signed(surface.verifier, body, request):
        return web.json_response({"error": "invalid request signature"}, status=401)
    if request.content_type not in _CONTENT_TYPES:
        return _refused(415, f"unsupported content type {request.content_type!r}")
    try:  # Slack sends UTF-8 whatever the header says; Bolt parses the body here
        bolt_request = AsyncBoltRequest(
            body=body.decode("utf-8"),
            query=request.query_string,
            headers=dict(request.headers),
        )
    except json.JSONDecodeError:
        return _refused(400, "the body or its payload is not JSON")
    except (AttributeError, TypeError, ValueError):  # Bolt reads fields of what it parsed
        return _refused(400, "the body or its payload is not a JSON object as Slack sends")
    return await to_aiohttp_response(await surface.bolt.async_dispatch(bolt_request))


async def no_slack_events(request: web.Request) -> web.Response:
    """`POST /slack/events` where `INCIDENT_BOT_SLACK_EVENTS` is false: 404, saying so."""
    return web.json_response({"error": NO_EVENTS}, status=404)


def _signed(verifier: SignatureVerifier, body: bytes, request: web.Request) -> bool:
    try:
        return verifier.is_valid_request(body, dict(request.headers))
    except ValueError:  # a timestamp that is not a number
        return False


def _refused(status: int, reason: str) -> web.Response:
    log.warning("slack: refused a signed request: %s", reason)
    return web.json_response({"error": reason}, status=status)


def events_mode(settings: Settings) -> EventsMode | None:
    """How this process takes Slack's events: over HTTP, over Socket Mode (asked for, or
    an app token without a signing secret), or not at all (`INCIDENT_BOT_SLACK_EVENTS`
    false). Raises `ConfigError` when the mode's credential is missing."""
    if not settings.slack_events:
        return None
    socket_mode = settings.slack_socket_mode or (
        settings.slack_app_token is not None and settings.slack_signing_secret is None
    )
    if socket_mode and settings.slack_app_token is None:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token)")
    if not socket_mode and settings.slack_signing_secret is None:
        raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET (or use Socket Mode)")
    return "socket" if socket_mode else "http"


@asynccontextmanager
async def open_slack(deps: Deps) -> AsyncIterator[SlackSurface | None]:
    """The Slack channel when `SLACK_BOT_TOKEN` is set (else None), taking Slack's events
    as `events_mode` says (Socket Mode connected here); disconnected and flushed on exit."""
    settings = deps.settings
    if deps.slack is None:
        if settings.slack_socket_mode and settings.slack_events:
            raise ConfigError("--socket-mode needs SLACK_BOT_TOKEN and SLACK_APP_TOKEN")
        yield None
        return
    mode = events_mode(settings)
    refs = MessageRefs(
        deps.store.redis, prefix=settings.key_prefix, retention_seconds=settings.retention_seconds
    )
    threads = SlackThreads(deps, deps.slack, refs)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(threads.close)
        bolt = None
        if mode is None:
            log.info("slack: taking no events (INCIDENT_BOT_SLACK_EVENTS=false); Web API only")
        else:
            bolt = await _take_events(deps, threads, refs, mode, stack)
        secret = settings.slack_signing_secret
        yield SlackSurface(
            bolt=bolt,
            threads=threads,
            verifier=SignatureVerifier(secret.get_secret_value()) if secret and bolt else None,
        )


async def _take_events(
    deps: Deps, threads: SlackThreads, refs: MessageRefs, mode: EventsMode, stack: AsyncExitStack
) -> AsyncApp:
    """The Bolt app taking Slack's events, connected over Socket Mode in that mode; its
    deferred work and the connection close with `stack`, before `threads` do."""
    assert deps.slack is not None  # noqa: S101 - only called when Slack is configured
    deliveries = Deliveries(deps.store.redis, prefix=deps.settings.key_prefix)
    after_ack = AfterAck(deliveries)
    bolt = create_bolt(deps, threads, refs, after_ack, deliveries)
    stack.push_async_callback(after_ack.close)  # first: its work may post to threads
    if mode == "socket":
        token = deps.settings.slack_app_token
        assert token is not None  # noqa: S101 - checked by `events_mode`
        handler = AsyncSocketModeHandler(bolt, token.get_secret_value(), web_client=deps.slack)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        stack.push_async_callback(handler.close_async)
        log.info("slack: connected in Socket Mode")
    return bolt
