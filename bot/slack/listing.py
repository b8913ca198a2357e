"""`/incident list`: the runs that need someone first, oldest first and each with why
(awaiting approval, or ended needing attention, failed or expired within `RECENT`), then
the other open runs, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from slack_sdk.models.blocks import Block

from bot.approvals import describe_target
from bot.models import Run, RunStatus
from bot.slack.blocks import NEEDS_SOMEONE, SlackMessage, cut, escape, section, status_label

LISTED = 40  # runs per part of the list
LINE_CHARS = 290  # ten lines fit a section
RECENT = timedelta(hours=24)  # ended runs that need someone stay listed so long


def run_list(runs: Sequence[Run], *, now: datetime) -> SlackMessage:
    """The runs that need someone (awaiting approval, or ended needing attention, failed or
    expired within `RECENT`), oldest first with why; then the other open runs, newest first.
    """
    unique = list({r.id: r for r in runs}.values())
    needing = sorted((r for r in unique if _needs_someone(r, now)), key=_needing_since)
    listed = {r.id for r in needing}
    others = sorted(
        (r for r in unique if not r.status.terminal and r.id not in listed),
        key=lambda r: r.created_at,
        reverse=True,
    )
    if not needing and not others:
        text = "No open runs, and none needs someone."
        return SlackMessage(text, (section(text),))
    blocks: list[Block] = []
    if needing:
        blocks.append(section(f"*Need someone ({len(needing)}), oldest first*"))
        blocks += _lines([_needing_line(r, now) for r in needing[:LISTED]])
    if others:
        blocks.append(section(f"*Other open runs ({len(others)}), newest first*"))
        lines = [f"`{r.id}` {status_label(r.status)} · {escape(r.alert.title)}" for r in others]
        blocks += _lines(lines[:LISTED])
    text = f"{len(needing)} runs need someone, {len(others)} other open runs"
    return SlackMessage(text, tuple(blocks))


def _needs_someone(run: Run, now: datetime) -> bool:
    if run.status not in NEEDS_SOMEONE:
        return False
    return not run.status.terminal or now - run.updated_at <= RECENT


def _needing_since(run: Run) -> datetime:
    """Since when the run waits for a person: its proposal, or its end."""
    if run.status is RunStatus.AWAITING_APPROVAL and run.proposal is not None:
        return run.proposal.proposed_at
    return run.updated_at


def _needing_line(run: Run, now: datetime) -> str:
    """`run-1 ⌛ Expired for 2h 5m · HighErrorRate on checkout: why`."""
    why = NEEDS_SOMEONE[run.status]
    if run.status.terminal and run.outcome:
        why = escape(cut(run.outcome, 160))
    elif run.proposal is not None:
        why += f" (`{escape(run.proposal.action)}` on {escape(describe_target(run.proposal))})"
    waited = _duration(now - _needing_since(run))
    line = f"`{run.id}` {status_label(run.status)} for {waited} · {escape(run.alert.title)}: {why}"
    return cut(line, LINE_CHARS)


def _duration(elapsed: timedelta) -> str:
    """`45s`, `12m`, `2h 5m`, `3d 4h`."""
    seconds = max(int(elapsed.total_seconds()), 0)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{seconds}s"


def _lines(lines: Sequence[str]) -> list[Block]:
    """Sections of at most ten lines each."""
    return [section("\n".join(lines[i : i + 10])) for i in range(0, len(lines), 10)]
