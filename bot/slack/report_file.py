"""The post-incident report as a Markdown file in the run's thread, once the run ends.

Uploaded once per run across replicas (`uploads.upload_once` claims `file:report`); it
is best effort: a failure is logged with the run id and never touches the run.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.models import Run
from bot.report import load_report
from bot.report_markdown import render_markdown
from bot.slack.refs import MessageRefs
from bot.slack.uploads import upload_once

log = logging.getLogger(__name__)

REPORT = "report"  # the upload's name in the run's Slack references


async def post_report(deps: Deps, refs: MessageRefs, client: AsyncWebClient, run: Run) -> None:
    """Upload `incident-<run id>.md` into the thread, unless it is there already."""
    try:
        report = await load_report(deps.store, refs, run.id, policy=deps.policy, slack=client)
        if report.thread is None:
            return  # no thread recorded: nowhere to post it
        await upload_once(
            refs,
            client,
            run_id=run.id,
            name=REPORT,
            owner=deps.owner,
            channel=report.thread.channel,
            thread_ts=report.thread.thread_ts,
            filename=f"incident-{run.id}.md",
            content=render_markdown(report).encode(),
            title=f"Incident report: {run.alert.title}"[:250],
            comment=(
                "Post-incident report: timeline, decisions, action, cost "
                f"(`incident-bot runs report {run.id}`)."
            ),
        )
    except Exception:  # a background Slack upload: log it with the run id
        log.exception("slack: could not post the run's report", extra={"run_id": run.id})
