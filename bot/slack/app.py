"""The Bolt `AsyncApp`: listeners registered on one explicit app, served in HTTP mode at
`POST /slack/events` of the bot's aiohttp app, or over Socket Mode.

HTTP mode verifies every request's signature (`SLACK_SIGNING_SECRET`; a wrong signature
or a timestamp older than five minutes gets 401). Socket Mode (`SLACK_APP_TOKEN`, with
`incident-bot serve --socket-mode`) needs no public URL.

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

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier

from bot.deps import Deps
from bot.errors import ConfigError
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


@dataclass(frozen=True, kw_only=True)
class SlackSurface:
    """The running Slack channel: the Bolt app, the thread listener, and (HTTP mode) the
    signature check of `POST /slack/events`."""

    bolt: AsyncApp
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
    if surface is None or surface.verifier is None:
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


def _signed(verifier: SignatureVerifier, body: bytes, request: web.Request) -> bool:
    try:
        return verifier.is_valid_request(body, dict(request.headers))
    except ValueError:  # a timestamp that is not a number
        return False


def _refused(status: int, reason: str) -> web.Response:
    log.warning("slack: refused a signed request: %s", reason)
    return web.json_response({"error": reason}, status=status)


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
    deliveries = Deliveries(deps.store.redis, prefix=settings.key_prefix)
    after_ack = AfterAck(deliveries)
    bolt = create_bolt(deps, threads, refs, after_ack, deliveries)
    socket_mode = settings.slack_socket_mode or (
        settings.slack_app_token is not None and settings.slack_signing_secret is None
    )
    if socket_mode and settings.slack_app_token is None:
        raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token)")
    if not socket_mode and settings.slack_signing_secret is None:
        raise ConfigError("Slack HTTP mode needs SLACK_SIGNING_SECRET (or use Socket Mode)")
    async with AsyncExitStack() as stack:
        stack.push_async_callback(threads.close)
        stack.push_async_callback(after_ack.close)  # first: its work may post to threads
        if socket_mode:
            assert settings.slack_app_token is not None  # noqa: S101 - checked above
            handler = AsyncSocketModeHandler(
                bolt, settings.slack_app_token.get_secret_value(), web_client=deps.slack
            )
            await handler.connect_async()  # type: ignore[no-untyped-call]
            stack.push_async_callback(handler.close_async)
            log.info("slack: connected in Socket Mode")
        secret = settings.slack_signing_secret
        yield SlackSurface(
            bolt=bolt,
            threads=threads,
            verifier=SignatureVerifier(secret.get_secret_value()) if secret else None,
        )
