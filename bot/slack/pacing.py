"""Pacing of Slack writes: about one post per channel per second, one progress edit per run.

Slack allows roughly one message per second per channel; a run's progress changes far
more often, so it is one message edited in place, at most once per interval, the last
change always shown. The waits here are rate limits, not synchronisation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Flush = Callable[[], Awaitable[None]]


class ChannelPacer:
    """Spaces the posts of this process to one channel `interval` seconds apart."""

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._next: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def turn(self, channel: str) -> AsyncIterator[None]:
        """Wait for the channel's turn; the next turn is `interval` after this one ends."""
        lock = self._locks.setdefault(channel, asyncio.Lock())
        async with lock:
            wait = self._next.get(channel, 0.0) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                yield
            finally:
                self._next[channel] = time.monotonic() + self._interval


@dataclass
class _Pending:
    task: asyncio.Task[None]
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Coalescer:
    """Calls a key's flush at most once per `interval`; requests in between fold into one.

    A flush reads the latest state when it runs, so a folded request is never lost.
    """

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}

    async def request(self, key: str, flush: Flush, *, now: bool = False) -> None:
        """Flush now if the interval has passed (or `now`), else once it has."""
        pending = self._pending.get(key)
        if pending is not None:
            if not now:
                return  # the pending flush will show this change too
            pending.wake.set()
            await asyncio.gather(pending.task, return_exceptions=True)
        wait = self._last.get(key, 0.0) + self._interval - time.monotonic()
        if now or wait <= 0:
            await self._flush(key, flush)
            return
        wake = asyncio.Event()
        task = asyncio.create_task(self._later(key, wait, wake, flush))
        self._pending[key] = _Pending(task=task, wake=wake)

    def forget(self, key: str) -> None:
        """Drop what is known of `key` (its run ended)."""
        self._last.pop(key, None)

    async def close(self) -> None:
        """Run every pending flush now."""
        for pending in list(self._pending.values()):
            pending.wake.set()
        await asyncio.gather(*(p.task for p in self._pending.values()), return_exceptions=True)

    async def _later(self, key: str, wait: float, wake: asyncio.Event, flush: Flush) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), wait)
        try:
            await self._flush(key, flush)
        except Exception:  # a background Slack write: log it, the next change retries
            log.exception("slack: deferred update failed", extra={"key": key})
        finally:
            self._pending.pop(key, None)

    async def _flush(self, key: str, flush: Flush) -> None:
        self._last[key] = time.monotonic()
        await flush()
