"""Alert messages: what alerting apps post in the channels the policy watches starts
runs, as a webhook's alerts do (parsed by `bot.intake.slack_alerts`).

A `message` event is an alert when the policy's `slack_alerts` lists its channel and
its sender (bot or app ID). A person's message, an unlisted bot's, the bot's own (Bolt
drops those before any listener) and edits, deletions and other subtypes are left
alone. The message's alerts join their group's run (`AlertGroups.admit`); a run it
starts has its thread in the message's own thread, posted at once. One message acts
once: its deliveries (Slack's retries, the same message in another event) are claimed
by channel and ts (`Deliveries`); handling that fails answers 503, so Slack retries.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError
from slack_bolt.response import BoltResponse

from bot.dedup import AlertGroups, count_admission
from bot.deps import Deps
from bot.intake.slack_alerts import parse_message
from bot.intake.slack_alerts.message import AlertMessage
from bot.slack.deliveries import AfterAck, Deliveries
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads

log = logging.getLogger(__name__)

# A bot's message: posted through an app's token (no subtype) or an incoming webhook.
_SUBTYPES = {None, "bot_message"}


def alert_message(event: object) -> AlertMessage | None:
    """The event as a bot's new message, or None (a person's, an edit, a deletion…)."""
    if not isinstance(event, dict) or event.get("type") != "message":
        return None
    if event.get("subtype") not in _SUBTYPES or not event.get("bot_id"):
        return None
    try:
        return AlertMessage.model_validate(event)
    except ValidationError:
        log.warning("slack: ignored a bot message without a channel or ts")
        return None


class AlertMessages:
    """The `message` events of watched channels."""

    def __init__(
        self,
        deps: Deps,
        threads: SlackThreads,
        refs: MessageRefs,
        after_ack: AfterAck,
        deliveries: Deliveries,
    ) -> None:
        self._deps = deps
        self._threads = threads
        self._refs = refs
        self._after_ack = after_ack
        self._deliveries = deliveries
        self._groups = AlertGroups(deps, deps.queue)

    async def message(self, body: dict[str, Any]) -> BoltResponse | None:
        """A message in a channel the bot is in: admit it if it is a listed app's alert.

        Answered once handled (Bolt acks after the listener returns): 503 when handling
        failed or is under way elsewhere, so that Slack delivers the event again.
        """
        message = alert_message(body.get("event"))
        watched = self._deps.policy.slack_alerts
        if message is None or not watched.watches(message.channel, message.bot_id, message.app_id):
            return None
        delivery = f"message:{message.channel}:{message.ts}"
        try:
            outcome = await self._deliveries.handle_event(delivery, lambda: self._admit(message))
        except Exception:  # the listener's boundary: logged, and Slack retries the event
            log.exception("slack: admitting an alert message failed", extra={"ts": message.ts})
            return BoltResponse(status=503, body={"error": "handling the event failed"})
        if outcome == "busy":
            return BoltResponse(status=503, body={"error": "the event is being handled"})
        if outcome == "repeated":
            log.info("slack: dropped a repeated alert message", extra={"ts": message.ts})
        return None

    async def _admit(self, message: AlertMessage) -> None:
        alerts = parse_message(message)
        if not alerts:
            log.info("slack: an alert message said nothing", extra={"ts": message.ts})
            return
        thread = {"channel": message.channel, "thread_ts": message.thread}

        async def in_its_thread(run_id: str) -> None:
            await self._refs.set(run_id, thread)

        admission = await self._groups.admit(alerts, before_queue=in_its_thread)
        count_admission(self._deps.metrics, "slack", admission, len(alerts))
        self._threads.on_admitted(admission)
        log.info(
            "slack alert message admitted",
            extra={
                "run_id": admission.run_id,
                "outcome": admission.outcome,
                "alerts": len(alerts),
                "format": alerts[0].group_key.split(":")[1],  # the key itself is untrusted
            },
        )
        run_id = admission.run_id
        if admission.outcome == "started" and run_id is not None:
            # Shown queued at once, after the answer: the run is safe in Redis and queued.
            self._after_ack.run(
                None, "post the run's thread", lambda: self._show(run_id), tell=None
            )

    async def _show(self, run_id: str) -> None:
        await self._threads.on_checkpoint(await self._deps.store.load(run_id), ())
