"""`/incident` and `@mention`: ad-hoc investigations, the list of runs, status and cancel.

A command acks first and its work runs after the ack, once per `trigger_id` (a replay
of the signed request does nothing). A mention is answered once it was handled, 503
when that failed so that Slack retries it; a retry of a handled one is dropped. An
investigation is a run like any other (an `Alert` from source `slack`) put on the work
queue, and its thread is posted by the thread listener. Cancelling a run is for the
people the policy lets approve its actions and for the policy's operators
(`bot.run_permissions`). Pausing and resuming the bot is for the policy's operators and
for whoever may approve some action under it (`bot.run_permissions`, `bot.pausing`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.checkpoints import Checkpointer
from bot.deps import Deps
from bot.errors import LeaseHeld, RunExists, RunNotFound
from bot.models import Alert, Run, RunStatus, utcnow
from bot.pausing import pause, resume
from bot.run_permissions import (
    groups_that_may_change,
    groups_that_may_pause,
    why_not_allowed_to_change,
    why_not_allowed_to_pause,
)
from bot.runs import start_run
from bot.slack import blocks
from bot.slack.approvers import GroupMembers
from bot.slack.deliveries import AfterAck, Deliveries, by_response_url
from bot.slack.listing import run_list
from bot.slack.payloads import EventCallback, Mention
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads
from tools.redaction import redact_text

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LABEL = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)=([^\s,;]+)")
CONTEXT_CHARS = 4000
_BUSY = {RunStatus.EXECUTING, RunStatus.VERIFYING}
LISTED_OPEN = 100  # open runs read for `/incident list`
LISTED_RECENT = 200  # newest runs read for it, for those that ended needing someone


class Commands:
    """The `/incident` command and `app_mention` events."""

    def __init__(
        self,
        deps: Deps,
        threads: SlackThreads,
        refs: MessageRefs,
        members: GroupMembers,
        after_ack: AfterAck,
        deliveries: Deliveries,
    ) -> None:
        self._deps = deps
        self._threads = threads
        self._refs = refs
        self._members = members
        self._after_ack = after_ack
        self._deliveries = deliveries

    async def incident(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        """`/incident investigate <question> | list | status <run> | cancel <run> |
        pause [reason] | resume | help`."""
        verb, _, rest = str(command.get("text") or "").strip().partition(" ")
        rest = rest.strip()
        word = rest.split()[0] if rest else ""
        user, channel, trigger = command["user_id"], command["channel_id"], command["trigger_id"]
        tell = by_response_url(respond)
        match verb.lower():
            case "investigate" if rest:
                await ack(text=f"Investigating: {blocks.cut(rest, 200)}", response_type="ephemeral")
                self._after_ack.run(
                    trigger,
                    "/incident investigate",
                    lambda: self._investigate(rest, user, channel),
                    tell=tell,
                )
            case "list":
                await ack()
                self._after_ack.run(
                    trigger, "/incident list", lambda: self._list(respond), tell=tell
                )
            case "status" if rest:
                await ack()
                self._after_ack.run(
                    trigger, "/incident status", lambda: self._status(word, respond), tell=tell
                )
            case "cancel" if rest:
                await ack()
                self._after_ack.run(
                    trigger,
                    "/incident cancel",
                    lambda: self._cancel(word, user, respond),
                    tell=tell,
                )
            case "pause" | "resume":
                await ack()
                self._after_ack.run(
                    trigger,
                    f"/incident {verb.lower()}",
                    lambda: self._switch(verb.lower(), rest, user, respond),
                    tell=tell,
                )
            case _:
                await ack(text=blocks.HELP, response_type="ephemeral")

    async def unknown(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """Any other slash command routed to the bot: say which one it answers."""
        name = blocks.escape(blocks.cut(str(command.get("command") or ""), 40))
        await ack(
            text=f"incident-bot does not answer `{name}`.\n{blocks.HELP}",
            response_type="ephemeral",
        )

    async def mention(self, body: dict[str, Any], client: AsyncWebClient) -> BoltResponse | None:
        """`@incident-bot <question>` in a channel or thread: investigate it there.

        Answered once handled (Bolt acks after the listener returns): 503 when handling
        failed or is under way elsewhere, so that Slack delivers the event again.
        """
        event_id = EventCallback.model_validate(body).event_id
        mention = Mention.model_validate(body["event"])
        try:
            outcome = await self._deliveries.handle_event(
                event_id, lambda: self._mentioned(mention, client)
            )
        except Exception:  # the listener's boundary: logged, and Slack retries the event
            log.exception("slack: handling a mention failed", extra={"event_id": event_id})
            return _retry_later("handling the event failed")
        if outcome == "busy":
            return _retry_later("the event is being handled")
        if outcome == "repeated":
            log.info("slack: dropped a repeated event", extra={"event_id": event_id})
        return None

    async def _mentioned(self, event: Mention, client: AsyncWebClient) -> None:
        channel, ts = event.channel, event.ts
        thread = event.thread_ts or ts
        question = _MENTION.sub("", event.text).strip()
        if not question:
            await client.chat_postMessage(channel=channel, thread_ts=thread, text=blocks.HELP)
            return
        context = ""
        if event.thread_ts:
            context = await self._thread_context(client, channel, event.thread_ts, ts)
        await self.investigate(
            question,
            user=event.user,
            channel=channel,
            ts=ts,
            thread=thread,
            context=context,
            run_id=_run_id_for(channel, ts),
        )

    async def _show(self, run: Run) -> None:
        await self._threads.on_checkpoint(run, ())

    async def _investigate(self, question: str, user: str, channel: str) -> None:
        await self.investigate(question, user=user, channel=channel, ts=None)

    async def _list(self, respond: AsyncRespond) -> None:
        """The open runs and the recent ones that ended needing someone."""
        store = self._deps.store
        runs = await store.list_runs(limit=LISTED_OPEN, active_only=True)
        runs += await store.list_runs(limit=LISTED_RECENT)
        message = run_list(runs, now=utcnow())
        await respond(response_type="ephemeral", **message.payload())

    async def _status(self, run_id: str, respond: AsyncRespond) -> None:
        try:
            run = await self._deps.store.load(run_id)
        except RunNotFound:
            await respond(text=f"No run `{_shown(run_id)}`.", response_type="ephemeral")
            return
        await respond(response_type="ephemeral", **blocks.run_status(run).payload())

    async def _switch(self, verb: str, reason: str, user: str, respond: AsyncRespond) -> None:
        """`/incident pause [reason]` or `/incident resume`, if `user` may."""
        policy = self._deps.policy
        groups = await self._members.groups_of(user, groups_that_may_pause(policy))
        refusal = why_not_allowed_to_pause(policy, user, groups)
        if refusal is not None:
            text = f"You may not {verb} incident-bot: {refusal}. Nothing was changed."
        elif verb == "pause":
            typed = redact_text(reason)  # typed in Slack: untrusted
            text = (await pause(self._deps, who=user, reason=typed, source="slack")).describe()
        else:
            text = (await resume(self._deps, who=user)).describe()
        log.info("slack: /incident %s", verb, extra={"user": user, "refused": bool(refusal)})
        await respond(text=blocks.escape(text), response_type="ephemeral")

    async def _cancel(self, run_id: str, user: str, respond: AsyncRespond) -> None:
        text = await self.cancel(run_id, user=user)
        await respond(text=text, response_type="ephemeral")

    async def investigate(
        self,
        question: str,
        *,
        user: str,
        channel: str,
        ts: str | None,
        thread: str | None = None,
        context: str = "",
        run_id: str | None = None,
    ) -> Run:
        """Start an ad-hoc run for `question`; its thread goes to `channel` (or `thread`).

        `key=value` words in the question become the alert's labels, so policies,
        runbooks and tool scopes apply to it as to an alert with those labels. With
        `run_id`, a second call (a retried event whose first handling failed half-way)
        carries on with the run the first one created instead of starting another.
        """
        origin = ts or hashlib.sha256(f"{channel}{user}{question}".encode()).hexdigest()[:16]
        labels = {k: v for k, v in _LABEL.findall(question)}
        annotations = {"question": question, "requested_by": user}
        if context:
            annotations["thread"] = context
        alert = Alert(
            source="slack",
            fingerprint=hashlib.sha256(f"{channel}:{origin}".encode()).hexdigest()[:16],
            group_key=f"slack:{channel}:{origin}",
            title=blocks.cut(question, 200),
            labels=labels,
            annotations=annotations,
        )
        try:
            run = await start_run(self._deps, alert, trigger="slack", run_id=run_id)
        except RunExists:
            assert run_id is not None  # noqa: S101 - only a given id can exist already
            run = await self._deps.store.load(run_id)
        refs = {"channel": channel, "requested_by": user}
        await self._refs.set(run.id, refs | ({"thread_ts": thread} if thread else {}))
        await self._deps.queue.enqueue(run.id, "start")
        log.info("slack investigation started", extra={"run_id": run.id})
        # Its thread shows it queued at once, posted after the answer: the run is safe in
        # Redis and queued, and a mention is answered only when this returns.
        self._after_ack.run(None, "post the run's thread", lambda: self._show(run), tell=None)
        return run

    async def cancel(self, run_id: str, *, user: str) -> str:
        """Cancel a run that is not being worked on right now, if `user` may change it
        (`bot.run_permissions`); returns the answer."""
        store = self._deps.store
        shown = _shown(run_id)
        try:
            refusal = await self._refusal(await store.load(run_id), user)
        except RunNotFound:
            return f"No run `{shown}`."
        if refusal is not None:
            return f"You may not cancel `{shown}`: {refusal}. Nothing was changed."
        owner = f"{self._deps.owner}/cancel"
        try:
            await store.acquire_lease(run_id, owner, self._deps.settings.lease_seconds)
        except LeaseHeld:
            return f"`{run_id}` is being worked on right now; try again in a moment."
        try:
            run = await store.load(run_id)
            if run.status.terminal or run.status in _BUSY:
                return f"`{run_id}` is {blocks.status_label(run.status)}: it cannot be cancelled."
            refusal = await self._refusal(run, user)  # its proposal may have changed since
            if refusal is not None:
                return f"You may not cancel `{run_id}`: {refusal}. Nothing was changed."
            checkpoints = Checkpointer(
                store=store,
                metrics=self._deps.metrics,
                owner=owner,
                listener=self._threads.on_checkpoint,
                memory=self._deps.memory,
            )
            await checkpoints.write(
                run.model_copy(
                    update={
                        "status": RunStatus.CANCELLED,
                        "outcome": f"cancelled in Slack by {user}",
                    }
                )
            )
            await checkpoints.audit(run_id, "cancelled", user=user, via="slack")
        except RunNotFound:
            return f"No run `{run_id}`."
        finally:
            await store.release_lease(run_id, owner)
        log.info("run cancelled in slack", extra={"run_id": run_id, "user": user})
        return f"`{run_id}` is cancelled."

    async def _refusal(self, run: Run, user: str) -> str | None:
        """Why `user` may not change the run (their groups looked up in Slack), or None."""
        policy, now = self._deps.policy, utcnow()
        among = await groups_that_may_change(policy, run, now=now)
        groups = await self._members.groups_of(user, among)
        return await why_not_allowed_to_change(policy, run, user, groups, now=now)

    async def _thread_context(
        self, client: AsyncWebClient, channel: str, thread: str, before: str
    ) -> str:
        """The thread's messages up to the mention, oldest first, cut to a budget."""
        answer = await client.conversations_replies(channel=channel, ts=thread, limit=50)
        lines = [
            f"{m.get('user') or m.get('bot_id') or '?'}: {m.get('text', '')}"
            for m in answer.get("messages") or []
            if float(m.get("ts", 0)) < float(before)
        ]
        text = "\n".join(lines)
        return text if len(text) <= CONTEXT_CHARS else "…" + text[-CONTEXT_CHARS:]


def _run_id_for(channel: str, ts: str) -> str:
    """The run of the mention at `ts` in `channel`: the same for every delivery of it."""
    return "run-" + hashlib.sha256(f"slack-mention:{channel}:{ts}".encode()).hexdigest()[:12]


def _shown(run_id: str) -> str:
    """A run id as typed by someone, safe to echo."""
    return blocks.escape(blocks.cut(run_id, 80))


def _retry_later(reason: str) -> BoltResponse:
    return BoltResponse(status=503, body={"error": reason})
