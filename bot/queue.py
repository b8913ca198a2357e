"""The work queue: Redis Streams read by a consumer group that every replica joins.

An entry names a run to drive (`start` or `resume`). A worker reads it, drives the run,
and acknowledges it. Resumes (a human decided, a pause was lifted) have a stream of
their own, `queue:resume`, that workers read before the starts in `queue`, so that an
alert flood never queues ahead of a click; `queue` also still holds the resumes queued
before `queue:resume` existed, driven in their turn. Each stream is read by a command
of its own (no shared hash slot needed on a cluster).

An entry stays pending while its worker lives (the worker touches it, resetting its
idle time); entries of a dead worker become idle and are reclaimed by any other worker
with `XAUTOCLAIM`. Slots (sorted sets of run ids with an expiry) cap how many
investigations run at once, in all and per service, across replicas.

Each entry carries its stream and its delivery count (Redis counts, per pending entry,
how often it was handed out). An entry whose drives keep failing is copied to the
dead-letter stream `queue:dead` (trimmed to its newest `DEAD_LETTERS_MAXLEN`) and
acknowledged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.exceptions import ResponseError

from bot.models import utcnow
from bot.redis_connection import RedisClient

GROUP = "workers"
DEAD_LETTERS_MAXLEN = 10_000
_PAGE = 500

# KEYS: slot sets.  ARGV: run id, now, expiry, then one limit per key.
# Takes a slot in every set or in none; returns 1 when taken.
_TAKE_SLOTS = """
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', ARGV[2])
  if not redis.call('ZSCORE', KEYS[i], ARGV[1])
     and redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[3 + i]) then
    return 0
  end
end
for i = 1, #KEYS do redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1]) end
return 1
"""


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One queue entry: drive this run."""

    id: str  # in `stream`
    stream: str  # the key it is in: it is touched, reclaimed and acknowledged there
    run_id: str
    reason: Literal["start", "resume"]
    deliveries: int = 1  # how often Redis has handed the entry out, this time included


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """A parked queue entry: its drives kept failing."""

    id: str  # in the dead-letter stream
    entry_id: str
    run_id: str
    reason: Literal["start", "resume"]
    deliveries: int
    status: str  # the run's state when it was parked ('' if the run could not be read)
    error: str
    at: str


class WorkQueue:
    """The shared queue of runs to drive, and the concurrency slots."""

    def __init__(self, client: RedisClient, *, prefix: str) -> None:
        self.redis = client
        self._p = prefix
        self.stream = f"{prefix}queue"
        self.resume_stream = f"{prefix}queue:resume"
        self.streams = (self.resume_stream, self.stream)  # in the order workers read them
        self.dead_letters_stream = f"{prefix}queue:dead"
        self._take_slots = client.register_script(_TAKE_SLOTS)

    async def ensure_group(self) -> None:
        """Create the streams and their consumer group if they do not exist."""
        for stream in self.streams:
            try:
                await self.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def enqueue(self, run_id: str, reason: Literal["start", "resume"]) -> Entry:
        """Add an entry (a resume to the resume stream); returns it once Redis has it."""
        stream = self.resume_stream if reason == "resume" else self.stream
        fields: dict[Any, Any] = {"run_id": run_id, "reason": reason}
        entry_id = cast(str, await self.redis.xadd(stream, fields))
        return Entry(id=entry_id, stream=stream, run_id=run_id, reason=reason, deliveries=0)

    def start_command(self, run_id: str) -> tuple[str, ...]:
        """`enqueue(run_id, "start")` as a command, for a caller that sends it together
        with its own (`bot.batching`)."""
        return ("XADD", self.stream, "*", "run_id", run_id, "reason", "start")

    async def read(
        self, consumer: str, *, count: int, block_ms: int, only_resumes: bool = False
    ) -> list[Entry]:
        """New entries for this consumer, resumes first: the resume stream is read without
        waiting, and only when it has none does the read wait up to `block_ms` for a
        start. With `only_resumes` the wait is for a resume, and starts are never read."""
        if only_resumes:
            return await self._read(self.resume_stream, consumer, count=count, block_ms=block_ms)
        resumes = await self._read(self.resume_stream, consumer, count=count, block_ms=None)
        return resumes or await self._read(self.stream, consumer, count=count, block_ms=block_ms)

    async def _read(
        self, stream: str, consumer: str, *, count: int, block_ms: int | None
    ) -> list[Entry]:
        answer = await self.redis.xreadgroup(
            GROUP, consumer, {stream: ">"}, count=count, block=block_ms
        )
        if not answer:
            return []
        entries = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], answer)[0][1]
        return [_entry(stream, entry_id, fields) for entry_id, fields in entries]

    async def reclaim(
        self, consumer: str, *, min_idle_ms: int, count: int, only_resumes: bool = False
    ) -> list[Entry]:
        """Entries idle for `min_idle_ms` (their worker died), now this consumer's:
        resumes first, and only resumes with `only_resumes`."""
        for stream in self.streams[:1] if only_resumes else self.streams:
            found = await self._reclaim(stream, consumer, min_idle_ms=min_idle_ms, count=count)
            if found:
                return found
        return []

    async def _reclaim(
        self, stream: str, consumer: str, *, min_idle_ms: int, count: int
    ) -> list[Entry]:
        answer = await self.redis.xautoclaim(
            stream, GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
        )
        claimed = cast(list[tuple[str, dict[str, str] | None]], answer[1])
        # Entries deleted meanwhile come back without fields: nothing to do for them.
        found = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not found:
            return []
        # XAUTOCLAIM counted this delivery; XPENDING tells the count.
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id, _ in found:
                pipe.xpending_range(stream, GROUP, min=entry_id, max=entry_id, count=1)
            pending = cast(list[list[dict[str, Any]]], await pipe.execute())
        return [
            _entry(stream, entry_id, fields, deliveries=int(p[0]["times_delivered"]) if p else 1)
            for (entry_id, fields), p in zip(found, pending, strict=True)
        ]

    async def touch(self, consumer: str, entry: Entry) -> None:
        """Reset an entry's idle time: its worker is alive and still on it."""
        await self.redis.xclaim(
            entry.stream, GROUP, consumer, min_idle_time=0, message_ids=[entry.id], justid=True
        )

    async def uncount(self, consumer: str, entry: Entry) -> None:
        """Take this delivery back from the entry's count: it was handed out but not
        driven (another worker held the run). Also resets its idle time."""
        await self.redis.xclaim(
            entry.stream,
            GROUP,
            consumer,
            min_idle_time=0,
            message_ids=[entry.id],
            justid=True,
            retrycount=max(entry.deliveries - 1, 0),
        )

    async def ack(self, entry: Entry) -> None:
        """The entry is done: acknowledge and delete it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(entry.stream, GROUP, entry.id)
            pipe.xdel(entry.stream, entry.id)
            await pipe.execute()

    async def dead_letter(self, entry: Entry, *, status: str, error: str) -> str:
        """Copy a poison entry to the dead-letter stream (the caller then acks it)."""
        fields: dict[Any, Any] = {
            "entry_id": entry.id,
            "run_id": entry.run_id,
            "reason": entry.reason,
            "deliveries": entry.deliveries,
            "status": status,
            "error": error,
            "at": utcnow().isoformat(),
        }
        return cast(
            str,
            await self.redis.xadd(
                self.dead_letters_stream, fields, maxlen=DEAD_LETTERS_MAXLEN, approximate=True
            ),
        )

    async def dead_letters(self, run_id: str | None = None) -> list[DeadLetter]:
        """Parked entries, oldest first: all of them, or those of `run_id`."""
        found: list[DeadLetter] = []
        start = "-"
        while True:
            page = cast(
                list[tuple[str, dict[str, str]]],
                await self.redis.xrange(self.dead_letters_stream, min=start, count=_PAGE),
            )
            found += [
                _dead_letter(letter_id, fields)
                for letter_id, fields in page
                if run_id is None or fields.get("run_id") == run_id
            ]
            if len(page) < _PAGE:
                return found
            start = "(" + page[-1][0]

    async def forget_dead_letters(self, letters: list[DeadLetter]) -> None:
        """Delete these entries from the dead-letter stream (their run was retried)."""
        if letters:
            await self.redis.xdel(self.dead_letters_stream, *(d.id for d in letters))

    async def heartbeat(self, owner: str) -> None:
        """Say that `owner`'s workers are alive (call every few seconds)."""
        await self.redis.zadd(f"{self._p}workers", {owner: time.time()})

    async def live_workers(self, *, within_seconds: float = 15.0) -> list[str]:
        """Owners whose workers sent a heartbeat in the last `within_seconds`."""
        key = f"{self._p}workers"
        await self.redis.zremrangebyscore(key, "-inf", time.time() - within_seconds)
        return cast(list[str], await self.redis.zrange(key, 0, -1))

    async def forget_worker(self, owner: str) -> None:
        """`owner` stopped its workers."""
        await self.redis.zrem(f"{self._p}workers", owner)

    async def depth(self) -> int:
        """Entries in the queue (both streams), read or not."""
        return sum([await self.redis.xlen(stream) for stream in self.streams])

    async def oldest_age_seconds(self) -> float:
        """Age of the oldest entry of either stream (0 when both are empty)."""
        firsts = [
            cast(list[tuple[str, Any]], await self.redis.xrange(stream, count=1))
            for stream in self.streams
        ]
        millis = [int(first[0][0].split("-")[0]) for first in firsts if first]
        if not millis:
            return 0.0
        return max(0.0, time.time() - min(millis) / 1000)

    async def queued_runs(self) -> set[str]:
        """The runs that have an entry in either stream, read or not (acknowledged
        entries are deleted, so these are the ones a worker will still drive)."""
        found: set[str] = set()
        for stream in self.streams:
            start = "-"
            while True:
                page = cast(
                    list[tuple[str, dict[str, str]]],
                    await self.redis.xrange(stream, min=start, count=_PAGE),
                )
                found.update(fields["run_id"] for _, fields in page if "run_id" in fields)
                if len(page) < _PAGE:
                    break
                start = "(" + page[-1][0]
        return found

    def slot_keys(self, service: str) -> list[str]:
        """The global slot set and the service's: one hash tag, so that `take_slots`
        takes both atomically on a Redis Cluster too."""
        return [f"{self._p}slots:{{global}}", f"{self._p}slots:{{global}}:service:{service}"]

    async def take_slots(
        self, run_id: str, *, service: str, global_limit: int, service_limit: int, ttl: float
    ) -> bool:
        """Count the run against both limits, or return False if either is full."""
        now = time.time()
        taken = await self._take_slots(
            keys=self.slot_keys(service), args=[run_id, now, now + ttl, global_limit, service_limit]
        )
        return bool(taken)

    async def extend_slots(self, run_id: str, *, service: str, ttl: float) -> None:
        """Keep the run's slots while it is being driven."""
        expiry = time.time() + ttl
        for key in self.slot_keys(service):
            await self.redis.zadd(key, {run_id: expiry}, xx=True)

    async def release_slots(self, run_id: str, *, service: str) -> None:
        """Free the run's slots."""
        for key in self.slot_keys(service):
            await self.redis.zrem(key, run_id)


def _entry(stream: str, entry_id: str, fields: dict[str, str], *, deliveries: int = 1) -> Entry:
    return Entry(
        id=entry_id,
        stream=stream,
        run_id=fields["run_id"],
        reason=_reason(fields),
        deliveries=deliveries,
    )


def _dead_letter(letter_id: str, fields: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        entry_id=fields.get("entry_id", ""),
        run_id=fields.get("run_id", ""),
        reason=_reason(fields),
        deliveries=int(fields.get("deliveries", "0")),
        status=fields.get("status", ""),
        error=fields.get("error", ""),
        at=fields.get("at", ""),
    )


def _reason(fields: dict[str, str]) -> Literal["start", "resume"]:
    return "resume" if fields.get("reason") == "resume" else "start"
