"""`incident-bot runs similar RUN_ID`: the past incidents most like a run (`bot.memory`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bot.deps import open_deps
from bot.memory import SIMILAR
from bot.models import IncidentRecord
from bot.settings import Settings

EXIT_OK = 0


def add_similar_command(runs: Any) -> None:
    """Register `runs similar` on the `runs` subparsers."""
    similar = runs.add_parser(
        "similar", help="the past incidents most like a run: same alert and service first"
    )
    similar.add_argument("run_id")
    similar.add_argument("--limit", type=int, default=SIMILAR)
    similar.add_argument("--json", action="store_true")
    similar.set_defaults(handler=runs_similar)


async def runs_similar(args: argparse.Namespace, settings: Settings) -> int:
    """Print the records of the past runs most like `args.run_id`, most alike first."""
    async with open_deps(settings, tool_sources=False) as deps:
        run = await deps.store.load(args.run_id)
        records = await deps.memory.similar(run, limit=args.limit)
    if args.json:
        print(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return EXIT_OK
    if not records:
        print(f"no past incidents like {run.id}")
    for record in records:
        print(_line(record))
    return EXIT_OK


def _line(record: IncidentRecord) -> str:
    where = "/".join(v for v in (record.namespace, record.service) if v)
    lines = [
        f"{record.run_id}  {record.status.value:<16} ended {record.ended_at:%Y-%m-%d %H:%M} UTC"
        f"  {record.alertname or record.title}{' on ' + where if where else ''}",
    ]
    said = record.headline or record.summary
    if said:
        lines.append(f"    {said}")
    if record.action:
        approved = ", ".join(record.approved_by) or "nobody"
        lines.append(f"    action: {record.action} on {record.target} (approved by {approved})")
    if record.thread_ts:
        lines.append(f"    slack: channel {record.channel}, thread {record.thread_ts}")
    return "\n".join(lines)
