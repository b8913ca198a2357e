"""Checkpointer: the one way a lease holder writes its run (timed, and shown to listeners)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from bot.deadlines import Deadlines
from bot.errors import StaleWrite
from bot.metrics import Metrics
from bot.models import Run, Step
from bot.store import RunStore

log = logging.getLogger(__name__)

Listener = Callable[[Run, Sequence[Step]], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Checkpointer:
    """Writes checkpoints as `owner`; each write is fenced by lease and version."""

    store: RunStore
    metrics: Metrics
    owner: str
    listener: Listener | None = None
    # Given: each write schedules the deadline of the run's new state (`bot.deadlines`).
    deadlines: Deadlines | None = None

    async def write(self, run: Run, steps: Sequence[Step] = ()) -> Run:
        """Write the run and append steps; raises `StaleWrite` if the run moved on."""
        started = time.perf_counter()
        try:
            written = await self.store.checkpoint(run, owner=self.owner, steps=steps)
        except StaleWrite:
            log.error("lost the run's lease or version: stopping", extra={"run_id": run.id})
            raise
        self.metrics.checkpoint_write.observe(time.perf_counter() - started)
        if self.deadlines is not None:
            try:
                await self.deadlines.track(written)
            except RedisError as exc:  # the sweeper's repairs schedule a missing deadline
                log.warning(
                    "could not schedule the run's deadline: %s", exc, extra={"run_id": run.id}
                )
        if written.status.terminal:
            self.metrics.runs_finished.labels(written.status.value).inc()
        if self.listener is not None:
            await self.listener(written, steps)
        return written

    async def audit(self, run_id: str, event: str, **data: Any) -> None:
        """Append an audit event that names this writer (`owner`)."""
        await self.store.audit(run_id, event, owner=self.owner, **data)
