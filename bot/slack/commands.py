"""`/incident` and `@mention`: ad-hoc investigations, the list of runs, status and cancel.

Every listener acks first; an investigation is a run like any other (an `Alert` from
source `slack`) put on the work queue, and its thread is posted by the thread listener.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.checkpoints import Checkpointer
from bot.deps import Deps
from bot.errors import LeaseHeld, RunNotFound
from bot.models import Alert, Run, RunStatus
from bot.runs import start_run
from bot.slack import blocks
from bot.slack.refs import MessageRefs
from bot.slack.threads import SlackThreads

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LABEL = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)=([^\s,;]+)")
CONTEXT_CHARS = 4000
_BUSY = {RunStatus.EXECUTING, RunStatus.VERIFYING}


class Commands:
    """The `/incident` command and `app_mention` events."""

    def __init__(self, deps: Deps, threads: SlackThreads, refs: MessageRefs) -> None:
        self._deps = deps
        self._threads = threads
        self._refs = refs

    async def incident(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        """`/incident investigate <question> | list | status <run> | cancel <run> | help`."""
        verb, _, rest = str(command.get("text") or "").strip().partition(" ")
        rest = rest.strip()
        match verb.lower():
            case "investigate" if rest:
                await ack(text=f"Investigating: {blocks.cut(rest, 200)}", response_type="ephemeral")
                await self.investigate(
                    rest, user=command["user_id"], channel=command["channel_id"], ts=None
                )
            case "list":
                await ack()
                runs = await self._deps.store.list_runs(limit=40, active_only=True)
                await respond(response_type="ephemeral", **blocks.run_list(runs).payload())
            case "status" if rest:
                await ack()
                try:
                    run = await self._deps.store.load(rest.split()[0])
                except RunNotFound:
                    await respond(text=f"No run `{rest.split()[0]}`.", response_type="ephemeral")
                    return
                await respond(response_type="ephemeral", **blocks.run_status(run).payload())
            case "cancel" if rest:
                await ack()
                text = await self.cancel(rest.split()[0], user=command["user_id"])
                await respond(text=text, response_type="ephemeral")
            case _:
                await ack(text=blocks.HELP, response_type="ephemeral")

    async def mention(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        """`@incident-bot <question>` in a channel or thread: investigate it there."""
        channel, ts = event["channel"], event["ts"]
        thread = event.get("thread_ts") or ts
        question = _MENTION.sub("", str(event.get("text") or "")).strip()
        if not question:
            await client.chat_postMessage(channel=channel, thread_ts=thread, text=blocks.HELP)
            return
        context = ""
        if event.get("thread_ts"):
            context = await self._thread_context(client, channel, event["thread_ts"], ts)
        await self.investigate(
            question,
            user=event.get("user", ""),
            channel=channel,
            ts=ts,
            thread=thread,
            context=context,
        )

    async def investigate(
        self,
        question: str,
        *,
        user: str,
        channel: str,
        ts: str | None,
        thread: str | None = None,
        context: str = "",
    ) -> Run:
        """Start an ad-hoc run for `question`; its thread goes to `channel` (or `thread`).

        `key=value` words in the question become the alert's labels, so policies,
        runbooks and tool scopes apply to it as to an alert with those labels.
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
        run = await start_run(self._deps, alert, trigger="slack")
        refs = {"channel": channel, "requested_by": user}
        await self._refs.set(run.id, refs | ({"thread_ts": thread} if thread else {}))
        await self._deps.queue.enqueue(run.id, "start")
        log.info("slack investigation started", extra={"run_id": run.id})
        await self._threads.on_checkpoint(run, ())  # its thread shows it queued at once
        return run

    async def cancel(self, run_id: str, *, user: str) -> str:
        """Cancel a run that is not being worked on right now; returns the answer."""
        store = self._deps.store
        owner = f"{self._deps.owner}/cancel"
        try:
            await store.acquire_lease(run_id, owner, self._deps.settings.lease_seconds)
        except LeaseHeld:
            return f"`{run_id}` is being worked on right now; try again in a moment."
        try:
            run = await store.load(run_id)
            if run.status.terminal or run.status in _BUSY:
                return f"`{run_id}` is {blocks.status_label(run.status)}: it cannot be cancelled."
            checkpoints = Checkpointer(
                store=store,
                metrics=self._deps.metrics,
                owner=owner,
                listener=self._threads.on_checkpoint,
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
        return f"`{run_id}` is cancelled."

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
