"""Checkpointer: the one way a lease holder writes its run (timed, and shown to listeners).

Audit events about a step (the model call, the tool calls, the proposal) are `note`d and
written by the step's checkpoint, in its script: no round trip of their own. The events of
a refused write, or of a drive that ends before its next checkpoint, are appended on
their own (`flush`), so the audit misses none. The deadline of the run's new state rides
the write too (`Deadlines.tracking`, from the time the write stamps on the run): scheduled,
or an ended run's cancelled, only when the write is accepted (`RunStore.write`'s
`if_written`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import RedisError

from bot.batching import Command
from bot.deadlines import Deadlines
from bot.errors import StaleWrite
from bot.memory import IncidentMemory
from bot.metrics import Metrics
from bot.models import ESCALATED_STATES, Run, Step, utcnow
from bot.store import AuditEntry, RunStore

log = logging.getLogger(__name__)

Listener = Callable[[Run, Sequence[Step]], Awaitable[None]]

# The lease owner of the drive the current task is in (`Checkpointer.leased`).
_DRIVE_OWNER: ContextVar[str | None] = ContextVar("drive_lease_owner", default=None)


def _drive_of(run_id: str) -> tuple[str, str | None]:
    """The run and the drive this task is in: whose noted events are whose, when two
    drives of one run are in this process (one of them stale)."""
    return run_id, _DRIVE_OWNER.get()


@dataclass(frozen=True, kw_only=True)
class Checkpointer:
    """Writes checkpoints as `owner` (the process; audit events name it); each write is
    fenced by version and by the lease of the drive it is made in (`leased`)."""

    store: RunStore
    metrics: Metrics
    owner: str
    listener: Listener | None = None
    # Given: each write schedules the deadline of the run's new state (`bot.deadlines`).
    deadlines: Deadlines | None = None
    # Given: each terminal write leaves the run's record for later runs (`bot.memory`).
    memory: IncidentMemory | None = None
    # Noted audit events per run and drive (`leased`), for that drive's next write.
    _noted: dict[tuple[str, str | None], list[AuditEntry]] = field(
        default_factory=dict, init=False, repr=False
    )

    @staticmethod
    @contextlib.contextmanager
    def leased(lease_owner: str) -> Iterator[None]:
        """Fence the writes of this task (a drive) by `lease_owner`, the lease it took.

        Each drive takes the lease as itself, not as the process: a drive whose lease
        expired is refused at its next write even when another drive of this process
        (another worker, the sweeper) took the run over meanwhile."""
        token = _DRIVE_OWNER.set(lease_owner)
        try:
            yield
        finally:
            _DRIVE_OWNER.reset(token)

    async def write(self, run: Run, steps: Sequence[Step] = ()) -> Run:
        """Write the run, append steps and the events noted for it; raises `StaleWrite`
        if the run moved on."""
        return (await self.write_beside(run, steps))[0]

    async def write_beside(
        self, run: Run, steps: Sequence[Step] = (), beside: Sequence[Command] = ()
    ) -> tuple[Run, list[Any]]:
        """`write`, sending `beside` (commands on other hash slots) in the same round trip
        where Redis allows it (`RunStore.write`); returns their answers too."""
        started = time.perf_counter()
        events = self._noted.pop(_drive_of(run.id), [])
        at = utcnow()
        tracking = self.deadlines.tracking(run, written_at=at) if self.deadlines is not None else []
        try:
            result = await self.store.write(
                run,
                owner=_DRIVE_OWNER.get() or self.owner,
                steps=steps,
                events=events,
                beside=beside,
                if_written=tracking,
                written_at=at,
            )
        except StaleWrite:
            log.error("lost the run's lease or version: stopping", extra={"run_id": run.id})
            await self._append(run.id, events)
            raise
        except BaseException:
            # Not known to be written (a Redis error, a cancellation): `flush` tries again.
            self._noted.setdefault(_drive_of(run.id), [])[:0] = events
            raise
        self.metrics.checkpoint_write.observe(time.perf_counter() - started)
        written = result.run
        _log_unscheduled(run.id, result.if_written)
        if result.ended:
            _observe_end(self.metrics, written)
        if self.memory is not None and written.status.terminal:
            try:
                await self.memory.remember(written)
            except RedisError as exc:  # later runs only miss this one's record
                log.warning("could not record the run: %s", exc, extra={"run_id": run.id})
        if self.listener is not None:
            await self.listener(written, steps)
        return written, result.beside

    async def audit(self, run_id: str, event: str, **data: Any) -> None:
        """Append an audit event that names this writer (`owner`)."""
        await self.store.audit(run_id, event, owner=self.owner, **data)

    async def note(self, run_id: str, event: str, **data: Any) -> None:
        """An audit event like `audit`'s, written by the run's next `write`."""
        self._noted.setdefault(_drive_of(run_id), []).append((event, {"owner": self.owner, **data}))

    async def flush(self, run_id: str) -> None:
        """Append the events still noted for the run (its drive ends without a write)."""
        await self._append(run_id, self._noted.pop(_drive_of(run_id), []))

    async def _append(self, run_id: str, events: Sequence[AuditEntry]) -> None:
        for event, data in events:
            await self.store.audit(run_id, event, **data)


def _observe_end(metrics: Metrics, run: Run) -> None:
    """Count a run that has just ended: its outcome and its per-run figures (once per
    end: a run written terminal again is not counted again)."""
    status = run.status.value
    metrics.runs_finished.labels(status).inc()
    metrics.run_cost.labels(status).observe(run.cost_dollars)
    metrics.run_tool_calls.labels(status).observe(run.tool_calls)
    metrics.run_model_calls.labels(status).observe(run.api_calls)
    seconds = (run.updated_at - run.created_at).total_seconds()
    metrics.run_duration.labels(status).observe(max(seconds, 0.0))
    escalated = run.status in ESCALATED_STATES
    metrics.runs_ended.labels("true" if escalated else "false").inc()


def _log_unscheduled(run_id: str, answers: Sequence[Any]) -> None:
    """Log the deadline commands that failed with the run's write (`answers`: theirs);
    the sweeper's repairs schedule a missing deadline."""
    for error in (a for a in answers if isinstance(a, RedisError)):
        log.warning("could not schedule the run's deadline: %s", error, extra={"run_id": run_id})
