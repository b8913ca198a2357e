"""The event-loop lag monitor: how late a periodic `asyncio.sleep` wakes.

Every `interval` seconds a task sleeps and measures how much later than asked it woke:
the time the loop spent running something else without yielding (a synchronous call on
the loop, a garbage collection, the process waiting for a CPU). Each lateness goes to
`observe` (`incident_bot_event_loop_lag_seconds` in `serve`). A blocked loop delays every
webhook answer, Slack ack and lease renewal of the process by as much.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

INTERVAL_SECONDS = 0.1


class LoopLagMonitor:
    """A task on the running loop that reports each wake-up's lateness in seconds."""

    def __init__(
        self, observe: Callable[[float], None], *, interval: float = INTERVAL_SECONDS
    ) -> None:
        self._observe = observe
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start measuring on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop measuring; returns once the task has ended."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self._interval
            await asyncio.sleep(self._interval)
            self._observe(max(0.0, loop.time() - asked))
