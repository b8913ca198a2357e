"""`incident-bot runs report`: a run's post-incident report; and the audit lines of
`runs show`, with wall-clock times and offsets from the run's start."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.deps import open_deps
from bot.report import load_report
from bot.report_markdown import duration, render_markdown
from bot.report_timeline import in_utc
from bot.settings import Settings
from bot.slack.refs import MessageRefs
from bot.store import AuditEvent

EXIT_OK = 0


def add_report_command(runs: Any) -> None:
    """Add `report` to the `runs` subcommands (`runs` is argparse's subparsers action)."""
    report: argparse.ArgumentParser = runs.add_parser(
        "report", help="a run's post-incident report: timeline, decisions, cost, thread"
    )
    report.add_argument("run_id")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown")
    report.set_defaults(handler=_runs_report)


async def _runs_report(args: argparse.Namespace, settings: Settings) -> int:
    """Print the report; an unknown run is `RunNotFound` (exit 1, like `runs show`)."""
    async with open_deps(settings, tool_sources=False) as deps:
        refs = MessageRefs(
            deps.store.redis,
            prefix=settings.key_prefix,
            retention_seconds=settings.retention_seconds,
        )
        report = await load_report(
            deps.store, refs, args.run_id, policy=deps.policy, slack=deps.slack
        )
    print(report.model_dump_json(indent=2) if args.format == "json" else render_markdown(report))
    return EXIT_OK


def audit_lines(audit: Sequence[AuditEvent], started: datetime) -> list[str]:
    """One line per audit event: its UTC time, the offset from `started`, event, data."""
    start = in_utc(started)
    lines = []
    for event in audit:
        at = event.at
        shown = f"{at:%H:%M:%S}" if at.date() == start.date() else f"{at:%Y-%m-%d %H:%M:%S}"
        shown += f".{at.microsecond // 1000:03d}"
        offset = duration((at - start).total_seconds())
        offset = offset if offset.startswith("-") else f"+{offset}"
        lines.append(f"{shown}  {offset:>12}  {event.event}  {json.dumps(event.data)[:120]}")
    return lines
