"""Workers: take queue entries, drive their runs, acknowledge them.

Each `serve` replica runs a pool of workers on the shared queue. A worker keeps the
entry it works on fresh (so no one reclaims it) and, every few seconds, reclaims entries
that a dead worker left idle. An investigation must get a global and a per-service
slot first; when the slots are full the entry goes back to the end of the queue.

Resumes come first: every worker looks at the resume stream before it waits for a start,
and the pool's resume workers take nothing but resumes, so a decision is driven at once
even while every other worker is on a long investigation. A resume needs no slot, and is
driven beside the worker that read it (up to `RESUME_DRIVES` at once), which goes back to
reading: a resume's drive runs the action and then verifies it, for up to
`INCIDENT_BOT_VERIFY_TIMEOUT`, and the decisions queued behind it must not wait for that.

A drive that raises leaves its entry pending, to be reclaimed after the reclaim delay;
at the `PARK_AFTER_DELIVERIES`th delivery the entry is parked instead (`bot.parking`).
A drive that loses the run's lease stops at that write and leaves its entry pending too.

While the bot is paused (`bot.pause`) the workers take no entry (they wait, entries wait
in the stream); a drive that stops for the pause (`Paused`) is not a failed drive: its
run is noted as stopped, its lease released, and its entry acknowledged (resume queues
the run again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.checkpoints import Listener
from bot.deps import Deps
from bot.errors import LeaseHeld, RunNotFound, StaleWrite
from bot.models import Run, RunStatus
from bot.parking import PARK_AFTER_DELIVERIES, describe_failure, park
from bot.pause import Paused
from bot.queue import Entry, WorkQueue
from bot.runner import RunDriver

log = logging.getLogger(__name__)

_NEEDS_SLOT = {RunStatus.QUEUED, RunStatus.INVESTIGATING}
HEARTBEAT_SECONDS = 5.0
RESUME_DRIVES = 64  # resumes a replica drives at once; then the reading worker waits
PAUSED_POLL_SECONDS = 0.5  # how often a paused worker looks whether the pause ended


@dataclass(frozen=True, kw_only=True)
class WorkerLimits:
    """How a replica's workers share the queue."""

    workers: int
    resume_workers: int  # beside `workers`: they read only the resume stream
    global_investigations: int
    service_investigations: int
    reclaim_after_seconds: float
    slot_seconds: float


class WorkerPool:
    """N workers of one replica; start, then stop to finish or release their work."""

    def __init__(
        self,
        deps: Deps,
        queue: WorkQueue,
        limits: WorkerLimits,
        listener: Listener | None = None,
    ) -> None:
        """`listener` follows every checkpoint of the runs driven here (the Slack threads)."""
        self._deps = deps
        self._queue = queue
        self._limits = limits
        self._driver: RunDriver = deps.driver(listener)
        self._pause = deps.pause
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._resumes: set[asyncio.Task[None]] = set()  # drives beside the workers
        self._resume_places = asyncio.Semaphore(RESUME_DRIVES)
        self.busy = 0

    @property
    def running(self) -> bool:
        """Whether every worker is alive."""
        return bool(self._tasks) and not any(t.done() for t in self._tasks)

    async def start(self) -> None:
        """Join the consumer group and start the workers."""
        await self._queue.ensure_group()
        await self._queue.heartbeat(self._deps.owner)
        self._tasks.append(asyncio.create_task(self._beat(), name="heartbeat"))
        for n in range(self._limits.workers):
            consumer = f"{self._deps.owner}/{n}"
            self._tasks.append(asyncio.create_task(self._work(consumer), name=consumer))
        for n in range(self._limits.resume_workers):
            consumer = f"{self._deps.owner}/resume-{n}"
            work = self._work(consumer, only_resumes=True)
            self._tasks.append(asyncio.create_task(work, name=consumer))

    async def stop(self, grace_seconds: float) -> None:
        """Stop reading; let drives finish for `grace_seconds`, then cancel them.

        A cancelled drive releases its lease; its entry stays pending for another replica.
        """
        self._stopping.set()
        if not self._tasks:
            return
        until = time.monotonic() + grace_seconds
        await _finish(self._tasks, grace_seconds)
        # The workers have ended, so no resume starts now: the drives beside them get
        # what is left of the grace.
        await _finish(self._resumes, until - time.monotonic())
        await self._queue.forget_worker(self._deps.owner)

    async def _beat(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), HEARTBEAT_SECONDS)
            if not self._stopping.is_set():
                try:
                    await self._queue.heartbeat(self._deps.owner)
                except RedisError as exc:  # Redis away for a moment: beat again later
                    log.warning("heartbeat failed: %s", exc)

    async def _work(self, consumer: str, *, only_resumes: bool = False) -> None:
        next_reclaim = 0.0
        while not self._stopping.is_set():
            try:
                paused = await self._paused()
                entries: list[Entry] = []
                if not paused and time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self._limits.reclaim_after_seconds / 4
                    entries = await self._queue.reclaim(
                        consumer,
                        min_idle_ms=int(self._limits.reclaim_after_seconds * 1000),
                        count=1,
                        only_resumes=only_resumes,
                    )
                if not entries and not paused:
                    entries = await self._queue.read(
                        consumer, count=1, block_ms=500, only_resumes=only_resumes
                    )
                self._deps.metrics.worker_heartbeat.set(time.time())
                for entry in entries:
                    if entry.stream == self._queue.resume_stream:
                        await self._resume_beside(consumer, entry, investigates=not only_resumes)
                    else:
                        await self._handle(consumer, entry, investigates=not only_resumes)
            except asyncio.CancelledError:
                raise
            except RedisError as exc:  # Redis away for a moment: read again after a pause
                log.warning("worker %s: Redis failed (%s); retrying", consumer, exc)
                await asyncio.sleep(1)
            except Exception:  # the boundary of a worker: log, pause, keep serving
                log.exception("worker %s failed; retrying", consumer)
                await asyncio.sleep(1)

    async def _resume_beside(self, consumer: str, entry: Entry, *, investigates: bool) -> None:
        """Handle a resume entry in a task of its own, once one of `RESUME_DRIVES` places
        is free (until then the worker waits: back-pressure, the rest stay queued)."""
        await self._resume_places.acquire()
        task = asyncio.create_task(
            self._resume(consumer, entry, investigates=investigates),
            name=f"{consumer}:resume:{entry.run_id}",
        )
        self._resumes.add(task)
        task.add_done_callback(self._resumes.discard)

    async def _resume(self, consumer: str, entry: Entry, *, investigates: bool) -> None:
        try:
            await self._handle(consumer, entry, investigates=investigates)
        except Exception:  # as a worker's boundary would: the entry stays, to be reclaimed
            log.exception(
                "resume failed; its entry is reclaimed later", extra={"run_id": entry.run_id}
            )
        finally:
            self._resume_places.release()

    async def _paused(self) -> bool:
        """Whether the bot is paused; if so, after waiting a moment (or until stopped)."""
        if await self._pause.current() is None:
            return False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), PAUSED_POLL_SECONDS)
        return True

    async def _handle(self, consumer: str, entry: Entry, *, investigates: bool) -> None:
        try:
            await self._drive(consumer, entry, investigates=investigates)
        except Paused:
            # Stopped before its next step, the lease released: resume queues it again.
            log.info("drive stopped: the bot is paused", extra={"run_id": entry.run_id})
            await self._queue.ack(entry)
        except LeaseHeld:
            # Another worker drives it; leave the entry pending: it is retried after the
            # reclaim delay, in case that worker stops before the run is settled. It was
            # not driven, so this delivery is not counted.
            log.info("run is leased elsewhere", extra={"run_id": entry.run_id})
            await self._queue.uncount(consumer, entry)
        except StaleWrite:
            # The lease was lost mid-drive (the drive stopped at that write): whoever
            # reclaims the entry goes on from the last checkpoint.
            log.warning("drive stopped: the run's lease was lost", extra={"run_id": entry.run_id})
        except Exception as exc:  # the boundary of one drive: record it, park poison work
            log.exception(
                "drive failed",
                extra={"run_id": entry.run_id, "deliveries": entry.deliveries},
            )
            await self._failed(entry, exc)

    async def _failed(self, entry: Entry, exc: Exception) -> None:
        """A drive raised: audit it; at the last allowed delivery, park the entry."""
        error = describe_failure(exc)
        await self._deps.store.audit(
            entry.run_id,
            "drive_failed",
            owner=self._deps.owner,
            entry=entry.id,
            deliveries=entry.deliveries,
            error=error,
        )
        if entry.deliveries >= PARK_AFTER_DELIVERIES:
            await park(self._driver, self._queue, self._deps.metrics, entry, error)

    async def _drive(self, consumer: str, entry: Entry, *, investigates: bool) -> None:
        """Drive the entry's run as far as it goes now, then acknowledge the entry.

        A run that needs an investigation slot is driven only where `investigates`. A
        resume's run is read by its drive's take (`_drive_resume`); a start's first, for
        its slots."""
        try:
            if entry.stream == self._queue.resume_stream:
                await self._drive_resume(consumer, entry, investigates=investigates)
                return
            run = await self._deps.store.load(entry.run_id)
        except RunNotFound:
            log.warning("queue entry for a missing run", extra={"run_id": entry.run_id})
            await self._queue.ack(entry)
            return
        await self._drive_loaded(consumer, entry, run, investigates=investigates)

    async def _drive_resume(self, consumer: str, entry: Entry, *, investigates: bool) -> None:
        """A resume's run driven at once, read with its lease (a decision's drive to its
        action reads nothing before it); one that turns out to need an investigation slot
        (a run queued again) is left as the drive's take found it and goes a start's way."""
        async with self._kept(consumer, entry):
            run = await self._driver.drive(entry.run_id, needing_no_slot=True)
        if run.status in _NEEDS_SLOT:
            await self._drive_loaded(consumer, entry, run, investigates=investigates)
            return
        await self._queue.ack(entry)

    async def _drive_loaded(
        self, consumer: str, entry: Entry, run: Run, *, investigates: bool
    ) -> None:
        """`_drive` of the run as read."""
        if run.status.terminal:
            await self._queue.ack(entry)
            return
        service = run.alert.labels.get("service", "unknown")
        slotted = run.status in _NEEDS_SLOT
        if slotted and not (investigates and await self._take_slots(run, service)):
            # No slot, or a resume worker (which keeps free for decisions): back to the end
            # of the starts, whatever queued it, and a breath before the next read.
            await self._queue.enqueue(run.id, "start")
            await self._queue.ack(entry)
            await asyncio.sleep(0.2)
            return
        try:
            async with self._kept(consumer, entry, service=service, slotted=slotted):
                await self._driver.drive(run.id)
        finally:
            if slotted:
                await self._queue.release_slots(run.id, service=service)
        await self._queue.ack(entry)

    @contextlib.asynccontextmanager
    async def _kept(
        self, consumer: str, entry: Entry, *, service: str = "", slotted: bool = False
    ) -> AsyncIterator[None]:
        """While the block drives the entry's run: the worker counted busy, the entry (and
        with `slotted`, the run's slots of `service`) kept by `_keep`."""
        keeper = asyncio.create_task(self._keep(consumer, entry, entry.run_id, service, slotted))
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def _take_slots(self, run: Run, service: str) -> bool:
        return await self._queue.take_slots(
            run.id,
            service=service,
            global_limit=self._limits.global_investigations,
            service_limit=self._limits.service_investigations,
            ttl=self._limits.slot_seconds,
        )

    async def _keep(
        self, consumer: str, entry: Entry, run_id: str, service: str, slotted: bool
    ) -> None:
        """While the run is driven: keep its entry from being reclaimed, keep its slots."""
        while True:
            await asyncio.sleep(self._limits.reclaim_after_seconds / 3)
            try:
                await self._queue.touch(consumer, entry)
                if slotted:
                    await self._queue.extend_slots(
                        run_id, service=service, ttl=self._limits.slot_seconds
                    )
            except RedisError as exc:  # Redis away for a moment: the drive goes on
                log.warning("could not keep the queue entry: %s", exc, extra={"run_id": run_id})


async def _finish(tasks: Iterable[asyncio.Task[None]], seconds: float) -> None:
    """Let the tasks run for up to `seconds`, then cancel the ones still running."""
    running = set(tasks)
    if not running:
        return
    _, pending = await asyncio.wait(running, timeout=max(seconds, 0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
