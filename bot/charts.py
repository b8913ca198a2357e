"""Charts of a signal: a PNG for Slack (matplotlib, Agg) and a sparkline for the terminal.

Rendering is CPU work and matplotlib is slow to import: `render_png` imports it on first
use. It uses matplotlib's object API (a `Figure` on its own Agg canvas, no pyplot), so
renders share no state. Async callers render through a `ChildRenderer`, in a process of
its own: a render holds the GIL for most of its time, and in a thread of the bot's it
kept the event loop (Slack's acks, the drives) waiting for it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import math
import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime

WIDTH_PX, HEIGHT_PX, DPI = 800, 300, 100
_BARS = "▁▂▃▄▅▆▇█"
_TICK_MINUTES = (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720)
_MAX_TICKS = 8
_MARK_COLORS = ("tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:gray")


@dataclass(frozen=True, kw_only=True)
class Line:
    """One series to draw: its legend and its (unix time, value) points."""

    label: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, kw_only=True)
class Mark:
    """A moment to mark with a vertical line: `rollback approved by U123 14:02`."""

    at: datetime
    label: str


def render_png(
    series: Sequence[Line],
    *,
    title: str,
    marks: Sequence[Mark] = (),
    threshold: float | None = None,
) -> bytes:
    """The series as an 800 by 300 pixel PNG: UTC time (HH:MM) across, the value up, the threshold
    as a dashed horizontal line and each mark as a dotted vertical line; the legend, right
    of the plot, names the series, the threshold and the marks."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for line in series:
        axes.plot(*zip(*line.points, strict=True), label=line.label, linewidth=1.6)
    if threshold is not None:
        axes.axhline(
            threshold,
            color="tab:red",
            linestyle="--",
            linewidth=1,
            label=f"threshold {threshold:g}",
        )
    for mark, color in zip(marks, itertools.cycle(_MARK_COLORS)):
        axes.axvline(
            mark.at.timestamp(), color=color, linestyle=":", linewidth=1.4, label=mark.label
        )
    times = [t for line in series for t, _ in line.points] + [m.at.timestamp() for m in marks]
    if times:
        ticks = minute_ticks(min(times), max(times))
        axes.set_xticks(ticks, [f"{datetime.fromtimestamp(t, UTC):%H:%M}" for t in ticks])
    axes.set_title(title, fontsize=9, loc="left")
    axes.set_xlabel("UTC", fontsize=8)
    axes.tick_params(labelsize=8)
    axes.grid(alpha=0.3)
    if series or marks or threshold is not None:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _exit_with_parent() -> None:
    """In the renderer's child, at its start: exit when the bot's process ends, however
    it ends. A killed bot (SIGKILL, the OOM killer) stops nothing, and the child would
    otherwise stay orphaned, holding matplotlib's memory."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_after, args=(parent,), name="exit-with-parent", daemon=True
        ).start()


def _exit_after(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()  # returns when the parent's sentinel closes: it exited
    os._exit(0)


class ChildRenderer:
    """Renders PNGs (`render_png`) one at a time in a child process, started at the first
    render (spawned: nothing of this process's state is copied into it) and started again
    after one that died (that render fails: `BrokenProcessPool`). The child exits with
    the bot's process, even a killed one."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def render(
        self,
        series: Sequence[Line],
        *,
        title: str,
        marks: Sequence[Mark] = (),
        threshold: float | None = None,
    ) -> bytes:
        """`render_png` of the arguments, drawn in the child."""
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=context, initializer=_exit_with_parent
            )
        pool = self._pool
        work = functools.partial(
            render_png, tuple(series), title=title, marks=tuple(marks), threshold=threshold
        )
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except BrokenProcessPool:
            if self._pool is pool:  # the next render starts another child
                self.close()
            raise

    def close(self) -> None:
        """Stop the child (renders still waiting are cancelled)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def minute_ticks(start: float, end: float) -> list[float]:
    """Tick times between `start` and `end` (unix seconds) on round minutes, at most
    `_MAX_TICKS` of them."""
    span = max(end - start, 60.0)
    every = 60 * next((m for m in _TICK_MINUTES if span / (m * 60) <= _MAX_TICKS), 1440)
    first = math.ceil(start / every) * every
    return [float(first + i * every) for i in range(int((end - first) // every) + 1)]


def shorten(text: str, width: int) -> str:
    """`text` on one line of at most `width` characters (an ellipsis where it was cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """The values as a line of ▁▂▃▄▅▆▇█ at most `width` wide (averaged into buckets);
    NaN and infinite values are left out."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return ""
    if len(finite) > width:
        size = len(finite) / width
        finite = [
            _mean(finite[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)])
            for i in range(width)
        ]
    low, high = min(finite), max(finite)
    if high == low:
        return _BARS[0] * len(finite)
    top = len(_BARS) - 1
    return "".join(_BARS[round((v - low) / (high - low) * top)] for v in finite)


def summary_line(line: Line) -> str:
    """`▁▁▂▆██▇  min 0.002, max 0.12, now 0.12 (last 30 min)`: a series for the terminal."""
    values = [v for _, v in line.points]
    minutes = round((line.points[-1][0] - line.points[0][0]) / 60)
    return (
        f"{sparkline(values)}  min {min(values):.3g}, max {max(values):.3g}, "
        f"now {values[-1]:.3g} (last {minutes} min)"
    )


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
