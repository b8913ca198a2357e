"""Charts in a run's thread: the signal that fired, and the recovery after an action.

`SlackThreads.show` asks for them as it shows a run; each is drawn and uploaded once per
run (`uploads.py` claims it across replicas) in a background task whose reference is
kept, and the PNG is rendered in a child process (`ChildRenderer`) so that the event loop
never waits for it, nor for the GIL it would hold.
A chart is a help, not a step: a query, render or upload error is logged with the run id
and counted in `incident_bot_charts_total`, and the run goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Literal

from slack_sdk.web.async_client import AsyncWebClient

from bot.charts import ChildRenderer, shorten
from bot.deps import Deps
from bot.models import Run, RunStatus
from bot.signals import SignalChart, chart_of
from bot.slack.blocks import cut, escape
from bot.slack.refs import MessageRefs
from bot.slack.uploads import ref_name, upload_once

log = logging.getLogger(__name__)

ChartName = Literal["signal", "recovery"]
_EARLY = {RunStatus.QUEUED, RunStatus.INVESTIGATING}
_TITLES: dict[ChartName, str] = {"signal": "The signal that fired", "recovery": "Recovery"}
_REMEMBERED = 10_000


class ThreadCharts:
    """Uploads the signal and recovery charts of runs into their threads."""

    def __init__(self, deps: Deps, client: AsyncWebClient, refs: MessageRefs) -> None:
        self._deps = deps
        self._client = client
        self._refs = refs
        self._asked: set[tuple[str, ChartName]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._renderer = ChildRenderer()

    def request(self, run: Run, channel: str, thread: str, refs: Mapping[str, str]) -> None:
        """Start uploading the charts the run should have by now and does not have yet."""
        names = [
            n
            for n in wanted(run)
            if (run.id, n) not in self._asked and f"{ref_name(n)}.ts" not in refs
        ]
        if not names:
            return
        if len(self._asked) > _REMEMBERED:
            self._asked.clear()
        self._asked.update((run.id, n) for n in names)
        task = asyncio.create_task(self._upload_all(run, names, channel, thread))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Wait for the uploads under way, then stop the renderer's child."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._renderer.close()

    async def _upload_all(
        self, run: Run, names: list[ChartName], channel: str, thread: str
    ) -> None:
        for name in names:
            outcome = await self._upload(run, name, channel, thread)
            self._deps.metrics.charts.labels(name, outcome).inc()

    async def _upload(self, run: Run, name: ChartName, channel: str, thread: str) -> str:
        try:
            if name == "recovery" and not await self._acted(run):
                return "no_data"
            chart = await chart_of(run, self._deps.store, self._deps.action_context)
            if chart is None:
                return "no_data"
            png = await self._renderer.render(
                chart.lines,
                title=shorten(f"{_TITLES[name]}: {chart.signal.query}", 95),
                marks=chart.marks,
                threshold=chart.signal.threshold,
            )
            uploaded = await upload_once(
                self._refs,
                self._client,
                run_id=run.id,
                name=name,
                owner=self._deps.owner,
                channel=channel,
                thread_ts=thread,
                filename=f"{name}.png",
                content=png,
                title=f"{_TITLES[name]}: {run.alert.title}",
                comment=comment(name, run, chart),
            )
        except Exception:  # a background Slack write: log it with the run id, never raise
            log.exception("slack: could not upload the %s chart", name, extra={"run_id": run.id})
            return "failed"
        return "uploaded" if uploaded else "duplicate"

    async def _acted(self, run: Run) -> bool:
        proposal = run.proposal
        if proposal is None:
            return False
        return await self._deps.store.action_record(run.id, proposal.id) is not None


def wanted(run: Run) -> list[ChartName]:
    """The charts a run's thread should have now: the signal once its proposal is shown,
    the recovery too once it ended after an action (checked when drawing it)."""
    if run.proposal is None or run.status in _EARLY:
        return []
    if run.status.terminal and run.status not in (RunStatus.REJECTED, RunStatus.EXPIRED):
        return ["signal", "recovery"]
    return ["signal"]


def comment(name: ChartName, run: Run, chart: SignalChart) -> str:
    """The message that comes with a chart: its query and where the signal is now."""
    quoted = chart.signal.query.replace("`", "'")
    query = f"`{escape(cut(quoted, 500))}`"
    latest = chart.lines[0].points[-1][1]
    if name == "signal":
        return f"{_TITLES[name]}: {query} (now {latest:.4g})"
    action = run.proposal.action if run.proposal is not None else "the action"
    return f"After `{escape(action)}`: {query} is now {latest:.4g}"
