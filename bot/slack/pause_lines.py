"""The pause line of open runs' root messages: added when the bot is paused, removed on
resume, whichever process or replica paused it (`bot.pause`).

Every replica with Slack looks at the pause key every `INTERVAL_SECONDS` (one GET); when
the pause it sees changed, it redraws the root message of every open run through the
usual update path (`SlackThreads.redraw_root`), which skips a message already drawn for
this pause. It also keeps `incident_bot_paused` current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from bot.deps import Deps
from bot.models import Run

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 1.0
OPEN_RUNS_REDRAWN = 1000

Redraw = Callable[[Run], Awaitable[None]]


class PauseLines:
    """A task that redraws open runs' root messages when the pause changes."""

    def __init__(self, deps: Deps, redraw: Redraw, interval: float = INTERVAL_SECONDS) -> None:
        self._deps = deps
        self._redraw = redraw
        self._interval = interval
        self._seen: str | None = None  # the marker of the pause last drawn (None: none yet)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Start watching (a first look at once)."""
        self._task = asyncio.create_task(self._loop(), name="pause-lines")

    async def stop(self) -> None:
        """Stop watching."""
        if self._task is None:
            return
        self._stopping.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.look()
            except (RedisError, OSError) as exc:  # Redis away for a moment: look again later
                log.warning("pause lines: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def look(self) -> None:
        """Redraw the open runs' root messages if the pause changed since the last look."""
        state = await self._deps.pause.current()
        self._deps.metrics.paused.set(1 if state else 0)
        marker = state.marker if state else ""
        if marker == self._seen:
            return
        runs = await self._deps.store.list_runs(limit=OPEN_RUNS_REDRAWN, active_only=True)
        drawn = True
        for run in runs:
            try:
                await self._redraw(run)
            except Exception:  # the Slack boundary: one run's message must not stop the rest
                log.exception("slack: could not redraw the root message", extra={"run_id": run.id})
                drawn = False
        if drawn:  # else the next look tries again
            self._seen = marker
