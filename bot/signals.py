"""The signal of a run, as its charts show it: which query, over which window, what marks.

The query is the proposal's verification check when it has one (it measures the problem
the action should end), else the alert's own expression. A trailing comparison
(`… > 0.05`) becomes the threshold line, so that the chart shows the values below it too.
The window runs from `LEAD_SECONDS` before the alert started (for an alert that had fired
long before the run, before the run's start) to now, at most `MAX_WINDOW_SECONDS`, and
ends exactly now so that the latest point is the current value.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.charts import Line, Mark, shorten
from bot.models import Decision, Run
from bot.remediation import check_from_alert
from bot.store import RunStore
from tools.prometheus import choose_step
from tools.prometheus_http import PrometheusAccess, Series, query_api

LEAD_SECONDS = 30 * 60
MAX_WINDOW_SECONDS = 6 * 3600
STALE_ALERT_SECONDS = 30 * 60
TOP_SERIES = 5
QUICK_SECONDS = 60  # an action done within this is marked once, when it was done

_COMPARISON = re.compile(
    r"^(?P<query>.+?)\s*(?:>=|<=|==|!=|>|<)\s*(?:bool\s+)?"
    r"(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$",
    re.DOTALL,
)
_SET_OPERATOR = re.compile(r"\b(?:and|or|unless)\b")


@dataclass(frozen=True, kw_only=True)
class Signal:
    """What to chart: a PromQL expression and the threshold it is judged by, if any."""

    query: str
    threshold: float | None


@dataclass(frozen=True, kw_only=True)
class SignalChart:
    """A signal's series over its window, with the run's moments marked."""

    signal: Signal
    lines: tuple[Line, ...]
    marks: tuple[Mark, ...]


def signal_of(run: Run) -> Signal | None:
    """The run's signal: its proposal's verification check, else the alert's expression."""
    proposal = run.proposal
    check = proposal.verify if proposal is not None and proposal.verify else check_from_alert(run)
    if check is None:
        return None
    query, threshold = split_comparison(check.query)
    return Signal(query=query, threshold=threshold if check.op == "absent" else check.threshold)


def split_comparison(expression: str) -> tuple[str, float | None]:
    """`expr > 0.05` → (`expr`, 0.05); an expression without a trailing comparison to a
    number (or with a set operator, which binds looser) comes back whole."""
    found = _COMPARISON.match(expression.strip())
    if found is None or _SET_OPERATOR.search(found["query"]):
        return expression, None
    return found["query"], float(found["value"])


async def chart_of(
    run: Run, store: RunStore, prometheus: PrometheusAccess, *, now: float | None = None
) -> SignalChart | None:
    """The run's signal over its window, with the alert, the approval and the action
    marked; None when the run has no signal or its query returns no series."""
    signal = signal_of(run)
    if signal is None:
        return None
    end = time.time() if now is None else now
    start, lines = await _over_window(run, signal, prometheus, end)
    if not lines:
        return None
    marks = [m for m in await marks_of(run, store) if start <= m.at.timestamp() <= end]
    return SignalChart(signal=signal, lines=tuple(lines), marks=tuple(marks))


async def lines_of(
    run: Run, prometheus: PrometheusAccess, *, now: float | None = None
) -> list[Line]:
    """The run's signal over its window (no marks: for the terminal's sparkline)."""
    signal = signal_of(run)
    if signal is None:
        return []
    _, lines = await _over_window(run, signal, prometheus, time.time() if now is None else now)
    return lines


async def _over_window(
    run: Run, signal: Signal, prometheus: PrometheusAccess, end: float
) -> tuple[float, list[Line]]:
    start, step = window(anchor(run), end)
    return start, await fetch_lines(prometheus, signal.query, start=start, end=end, step=step)


def alert_started(run: Run) -> datetime:
    """When the run's alert started firing (when the run began, if the alert does not say)."""
    return run.alert.starts_at or run.created_at


def anchor(run: Run) -> float:
    """Where the window is anchored: the alert's start, or for an alert that had been
    firing long before the run began, `STALE_ALERT_SECONDS` before the run."""
    started = alert_started(run).timestamp()
    return max(started, run.created_at.timestamp() - STALE_ALERT_SECONDS)


def window(anchored: float, end: float) -> tuple[float, int]:
    """(start, step) of the window from `LEAD_SECONDS` before `anchored` to `end`, a
    whole number of steps long and at most `MAX_WINDOW_SECONDS`."""
    wanted = min(max(end - anchored + LEAD_SECONDS, LEAD_SECONDS), MAX_WINDOW_SECONDS)
    step = choose_step(int(wanted))
    return end - math.ceil(wanted / step) * step, step


async def fetch_lines(
    prometheus: PrometheusAccess, query: str, *, start: float, end: float, step: int
) -> list[Line]:
    """The query's series over the window, the `TOP_SERIES` highest by latest value, each
    labelled by what tells it apart. Raises `PrometheusError` as `query_api` does."""
    params = {"query": query, "start": str(start), "end": str(end), "step": str(step)}
    data = await query_api(prometheus, "query_range", params)
    found = [] if isinstance(data.result, tuple) else data.result
    drawn = [(s.metric, _points(s)) for s in found]
    drawn = [(labels, points) for labels, points in drawn if points]
    drawn.sort(key=lambda item: item[1][-1][1], reverse=True)
    drawn = drawn[:TOP_SERIES]
    names = _legends([labels for labels, _ in drawn], query)
    return [Line(label=n, points=p) for n, (_, p) in zip(names, drawn, strict=True)]


def _points(series: Series) -> tuple[tuple[float, float], ...]:
    points = ((t, float(v)) for t, v in series.values)
    return tuple((t, v) for t, v in points if math.isfinite(v))


def _legends(metrics: list[dict[str, str]], query: str) -> list[str]:
    """Each series by the labels whose values differ between them (one series: all)."""
    keys = sorted({k for m in metrics for k in m})
    if len(metrics) > 1:
        keys = [k for k in keys if len({m.get(k, "") for m in metrics}) > 1]
    legends = [", ".join(f"{k}={m[k]}" for k in keys if k in m) for m in metrics]
    return [text or shorten(query, 60) for text in legends]


async def marks_of(run: Run, store: RunStore) -> list[Mark]:
    """The alert's start, the approval and the action's start and end, as chart marks."""
    fired = alert_started(run)
    marks = [Mark(at=fired, label=f"alert fired {_hhmm(fired)}")]
    proposal = run.proposal
    if proposal is None:
        return marks
    decisions = run.decisions or await store.decisions(run.id, proposal.id)
    approval = _approval(decisions)
    if approval is not None:
        label = f"{proposal.action} approved by {approval.user} {_hhmm(approval.at)}"
        marks.append(Mark(at=approval.at, label=label))
    record = await store.action_record(run.id, proposal.id)
    if record is None:
        return marks
    finished = record.finished_at
    if finished is None or (finished - record.started_at).total_seconds() >= QUICK_SECONDS:
        marks.append(Mark(at=record.started_at, label=f"action started {_hhmm(record.started_at)}"))
    if finished is not None:
        done = "done" if record.state == "succeeded" else record.state
        marks.append(Mark(at=finished, label=f"action {done} {_hhmm(finished)}"))
    return marks


def _approval(decisions: list[Decision]) -> Decision | None:
    """The approval that let the action run: the last one given."""
    approvals = [d for d in decisions if d.verdict == "approve"]
    return approvals[-1] if approvals else None


def _hhmm(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M")
