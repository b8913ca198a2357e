"""The "Similar past incidents" reply: the records of earlier runs like this one
(`bot.memory`) in the run's thread, each with a link to its own thread.

Posted once per run (claimed in `refs.py` under `similar`), right after the root message,
and only when there are any; a run with none is marked `similar.none` so later
checkpoints do not look again. Links come from `chat.getPermalink`, which knows the
workspace's URL and the thread form of a link (no scope needed; hundreds of calls a
minute allowed, at most three here per run); a record whose thread is gone is listed
without a link.
"""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.models import IncidentRecord, Run
from bot.slack import blocks
from bot.slack.pacing import ChannelPacer
from bot.slack.refs import MessageRefs

NAME = "similar"
TITLE = "Similar past incidents"


class SimilarNote:
    """Posts a run's "Similar past incidents" reply, once."""

    def __init__(
        self, deps: Deps, client: AsyncWebClient, refs: MessageRefs, pacer: ChannelPacer
    ) -> None:
        self._deps = deps
        self._client = client
        self._refs = refs
        self._pacer = pacer

    async def show(self, run: Run, channel: str, thread: str, refs: dict[str, str]) -> None:
        """Post the reply if it is due: not posted, not known to be empty, claimed here."""
        if f"{NAME}.ts" in refs or f"{NAME}.none" in refs:
            return
        past = await self._deps.memory.similar(run)
        if not past:
            await self._refs.set(run.id, {f"{NAME}.none": "1"})
            return
        if not (await self._refs.claim(run.id, NAME, self._deps.owner)).mine:
            return
        try:
            message = similar_message(past, [await self._permalink(r) for r in past])
            async with self._pacer.turn(channel):
                answer = await self._client.chat_postMessage(
                    channel=channel, thread_ts=thread, **message.payload()
                )
        except BaseException:
            await self._refs.release(run.id, NAME)
            raise
        await self._refs.posted(run.id, NAME, str(answer["ts"]))

    async def _permalink(self, record: IncidentRecord) -> str | None:
        if not (record.channel and record.thread_ts):
            return None
        try:
            answer = await self._client.chat_getPermalink(
                channel=record.channel, message_ts=record.thread_ts
            )
        except SlackApiError:
            return None  # the thread was deleted or the bot left the channel
        link = answer.get("permalink")
        return str(link) if link else None


def similar_message(
    records: Sequence[IncidentRecord], links: Sequence[str | None]
) -> blocks.SlackMessage:
    """The reply: each past run's status, what it found, what was done, and its thread."""
    lines = [blocks.section(f"*{TITLE}*")]
    for record, link in zip(records, links, strict=True):
        lines.append(blocks.section(_entry(record, link)))
    text = f"{TITLE}: " + ", ".join(r.run_id for r in records)
    return blocks.SlackMessage(text, tuple(lines))


def _entry(record: IncidentRecord, link: str | None) -> str:
    thread = f"<{link}|thread>" if link else "no thread"
    head = (
        f"{blocks.status_label(record.status)} · `{record.run_id}` · "
        f"{record.ended_at:%Y-%m-%d %H:%M} UTC · {thread}"
    )
    said = record.headline or record.summary or record.title
    lines = [head, blocks.cut(blocks.escape(said), 600)]
    if record.action:
        lines.append(f"Action: `{record.action}` on {blocks.escape(record.target)}")
    return "\n".join(lines)
