"""Alert threads: a run as Slack shows it, kept up to date by a listener on the run loop.

One root message per run in the routed channel, updated in place as the run moves;
in its thread: one progress message (edited, at most once per interval), the findings,
the proposal with its buttons, and the outcome (which pages the route's escalation
target when the run needs someone). This listener runs after every
checkpoint of whichever replica drives the run; every message is posted by whoever
claims it first in Redis (`refs.py`), so a run never gets two of anything. A replica
shows a run's checkpoints in order; the `executing` one's beside the drive, so that an
approved action never waits for Slack (a slow or failing Slack delays only the messages).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.approvals import assess
from bot.dedup import Admission
from bot.deps import Deps
from bot.errors import RunNotFound
from bot.models import Run, RunStatus, Step, ToolCallPart, ToolResultPart, utcnow
from bot.progress import mark, tool_line
from bot.remediation import dry_run
from bot.slack import blocks
from bot.slack.approvers import GroupMembers, gate
from bot.slack.charts import ThreadCharts
from bot.slack.escalation import Pager
from bot.slack.pacing import ChannelPacer, Coalescer
from bot.slack.refs import MessageRefs
from bot.slack.report_file import post_report
from bot.slack.similar import SimilarNote
from policies.routing import channel_for

log = logging.getLogger(__name__)

PROGRESS_LINES = 30
_EARLY = {RunStatus.QUEUED, RunStatus.INVESTIGATING}


class SlackThreads:
    """Shows runs in Slack as they are checkpointed (a `Listener` for the run loop)."""

    def __init__(self, deps: Deps, client: AsyncWebClient, refs: MessageRefs) -> None:
        self._deps = deps
        self._client = client
        self._refs = refs
        self._pager = Pager(deps.policy, refs, GroupMembers(client))
        interval = deps.settings.slack_min_interval_seconds
        self._pacer = ChannelPacer(interval)
        self._progress = Coalescer(interval)
        self._tool_names: dict[str, str] = {}
        self._notes: set[asyncio.Task[None]] = set()
        self._similar = SimilarNote(deps, client, refs, self._pacer)
        self._charts = ThreadCharts(deps, client, refs)
        self._pause = deps.pause
        # Per run: the show of its `executing` checkpoint, while it runs beside the drive.
        self._showing: dict[str, asyncio.Task[None]] = {}

    async def on_checkpoint(self, run: Run, steps: Sequence[Step]) -> None:
        """Bring the run's Slack messages up to date, after those of its earlier
        checkpoints; a Slack failure never stops the run. An `executing` checkpoint's
        are brought up to date beside the drive: the action does not wait for them."""
        before = self._showing.pop(run.id, None)
        if run.status is not RunStatus.EXECUTING:
            await self._show_after(before, run, steps)
            return
        task = asyncio.create_task(self._show_after(before, run, steps))
        self._showing[run.id] = task
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)
        task.add_done_callback(lambda done: self._forget_showing(run.id, done))

    async def _show_after(
        self, before: asyncio.Task[None] | None, run: Run, steps: Sequence[Step]
    ) -> None:
        """`show`, once the show of an earlier checkpoint (`before`) has ended."""
        if before is not None:
            await asyncio.wait([before])  # it logs its own failure
        try:
            await self.show(run, steps)
        except Exception:  # the Slack boundary: log with the run id, keep the run going
            log.exception("slack: could not show the run", extra={"run_id": run.id})

    def _forget_showing(self, run_id: str, done: asyncio.Task[None]) -> None:
        if self._showing.get(run_id) is done:
            del self._showing[run_id]

    async def close(self) -> None:
        """Write pending shows, progress edits and notes."""
        await asyncio.gather(*self._notes, return_exceptions=True)
        await self._progress.close()
        await self._charts.close()

    def on_admitted(self, admission: Admission) -> None:
        """An alert delivery reached a run: note in its thread that its alerts resolved."""
        if admission.outcome == "resolved" and admission.run_id is not None:
            task = asyncio.create_task(self._note_resolved(admission.run_id))
            self._notes.add(task)
            task.add_done_callback(self._notes.discard)

    async def _note_resolved(self, run_id: str) -> None:
        try:
            refs = await self._refs.load(run_id)
            channel, thread = refs.get("channel"), refs.get("thread_ts")
            if channel and thread:
                note = blocks.SlackMessage(
                    "The alerts of this group resolved.",
                    (blocks.section("✅ The source reports this group's alerts *resolved*."),),
                )
                await self._post_once_named(run_id, "alerts_resolved", channel, thread, [note])
        except Exception:  # a background Slack write: log it with the run id
            log.exception("slack: could not note the resolution", extra={"run_id": run_id})

    def channel_for(self, run: Run) -> str | None:
        """The channel of a run from an alert: the policy's routing, else the default."""
        return channel_for(self._deps.policy, run.alert.labels) or self._deps.settings.slack_channel

    async def show(self, run: Run, steps: Sequence[Step] = ()) -> None:
        """Post or update what Slack should show of the run now."""
        refs = await self._refs.load(run.id)
        channel = refs.get("channel") or self.channel_for(run)
        if channel is None:
            log.warning("slack: no channel for the run", extra={"run_id": run.id})
            return
        thread = await self._root(run, refs, channel)
        if thread is None:
            return  # another replica is posting the root message right now
        await self._similar.show(run, channel, thread, refs)
        lines = self._progress_lines(steps)
        if lines or run.status not in _EARLY:
            await self._show_progress(run, channel, thread, lines)
        if run.proposal is not None and run.status not in _EARLY:
            if run.status is RunStatus.AWAITING_APPROVAL:
                await self._post_once(run, "findings", channel, thread, self._findings(run))
            await self._show_proposal(run, channel, thread)
        if run.status.terminal:
            self._progress.forget(run.id)
            if run.proposal is None:
                await self._post_once(run, "findings", channel, thread, self._findings(run))
            await self._post_outcome(run, channel, thread)
        self._charts.request(run, channel, thread, refs)

    async def post_missing(self, run: Run) -> list[str]:
        """Post the run's root, proposal and (once it ended) closing messages if they were
        never posted (a failed post is not retried otherwise); returns the names of those
        posted now. Every post is claimed first (`refs.py`), so a message being posted
        elsewhere is left alone."""
        refs = await self._refs.load(run.id)
        if (refs.get("channel") or self.channel_for(run)) is None:
            return []
        wanted = ["root"]
        if run.proposal is not None and run.status is RunStatus.AWAITING_APPROVAL:
            wanted.append(f"proposal:{run.proposal.id}")
        if run.status.terminal:
            wanted.append("final")
        missing = [name for name in wanted if f"{name}.ts" not in refs]
        if not missing:
            return []
        await self.show(run)
        after = await self._refs.load(run.id)
        return [name for name in missing if f"{name}.ts" in after]

    # -- the root message ------------------------------------------------------------
    async def redraw_root(self, run: Run) -> None:
        """Redraw the run's root message (as the run is now) if it was posted and shows
        another pause than the one in force; a message whose status is behind is left to
        the run's next checkpoint."""
        refs = await self._refs.load(run.id)
        channel = refs.get("channel")
        try:
            run = await self._deps.store.load(run.id)
        except RunNotFound:
            return
        if "root.ts" in refs and channel and refs.get("root_status") == run.status.value:
            await self._root(run, refs, channel)

    async def _root(self, run: Run, refs: dict[str, str], channel: str) -> str | None:
        paused = None if run.status.terminal else await self._pause.current()
        drawn = paused.marker if paused else ""
        ts = refs.get("root.ts")
        if ts is None:
            claim = await self._refs.claim(run.id, "root", self._deps.owner)
            if not claim.mine:
                return refs.get("thread_ts") or claim.ts
            try:
                message = blocks.root_message(run, paused=paused)
                ts = await self._post(channel, message, refs.get("thread_ts"))
            except BaseException:
                await self._refs.release(run.id, "root")
                raise
            thread = refs.get("thread_ts") or ts
            await self._refs.posted(
                run.id,
                "root",
                ts,
                channel=channel,
                thread_ts=thread,
                root_status=run.status,
                root_pause=drawn,
            )
            return thread
        if refs.get("root_status") != run.status.value or refs.get("root_pause", "") != drawn:
            await self._update(channel, ts, blocks.root_message(run, paused=paused))
            await self._refs.set(run.id, {"root_status": run.status.value, "root_pause": drawn})
        return refs.get("thread_ts") or ts

    # -- progress --------------------------------------------------------------------
    def _progress_lines(self, steps: Sequence[Step]) -> list[str]:
        if len(self._tool_names) > 10_000:
            self._tool_names.clear()
        lines = []
        for step in steps:
            for part in step.content:
                if isinstance(part, ToolCallPart):
                    self._tool_names[part.id] = part.name
                elif isinstance(part, ToolResultPart):
                    line = tool_line(part, self._tool_names.get(part.tool_use_id))
                    lines.append(blocks.progress_line(mark(part), line))
        return lines

    async def _show_progress(self, run: Run, channel: str, thread: str, lines: list[str]) -> None:
        await self._refs.add_progress(run.id, lines, PROGRESS_LINES)
        done = run.status not in _EARLY

        async def flush() -> None:
            shown = await self._refs.add_progress(run.id, [], PROGRESS_LINES)
            if not shown:
                return
            message = blocks.progress_message(shown, done=done, run_id=run.id)
            await self._post_or_update(run.id, "progress", channel, thread, message)

        if done and "progress.done" in await self._refs.load(run.id):
            return
        await self._progress.request(run.id, flush, now=done)
        if done:
            await self._refs.set(run.id, {"progress.done": "1"})

    # -- findings, proposal, outcome -------------------------------------------------
    @staticmethod
    def _findings(run: Run) -> list[blocks.SlackMessage]:
        return blocks.findings_messages(run.findings)

    async def _post_outcome(self, run: Run, channel: str, thread: str) -> None:
        """The closing reply, once; a run that needs someone says why and pages its
        route's escalation target in it (`escalation.py`: once per run, ever)."""
        if not (await self._refs.claim(run.id, "final", self._deps.owner)).mine:
            return
        escalation = None
        try:
            escalation = await self._pager.claim(run, self._deps.owner)
            ts = await self._post(channel, blocks.outcome_message(run, escalation), thread)
        except BaseException:
            await self._pager.unclaim(run, escalation)
            await self._refs.release(run.id, "final")
            raise
        await self._refs.posted(run.id, "final", ts)
        # The report follows in the background: it never holds up the run's checkpoint.
        task = asyncio.create_task(post_report(self._deps, self._refs, self._client, run))
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    async def _show_proposal(self, run: Run, channel: str, thread: str) -> None:
        assert run.proposal is not None  # noqa: S101 - checked by the caller
        name = f"proposal:{run.proposal.id}"
        refs = await self._refs.load(run.id)
        dry_run = refs.get(f"{name}.dry_run")
        if dry_run is None:
            dry_run = await self.dry_run(run)
            await self._refs.set(run.id, {f"{name}.dry_run": dry_run})
        message = await self.proposal_message(run, dry_run)
        shown = f"{run.status.value}:{len(run.decisions)}"
        if refs.get(f"{name}.shown") == shown:
            return
        await self._post_or_update(run.id, name, channel, thread, message)
        await self._refs.set(run.id, {f"{name}.shown": shown})

    async def proposal_message(self, run: Run, dry_run: str) -> blocks.SlackMessage:
        """The run's proposal message as it should look now (decisions included)."""
        assert run.proposal is not None  # noqa: S101
        requirement = await assess(self._deps.policy, run, run.proposal, now=utcnow())
        decisions = run.decisions or await self._deps.store.decisions(run.id, run.proposal.id)
        return blocks.proposal_message(
            run, dry_run=dry_run, gate=gate(requirement), decisions=decisions
        )

    async def dry_run(self, run: Run) -> str:
        """What the proposed action would change, in the action's own words."""
        assert run.proposal is not None  # noqa: S101
        return await dry_run(self._deps.actions, self._deps.action_context, run.proposal)

    async def update_proposal(self, run: Run) -> None:
        """Redraw the proposal message (after a decision), if it was posted."""
        assert run.proposal is not None  # noqa: S101
        name = f"proposal:{run.proposal.id}"
        refs = await self._refs.load(run.id)
        ts, channel = refs.get(f"{name}.ts"), refs.get("channel")
        if ts is None or channel is None:
            return
        dry_run = refs.get(f"{name}.dry_run") or ""
        await self._update(channel, ts, await self.proposal_message(run, dry_run))

    # -- Slack calls -----------------------------------------------------------------
    async def _post_once(
        self,
        run: Run,
        name: str,
        channel: str,
        thread: str,
        messages: Sequence[blocks.SlackMessage],
    ) -> None:
        await self._post_once_named(run.id, name, channel, thread, messages)

    async def _post_once_named(
        self,
        run_id: str,
        name: str,
        channel: str,
        thread: str,
        messages: Sequence[blocks.SlackMessage],
    ) -> None:
        if not messages or not (await self._refs.claim(run_id, name, self._deps.owner)).mine:
            return
        ts = ""
        for message in messages:
            ts = await self._post(channel, message, thread)
        await self._refs.posted(run_id, name, ts)

    async def _post_or_update(
        self, run_id: str, name: str, channel: str, thread: str, message: blocks.SlackMessage
    ) -> None:
        claim = await self._refs.claim(run_id, name, self._deps.owner)
        if claim.ts is not None:
            await self._update(channel, claim.ts, message)
        elif claim.mine:
            try:
                ts = await self._post(channel, message, thread)
            except BaseException:
                await self._refs.release(run_id, name)
                raise
            await self._refs.posted(run_id, name, ts)

    async def _post(self, channel: str, message: blocks.SlackMessage, thread: str | None) -> str:
        async with self._pacer.turn(channel):
            answer = await self._client.chat_postMessage(
                channel=channel, thread_ts=thread, **message.payload()
            )
        return str(answer["ts"])

    async def _update(self, channel: str, ts: str, message: blocks.SlackMessage) -> None:
        try:
            await self._client.chat_update(channel=channel, ts=ts, **message.payload())
        except SlackApiError as exc:
            if exc.response.get("error") != "message_not_found":
                raise
            log.warning("slack: message %s in %s is gone; not updating it", ts, channel)
