"""Each Slack delivery acts once: a replayed command or click, a retried event.

A signed request stays valid for five minutes, so whoever holds one can send it again.
Slash commands and interactions carry a `trigger_id` unique to one invocation: the first
request with it claims it in Redis (`SET NX`, kept `TRIGGER_SECONDS`, longer than that
window) and only that request acts (`AfterAck`).

Slack retries an event it believes was not delivered (`X-Slack-Retry-Num`), with the
same `event_id`. An event is claimed for `EVENT_CLAIM_MS` while it is handled (two
replicas never handle one delivery at once) and marked done only once it was handled;
a failure gives the claim back, so Slack's retry is handled like the first delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from redis.exceptions import RedisError
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.redis_connection import RedisClient

log = logging.getLogger(__name__)

TRIGGER_SECONDS = 15 * 60  # Bolt accepts a signature for 5 minutes; room for clock skew
EVENT_CLAIM_MS = 30_000  # handling an event takes well under Slack's 3-second timeout
EVENT_DONE_SECONDS = 24 * 3600  # Slack retries within minutes; keep ids a day

EventOutcome = Literal["handled", "repeated", "busy"]
Work = Callable[[], Awaitable[None]]
# Sends the person who made a request an ephemeral message (a response URL, or
# chat.postEphemeral).
Tell = Callable[[str], Awaitable[object]]

# KEYS: the claim.  ARGV: the claimant's token.  Deletes the claim only if it is ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Deliveries:
    """The Redis marks of the Slack deliveries acted on (under the bot's key prefix)."""

    def __init__(self, client: RedisClient, *, prefix: str) -> None:
        self._redis = client
        self._p = prefix
        self._release = client.register_script(_RELEASE)

    async def first_use(self, trigger_id: str) -> bool:
        """Claim a command's or interaction's `trigger_id`; False when it was used before."""
        key = f"{self._p}slack:trigger:{trigger_id}"
        return bool(await self._redis.set(key, "1", nx=True, ex=TRIGGER_SECONDS))

    async def handle_event(self, event_id: str, handle: Work) -> EventOutcome:
        """Run `handle` for an event unless it was handled (`repeated`) or is being
        handled elsewhere right now (`busy`). An exception from `handle` propagates after
        the claim is given back, so a retry of the event is handled."""
        done = f"{self._p}slack:event:{event_id}"
        claim = f"{done}:claim"
        if await self._redis.exists(done):
            return "repeated"
        token = uuid.uuid4().hex
        if not await self._redis.set(claim, token, nx=True, px=EVENT_CLAIM_MS):
            return "busy"
        try:
            if await self._redis.exists(done):  # finished elsewhere between the two looks
                return "repeated"
            await handle()
            await self._redis.set(done, "1", ex=EVENT_DONE_SECONDS)
        except BaseException:
            with contextlib.suppress(RedisError):  # else the claim expires by itself
                await self._release(keys=[claim], args=[token])
            raise
        await self._release(keys=[claim], args=[token])
        return "handled"


def by_response_url(respond: AsyncRespond) -> Tell:
    """Tell the person through the request's response URL (commands and buttons carry one)."""

    async def tell(text: str) -> None:
        await respond(text=text, response_type="ephemeral", replace_original=False)

    return tell


def by_ephemeral_post(client: AsyncWebClient, channel: str, user: str) -> Tell:
    """Tell the person with `chat.postEphemeral` in `channel` (a modal has no response URL)."""

    async def tell(text: str) -> None:
        await client.chat_postEphemeral(channel=channel, user=user, text=text)

    return tell


def failure_text(what: str, error: Exception) -> str:
    """What a person is told when the work of their request failed after its ack."""
    return (
        f"⚠️ incident-bot received your {what} but could not finish it "
        f"({type(error).__name__}). If the run's thread does not show it, "
        "try again in a moment."
    )


class AfterAck:
    """Runs a listener's work after its ack, in a task whose reference is kept, once per
    `trigger_id`. A failure is logged here (the task's boundary), never raised, and the
    person who made the request is told, ephemerally: Slack showed them the ack, and
    would otherwise show nothing more."""

    def __init__(self, deliveries: Deliveries) -> None:
        self._deliveries = deliveries
        self._tasks: set[asyncio.Task[None]] = set()

    def run(self, trigger_id: str | None, what: str, work: Work, *, tell: Tell | None) -> None:
        """Start `work` unless a request with the same `trigger_id` acted already
        (None: the request carries none; the work guards itself). If it fails, `tell`
        says so to the person (None: nobody waits for this work)."""
        task = asyncio.create_task(self._once(trigger_id, what, work, tell), name=f"slack {what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for the work started, including work it starts while it ends."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.gather(*pending, return_exceptions=True)

    async def _once(self, trigger_id: str | None, what: str, work: Work, tell: Tell | None) -> None:
        try:
            if trigger_id is not None and not await self._deliveries.first_use(trigger_id):
                log.warning(
                    "slack: dropped a replayed request",
                    extra={"what": what, "trigger_id": trigger_id},
                )
                return
            await work()
        except Exception as exc:  # the task's boundary: log it, keep the process serving
            log.exception("slack: %s failed", what, extra={"trigger_id": trigger_id})
            if tell is not None:
                await _tell_failure(tell, what, exc, trigger_id)


async def _tell_failure(tell: Tell, what: str, error: Exception, trigger_id: str | None) -> None:
    try:
        await tell(failure_text(what, error))
    except Exception:  # Slack is failing too: the log is all that is left
        log.exception(
            "slack: could not tell the person that %s failed",
            what,
            extra={"trigger_id": trigger_id},
        )
